"""Evaluate the stored descriptors with the paper's table: sum pooling, offline, online, + QE, + re-ranking.

For each dataset, PCA whitening (512-d, capped at the feature size) is fitted on its partner
(Paris for Oxford and back; synth_b for synth_a and back) from each image's top class vector;
then every method ranks the database for every query and the official metric is computed:
mAP (good+ok positive, junk ignored) for Oxford/Paris and the synthetic sets, Easy/Medium/Hard
mAP and mP@1,5,10 for the revisited ground truth. Output: RUN/instance/<tag>/results.json,
results.md; RUN/instance/summary.md puts every tag (trained, random ...) side by side.

    python experiments/instance_search/04_evaluate.py --out runs/demo --tag trained \
        --data-root runs/demo/instance_data
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, io, provenance
from texttopicnet.core.errors import DataError, UserError
from texttopicnet.instance import datasets, experiment, stages
from texttopicnet.instance.extraction import Store, list_digest
from texttopicnet.instance.queries import QueryStore
from texttopicnet.instance.search import RerankConfig

STAGE = "evaluate_instance_search"


def build_parser():
    r = RerankConfig()
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), stages.threads_option()])
    p.add_argument("--tag", default="trained", help="network whose stores to evaluate (RUN/instance/<tag>/)")
    p.add_argument("--data-root", type=Path, default=Path("runs/demo/instance_data"),
                   help="folder holding the datasets (for the ground truth)")
    p.add_argument("--datasets", nargs="+", default=list(stages.DEFAULT_DATASETS), help="datasets to evaluate")
    p.add_argument("--methods", nargs="+", default=list(experiment.TABLE_ROWS), choices=list(experiment.TABLE_ROWS),
                   help="rows of the table")
    p.add_argument("--classes", type=int, default=experiment.N_CLASSES,
                   help="N_C, topics aggregated per image (paper: 64 of 1000 ImageNet classes; capped at K)")
    p.add_argument("--qe", type=int, default=experiment.QE, help="query expansion: top-n results averaged (paper: 5)")
    p.add_argument("--rerank-top", type=int, default=r.top, help="R, images re-ranked with CAM boxes (paper: 1000)")
    p.add_argument("--rerank-classes", type=int, default=r.classes,
                   help="query topics describing the regions when re-ranking (authors' code: 6)")
    p.add_argument("--heat-classes", type=int, default=r.heat_classes,
                   help="heat map = mean of the CAMs of the query's first n topics (authors' code: 2)")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(r.thresholds),
                   help="box thresholds as fractions of the heat map's maximum (authors' code: 1, 10, 20, 30 %%)")
    p.add_argument("--min-box", type=int, default=r.min_size, help="smallest region side in feature cells (paper: 5)")
    p.add_argument("--pca", default="partner", choices=("partner", "none"),
                   help="'partner': PCA whitening fitted on the other dataset (the paper); 'none': no PCA")
    p.add_argument("--pca-dim", type=int, default=experiment.PCA_DIM, help="PCA dimensions (paper: 512)")
    p.add_argument("--pca-classes", type=int, default=experiment.PCA_CLASSES,
                   help="class vectors per partner image PCA is fitted on (authors' code: the top 1)")
    p.add_argument("--distractors", action="store_true",
                   help="add the distractors described by 03_extract_descriptors.py --distractors (Oxford105k ...)")
    return p


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def results_markdown(res: dict) -> str:
    names = list(res["datasets"])
    lines = [f"# Instance search: `{res['tag']}`", "",
             (f"N_C {res['config']['classes']}, QE {res['config']['qe']}, R {res['config']['rerank']['top']}, "
              f"PCA {res['pca']}; mAP (good + ok positive, junk ignored)."), "",
             "| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for m in res["methods"]:
        cells = []
        for n in names:
            e = res["datasets"][n]["methods"][m]
            cells.append(_fmt(e["map"]) if "map" in e else _fmt(e["revisited"]["medium"]["map"]) + " (M)")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    rev = [n for n in names if "revisited" in next(iter(res["datasets"][n]["methods"].values()))]
    if rev:
        lines += ["", "Revisited protocol (Easy / Medium / Hard mAP):", "",
                  "| method | " + " | ".join(rev) + " |", "|---|" + "---:|" * len(rev)]
        for m in res["methods"]:
            cells = ["/".join(_fmt(res["datasets"][n]["methods"][m]["revisited"][s]["map"])
                              for s in ("easy", "medium", "hard")) for n in rev]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| dataset | database | queries |", "|---|---:|---:|"]
    lines += [f"| {n} | {d['n_db']} | {d['n_queries']} |" for n, d in res["datasets"].items()]
    return "\n".join(lines) + "\n"


def write_summary(inst_dir: Path) -> Path:
    found = sorted(inst_dir.glob("*/results.json"))
    rows = [io.read_json(p) for p in found]
    lines = ["# Instance search: every network", "", "| method | " + " | ".join(
        f"{r['tag']}: {n}" for r in rows for n in r["datasets"]) + " |",
        "|---|" + "---:|" * sum(len(r["datasets"]) for r in rows)]
    methods = list(dict.fromkeys(m for r in rows for m in r["methods"]))
    for m in methods:
        cells = []
        for r in rows:
            for d in r["datasets"].values():
                e = d["methods"].get(m)
                cells.append("-" if e is None else _fmt(e["map"]) if "map" in e else _fmt(e["revisited"]["medium"]["map"]))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    path = inst_dir / "summary.md"
    io.write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    stages.apply_threads(args.threads)
    if min(args.classes, args.rerank_classes, args.heat_classes, args.min_box, args.pca_dim, args.pca_classes) < 1 \
            or args.qe < 0 or args.rerank_top < 0:
        raise UserError("counts must be positive (--qe and --rerank-top may be 0 to switch the step off)")
    tdir = stages.tag_dir(args.out, args.tag)
    if not tdir.is_dir():
        raise DataError(f"{tdir}: no descriptors for tag {args.tag!r}; run 03_extract_descriptors.py first")
    cfg = experiment.SearchConfig(args.classes, args.qe, RerankConfig(args.rerank_top, args.rerank_classes,
                                                                      args.heat_classes, tuple(args.thresholds),
                                                                      args.min_box))
    settings = {**experiment.config_dict(cfg), "pca": args.pca, "pca_dim": args.pca_dim,
                "pca_classes": args.pca_classes, "datasets": args.datasets, "methods": args.methods,
                "distractors": args.distractors}
    settings = json.loads(json.dumps(settings))  # tuples become lists, as in meta.json
    stores = {n: (Store(tdir / n / "db"), QueryStore(tdir / n / "queries")) for n in args.datasets}
    inputs = [tdir / n / s / "store.json" for n in args.datasets for s in ("db", "queries")]
    meta = provenance.read_meta(tdir) or {}
    if (not args.force and provenance.stage_is_done(tdir, STAGE) and meta.get("settings") == settings
            and meta.get("inputs") == provenance.file_checksums(inputs)):
        cli.log(f"already done: {tdir}/results.md (use --force to redo)")
        return 0
    provenance.invalidate(tdir)
    distractors = Store(tdir / "distractors" / "db") if args.distractors else None
    res = {"tag": args.tag, "config": experiment.config_dict(cfg), "pca": args.pca, "methods": args.methods,
           "datasets": {}}
    for name in args.datasets:
        ds, revisited = datasets.load(name, args.data_root)
        db, qs = stores[name]
        pca = None
        if args.pca == "partner":
            partner = datasets.PARTNERS.get(name)
            if partner is None or partner not in stores:
                raise UserError(f"PCA for {name} is fitted on {partner or 'its partner'}: add it to --datasets "
                                "(or pass --pca none)")
            try:
                pca = experiment.fit_pca(stores[partner][0], args.pca_dim, args.pca_classes)
            except ValueError as exc:
                raise DataError(f"cannot fit PCA for {name} on {partner}: {exc} (every top class vector is empty: "
                                "the CAMs have no positive value; pass --pca none)") from None
        if db.record["key"].get("list_digest") != list_digest([str(ds.image_paths[i]) for i in ds.image_ids]):
            raise DataError(f"{db.dir} was extracted from another image list than {name} has now (regenerated or "
                            "moved?): re-run 03_extract_descriptors.py")
        db_ids = [ds.image_ids[int(r)] for r in db.rows]
        dbs = [db]
        if distractors is not None:
            dbs.append(distractors)
            db_ids += ["distractor/" + Path(p).name for p in distractors.paths]
        ctx = experiment.Context(dbs, qs, pca, cfg)
        methods = experiment.evaluate_dataset(ds, revisited, ctx, db_ids, args.methods)
        res["datasets"][name] = {"methods": methods, "n_db": len(db_ids), "n_queries": len(qs),
                                 "pca_dim": pca.dim if pca else None, "counts": dict(ds.counts)}
        cli.log(f"{args.tag} {name}: " + ", ".join(f"{m} {_fmt(e.get('map'))}" for m, e in methods.items()))
    outputs = [tdir / "results.json", tdir / "results.md"]
    io.write_json(outputs[0], res)
    io.write_text(outputs[1], results_markdown(res))
    summary = write_summary(stages.instance_dir(args.out))
    cli.log(f"wrote {outputs[1]} and {summary}")
    provenance.write_meta(tdir, STAGE, args, inputs=inputs, outputs=outputs, extra={"settings": settings})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

"""Evaluate text->image search on an index with labels: MIRFlickr-25K mAP and InstaCities1M P@k.

The index must come from a collection with categories (a manifest from
``data/make_manifest.py mirflickr|instacities``, ``wikipedia:DIR``, or a folder with
``--categories-from-folders``); the protocols (LearnFromWebData's) are in
``texttopicnet/search/evaluation.py``. Writes ``results.json``, ``results.md`` and
``meta.json`` to ``--out`` (default INDEX/eval/<protocol>-<score>).

Run::

    python search/03_evaluate.py --index runs/mine/search_mirflickr                      # MIRFlickr mAP
    python search/03_evaluate.py --index runs/mine/search_mirflickr --protocol mirflickr_labels
    python search/03_evaluate.py --index runs/mine/search_instacities --protocol instacities --k 100
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402

STAGE = "search_evaluate"


def build_parser():
    from texttopicnet.search.evaluation import PROTOCOLS, RELEVANCE, SCORES

    p = cli.make_parser(__doc__, parents=[cli.seed_parser()])
    p.add_argument("--index", type=Path, required=True, help="index folder (search/01_build_index.py)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="mirflickr",
                   help="mirflickr: a query per image from its tags + labels; mirflickr_labels: a query per label "
                        "name; instacities: a query per city name, precision at --k")
    p.add_argument("--score", choices=SCORES, default="l2",
                   help="l2: Euclidean on sum-normalised vectors (LearnFromWebData's); space: the index's own "
                        "similarity (KL / cosine), as the search server ranks")
    p.add_argument("--relevance", choices=RELEVANCE, default="labels",
                   help="mirflickr: 'labels' = the image shares a label with the query image (default); "
                        "'release' = its labels contain one of the query's tags or labels (LearnFromWebData's check)")
    p.add_argument("--k", type=int, default=100, help="instacities: precision at k (the related work's P@100)")
    p.add_argument("--max-queries", type=int, default=0,
                   help="mirflickr: evaluate this many per-image queries (a seeded sample; 0 = all)")
    p.add_argument("--space", type=Path, default=None, help="text space (default: the one index.json records)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default INDEX/eval/<protocol>-<score>)")
    return p


def markdown(res: dict, index: Path, space_name: str) -> str:
    head = f"# {res['protocol']} on `{index}` ({space_name} space, score {res['score']})\n\n"
    if res["protocol"] == "instacities":
        lines = [f"P@{res['k']} per city query over {res['n_images']} images; mean "
                 f"{res['mean_precision'] if res['mean_precision'] is None else round(res['mean_precision'], 4)}.",
                 "", "| city | P@k |", "|---|---:|"]
        lines += [f"| {c} | {'-' if v is None else f'{v:.4f}'} |" for c, v in res["per_city"].items()]
        return head + "\n".join(lines) + "\n"
    lines = [f"mAP **{res['map']:.4f}** over {res['n_queries']} queries ({res['skipped_queries']} without a known "
             f"word skipped), {res['n_images']} images; chance {res['chance_map']:.4f}; relevance: {res['relevance']}.",
             "", "| label | mAP of its queries |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(res["per_label"].items())]
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    import numpy as np

    from texttopicnet.search import evaluation as ev
    from texttopicnet.search.index import load_index
    from texttopicnet.text.spaces import load_text_space

    index = load_index(args.index)
    if index.labels is None:
        raise UserError(f"{args.index}: the index has no labels.jsonl (build it from a source with categories)")
    space = load_text_space(args.space or index.resolve("space"))
    target = (index.info.get("space") or {}).get("target")
    emb = np.asarray(index.embeddings, dtype=np.float32)
    sim = index.info["similarity"]
    if args.protocol == "instacities":
        res = ev.instacities(emb, index.labels, space, sim, k=args.k, score=args.score, target=target)
    else:
        rows = None
        if args.max_queries > 0 and args.protocol == "mirflickr":
            labelled = [i for i, r in enumerate(index.labels) if r.get("categories")]
            rng = np.random.default_rng(args.seed)
            rows = sorted(rng.choice(labelled, size=min(args.max_queries, len(labelled)), replace=False).tolist())
        res = ev.mirflickr(emb, index.labels, space, sim, per="image" if args.protocol == "mirflickr" else "label",
                           score=args.score, relevance=args.relevance, target=target, query_rows=rows)
        res.pop("ap")
    out = args.out or Path(args.index) / "eval" / f"{args.protocol}-{args.score}"
    provenance.invalidate(out)
    res.update(index=str(args.index), space=space.name, network=(index.info.get("network") or {}).get("sha256"))
    io.write_json(out / "results.json", res)
    io.write_text(out / "results.md", markdown(res, args.index, space.name))
    provenance.write_meta(out, STAGE, args, inputs=[Path(args.index) / "embeddings.npy"],
                          outputs=[out / "results.json", out / "results.md"])
    key = "mean_precision" if args.protocol == "instacities" else "map"
    cli.log(f"{args.protocol} ({args.score}): {key} {res[key]}; wrote {out}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

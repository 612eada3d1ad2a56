"""Text->image search results on the demo corpus for every text space: one network per space.

For each space: fit it on the training articles of a finished run (``RUN/labels``: the
training images and their articles), write its CNN training targets
(``text/spaces/targets.py``) to ``RUN/spaces/<space>/labels``, pack and train CaffeNet on them
(``cnn/01_pack_images.py``, ``cnn/02_train.py --preset demo``), index the Wikipedia-layout
images of the corpus (categories known, never seen in training) and evaluate the
MIRFlickr-style protocols of ``texttopicnet/search/evaluation.py`` (a query per image from
its labels; a query per label), scored by LearnFromWebData's L2 and by the space's own
similarity. The ``lda`` row reuses the run's network and LDA model (``RUN/train``,
``RUN/lda``). Writes ``RUN/spaces/summary.md`` and ``summary.json``. Every step is skipped
when its outputs are already there (the stage scripts' own checks).

Run::

    python search/04_text_spaces.py --out runs/demo
    python search/04_text_spaces.py --out runs/demo --spaces lda lsi --train-arg=--iterations=80
    python search/04_text_spaces.py --out runs/demo --spaces glove --glove-vectors glove.6B.50d.txt
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError, UserError  # noqa: E402

STAGE = "search_text_spaces"
SPACES = ("lda", "lsi", "word2vec", "doc2vec", "fasttext", "glove")
# The demo corpus is small (~250 articles): the dictionary filter the demo LDA uses (no_below 3), and
# 40 dimensions for every space (fastText's and LSI's default; word2vec's and doc2vec's 400 outputs make
# the demo preset's learning rate diverge and are far more than 250 articles can fill).
DEMO_OPTIONS = {"lsi": {"no_below": 3}, "word2vec": {"dim": 40}, "doc2vec": {"dim": 40}, "fasttext": {},
                "glove": {}}


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser(),
                                          cli.device_parser()])
    p.add_argument("--data-root", type=Path, default=None, help="the demo corpus (default OUT/data)")
    p.add_argument("--spaces", nargs="+", choices=SPACES, default=[s for s in SPACES if s != "glove"],
                   help="text spaces to run (glove needs --glove-vectors)")
    p.add_argument("--glove-vectors", type=Path, default=None, help="GloVe vectors file for the glove space")
    p.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for cnn/02_train.py (repeatable), e.g. --train-arg=--iterations=80")
    return p


def script(name: str, argv: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(ROOT / name), *argv]
    if subprocess.run(cmd, cwd=ROOT, env=env).returncode != 0:
        raise UserError(f"{name} failed; rerun: {' '.join(cmd)}")


def training_pairs(run: Path) -> tuple[list[str], list[str]]:
    labels = run / "labels"
    if not (labels / "index.txt").is_file() or not (labels / "articles.txt").is_file():
        raise DataError(f"{labels}: no index.txt/articles.txt; run the pipeline first (python run_pipeline.py)")
    return io.read_lines(labels / "index.txt"), io.read_lines(labels / "articles.txt")


def fit_space(name: str, folder: Path, articles: list[str], seed: int, glove: Path | None):
    from texttopicnet.data.readers.imageclef import read_article
    from texttopicnet.text.spaces import fit_text_space, load_text_space

    if (folder / "manifest.json").is_file():
        return load_text_space(folder)
    unique = sorted(set(articles))
    texts = [read_article(a) for a in unique]
    opts = dict(DEMO_OPTIONS.get(name, {}))
    if name == "glove":
        if glove is None:
            raise UserError("the glove space needs --glove-vectors FILE (GloVe text format)")
        opts["vectors"] = str(glove)
    cli.log(f"[{name}] fitting on {len(texts)} articles")
    space = fit_text_space(name, texts, seed=seed, **opts)
    space.save(folder)
    return space


def write_targets(space, folder: Path, images: list[str], articles: list[str]) -> dict:
    """RUN/spaces/<name>/labels/{labels.npy, index.txt}: the space's training targets per image."""
    import numpy as np

    from texttopicnet.data.readers.imageclef import read_article
    from texttopicnet.text.spaces.targets import default_target, describe, make_targets

    if provenance.stage_is_done(folder, "space_labels"):
        return provenance.read_meta(folder) or {}
    provenance.invalidate(folder)
    unique = sorted(set(articles))
    vecs, empty = space.embed([read_article(a) for a in unique], return_empty=True)
    target = default_target(space)
    rows = make_targets(vecs, target)
    by_article = {a: i for i, a in enumerate(unique)}
    keep = [i for i, a in enumerate(articles) if not empty[by_article[a]]]
    io.save_npy(folder / "labels.npy", np.ascontiguousarray(rows[[by_article[articles[i]] for i in keep]]))
    io.write_lines(folder / "index.txt", [images[i] for i in keep])
    extra = {**describe(target), "space": space.name, "images": len(keep), "dropped_empty": len(images) - len(keep)}
    provenance.write_meta(folder, "space_labels", {"space": space.name}, outputs=[folder / "labels.npy",
                                                                                  folder / "index.txt"], extra=extra)
    return extra


def evaluate(index_dir: Path, space) -> dict:
    import numpy as np

    from texttopicnet.search import evaluation as ev
    from texttopicnet.search.index import load_index

    idx = load_index(index_dir)
    emb = np.asarray(idx.embeddings, dtype=np.float32)
    target = (idx.info.get("space") or {}).get("target")
    out = {"images": len(idx)}
    for per, key in (("image", "per_image"), ("label", "per_label")):
        for score in ("l2", "space"):
            res = ev.mirflickr(emb, idx.labels, space, idx.info["similarity"], per=per, score=score, target=target)
            out[f"{key}_{score}"] = res["map"]
            out[f"{key}_queries"] = res["n_queries"]
            out[f"{key}_skipped"] = res["skipped_queries"]
            out[f"{key}_chance"] = res["chance_map"]
    return out


def summary_markdown(rows: list[dict]) -> str:
    lines = ["# Text->image search on the demo corpus, per text space", "",
             "Each space's CaffeNet indexes the Wikipedia-layout images of the demo corpus (not seen in training); "
             "queries are the category names (MIRFlickr-style protocol, `texttopicnet/search/evaluation.py`): per "
             "image (its labels as the query, relevant = same category) and per label; mAP over the full ranking, "
             "by L2 (LearnFromWebData's) and by the space's own similarity (KL / cosine).", "",
             "| space | kind | dim | training | per image, L2 | per image, space | per label, L2 | per label, space "
             "| chance | skipped queries |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['space']} | - | - | - | - | - | - | - | - | {r['error']} |")
            continue
        lines.append(f"| {r['space']} | {r['kind']} | {r['dim']} | {r['training']} | {r['per_image_l2']:.3f} | "
                     f"{r['per_image_space']:.3f} | {r['per_label_l2']:.3f} | {r['per_label_space']:.3f} | "
                     f"{r['per_image_chance']:.3f} | {r['per_image_skipped']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    from texttopicnet.text.spaces import load_text_space

    run = Path(args.out).resolve()
    data = (args.data_root or run / "data").resolve()
    images, articles = training_pairs(run)
    common = ["--seed", str(args.seed), "--workers", str(args.workers)]
    summary = run / "spaces" / "summary.json"
    # rows of spaces run earlier stay in the table (a later run of one space replaces its row)
    earlier = [r for r in (io.read_json(summary) if summary.is_file() else []) if r.get("space") not in args.spaces]
    rows = []
    for name in args.spaces:
        base = run / "spaces" / name
        try:
            if name == "lda":
                space_dir, weights = run / "lda", run / "train" / "model.safetensors"
                space = load_text_space(space_dir)
                training = "the run's (RUN/train)"
            else:
                space_dir, weights = base / "space", base / "train" / "model.safetensors"
                space = fit_space(name, space_dir, articles, args.seed, args.glove_vectors)
                info = write_targets(space, base / "labels", images, articles)
                cli.log(f"[{name}] {info['images']} training targets ({info['target']}), "
                        f"{info['dropped_empty']} images without a known word dropped")
                script("cnn/01_pack_images.py", ["--out", str(base), "--workers", str(args.workers)])
                script("cnn/02_train.py", ["--out", str(base), "--preset", "demo", "--device", args.device,
                                           "--seed", str(args.seed), *args.train_arg])
                training = "demo preset" + (f" ({' '.join(args.train_arg)})" if args.train_arg else "")
            index_dir = base / "search_wikipedia"
            script("search/01_build_index.py", ["--out", str(base), "--weights", str(weights), "--space",
                                                str(space_dir), "--images", f"wikipedia:{data / 'Wikipedia'}",
                                                "--index", str(index_dir), "--device", args.device, *common])
            rows.append({"space": name, "kind": space.kind, "dim": space.dim, "training": training,
                         **evaluate(index_dir, space)})
        except UserError as exc:
            cli.log(f"[{name}] not evaluated: {exc}")
            rows.append({"space": name, "error": str(exc).splitlines()[0][:120]})
        table = sorted(earlier + rows, key=lambda r: SPACES.index(r["space"]))
        io.write_json(summary, table)
        io.write_text(run / "spaces" / "summary.md", summary_markdown(table))
    cli.log(f"wrote {run / 'spaces' / 'summary.md'}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

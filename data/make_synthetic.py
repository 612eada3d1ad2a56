"""Write the embedded demo corpus: ImageCLEF Wikipedia, VOC2007 and Wikipedia layouts in miniature.

The real training collection (ImageCLEF Wikipedia 2010, 24 GB) needs registration,
so the whole pipeline can be run end to end on this generated corpus instead: ten
subjects, each with a vocabulary and a visual motif (shape, texture and layout, in
random colours), mixed in illustrated articles, plus the edge cases the stages must
survive (see data/README.md).

    python data/make_synthetic.py --out data/demo [--seed 0] [--scale 1.0] [--force]

then point the stages at it with ``--data-root data/demo``. The same seed and scale
give byte-identical files. The run is skipped when ``--out`` already holds a finished
corpus of the same seed, scale and generator version (``meta.json``), unless ``--force``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, provenance  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402
from texttopicnet.data.synthetic import FOLDERS, SUMMARY_NAME, VERSION, generate  # noqa: E402

STAGE = "make_synthetic"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(
        default_out="data/demo",
        out_help="folder that receives ImageCLEF_Wikipedia/, VOC2007/ and Wikipedia/ (pass it to the stages as "
                 "--data-root); data/demo is git-ignored"), cli.seed_parser(),
                                          cli.workers_parser()])
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplies every count; 1.0 (~250 articles, ~650 training images, 500 VOC and 300 "
                        "Wikipedia pairs) keeps the whole pipeline under 10 minutes on 2 CPU cores, 0.25 is "
                        "the test suite's size and still holds every edge case")
    return p


def _same_request(out: Path, args) -> bool:
    """Same seed, same scale and the same generator version (an older corpus draws different pictures)."""
    meta = provenance.read_meta(out) or {}
    old = meta.get("args", {})
    return (old.get("seed") == args.seed and old.get("scale") == args.scale
            and meta.get("generator_version") == VERSION)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    if not 0 < args.scale <= 40:
        raise UserError(f"--scale must be in (0, 40], got {args.scale}")
    out: Path = args.out
    if not args.force and provenance.stage_is_done(out, STAGE) and _same_request(out, args):
        cli.log(f"already done: {out} holds the demo corpus (seed {args.seed}, scale {args.scale}); "
                f"--force rewrites it")
        return 0
    provenance.invalidate(out)
    summary = generate(out, seed=args.seed, scale=args.scale, workers=args.workers, progress=True)
    files = sorted(p for name in FOLDERS for p in (out / name).rglob("*") if p.is_file())
    provenance.write_meta(out, STAGE, args, outputs=files + [out / SUMMARY_NAME],
                          extra={"tree_sha256": summary["tree_sha256"], "generator_version": VERSION})
    ic, voc, wiki = summary["imageclef"], summary["voc"]["splits"], summary["wikipedia"]
    cli.log(f"wrote {summary['files']} files ({summary['images']} images) under {out}:\n"
            f"  ImageCLEF_Wikipedia: {ic['articles']} articles, {ic['images']} images, "
            f"{ic['paper_filter_kept']} pass the paper's filter (JPEG, >= 256 px, English article)\n"
            f"  VOC2007: train {voc['train']['images']}, val {voc['val']['images']}, test {voc['test']['images']} "
            f"images, {len(summary['voc']['classes'])} classes\n"
            f"  Wikipedia: {wiki['train']['pairs']} train / {wiki['test']['pairs']} test pairs, "
            f"{len(wiki['categories'])} categories\n"
            f"  use it with --data-root {out}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

"""Stage 1: pick the ImageCLEF Wikipedia images the paper trains on and pair each with its article.

Keeps real JPEGs (magic bytes) whose sides are both >= 256 px (header only) and whose
metadata names an existing, non-empty English article; counts every removed image by
reason. Writes RUN/pairs/{pairs.tsv, train_dict_ImageCLEF_Wikipedia.json,
filter_counts.json, meta.json}.

Run::

    python lda/01_build_train_dict.py --data-root data --out runs/demo
    python lda/01_build_train_dict.py --collection /big/ImageCLEF_Wikipedia --out runs/full --workers 8
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError  # noqa: E402
from texttopicnet.data import pairs  # noqa: E402
from texttopicnet.data.readers import imageclef  # noqa: E402

STAGE = "pairs"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.data_parser(), cli.io_parser(), cli.workers_parser()])
    p.add_argument("--collection", type=Path, default=None,
                   help="the ImageCLEF_Wikipedia collection folder itself (overrides --data-root)")
    p.add_argument("--min-side", type=int, default=pairs.MIN_SIDE,
                   help="smallest width and height kept, in pixels (the paper keeps images >= 256 px, "
                        "the size the CNN input is resized to)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config("build_train_dict", args)
    out_dir = args.out / "pairs"
    if provenance.stage_is_done(out_dir, STAGE) and not args.force:
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    if args.min_side < 1:
        raise DataError(f"--min-side must be positive, got {args.min_side}")
    root = imageclef.find_collection_root(args.collection or args.data_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.invalidate(out_dir)

    cli.log(f"listing {root} ...")
    items = imageclef.list_imageclef(root)
    if not items:
        raise DataError(f"{root / 'images'}: no image files found")
    kept, counts = pairs.filter_items(items, workers=args.workers, min_side=args.min_side,
                                      progress=not args.no_progress)
    cli.log(pairs.format_counts(counts))
    if not kept:
        raise DataError(f"{root}: no image passed the filters; see the counts above")

    tsv = out_dir / "pairs.tsv"
    dict_json = out_dir / "train_dict_ImageCLEF_Wikipedia.json"
    counts_json = out_dir / "filter_counts.json"
    pairs.write_pairs_tsv(tsv, kept)
    io.write_json(dict_json, pairs.train_dict(kept, root))
    io.write_json(counts_json, {"collection_root": str(root), **counts})
    provenance.write_meta(out_dir, STAGE, args, inputs=[], outputs=[tsv, dict_json, counts_json],
                          extra={"collection_root": str(root), "counts": {k: counts[k] for k in
                                 ("images", "kept", "removed", "unique_articles")}})
    cli.log(f"wrote {tsv} ({len(kept)} pairs)")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

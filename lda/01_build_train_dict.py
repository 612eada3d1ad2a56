"""Stage 1: pick the ImageCLEF Wikipedia images the paper trains on and pair each with its article.

By default keeps exactly what the release's generate_train_dict.py keeps (a name whose
second dot-part is 'jpg'/'jpeg', the first English caption@article, both sides >= 256 px
from the header), minus what cannot be used safely: paths that lead outside the
collection, missing articles, decompression bombs and images whose pixels do not
decode. Counts every removed image by reason, next to the paper's 100,785 kept images.
Writes RUN/pairs/{pairs.tsv, train_dict_ImageCLEF_Wikipedia.json, filter_counts.json, meta.json}.

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
from texttopicnet.data import images, pairs  # noqa: E402
from texttopicnet.data.readers import imageclef  # noqa: E402

STAGE = "pairs"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.data_parser(), cli.io_parser(), cli.workers_parser()])
    p.add_argument("--collection", type=Path, default=None,
                   help="the ImageCLEF_Wikipedia collection folder itself (overrides --data-root)")
    p.add_argument("--min-side", type=int, default=pairs.MIN_SIDE,
                   help="smallest width and height kept, in pixels (the paper keeps images >= 256 px, "
                        "the size the CNN input is resized to)")
    p.add_argument("--keep-rule", choices=sorted(imageclef.KEEP_RULES), default="release",
                   help="which files and captions are read: " + "; ".join(
                       f"'{r.name}' = {r.help}" for r in imageclef.KEEP_RULES.values())
                   + " (default: the release's, which reproduces the paper's training set)")
    p.add_argument("--decode-check", choices=sorted(pairs.DECODE_CHECKS), default="full",
                   help="; ".join(f"'{k}' = {v}" for k, v in pairs.DECODE_CHECKS.items())
                   + " (default full: an image that cannot be decoded is not a training image)")
    p.add_argument("--max-pixels", type=int, default=images.MAX_PIXELS,
                   help="refuse an image whose header claims more than this many pixels, before decoding "
                        "(default: Pillow's own refusal point, 2 x Image.MAX_IMAGE_PIXELS; 0 = no limit)")
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
    if args.max_pixels < 0:
        raise DataError(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    max_pixels = args.max_pixels or None
    root = imageclef.find_collection_root(args.collection or args.data_root)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.invalidate(out_dir)

    cli.log(f"listing {root} (keep rule {args.keep_rule}) ...")
    items = imageclef.list_imageclef(root, rule=args.keep_rule)
    if not items:
        raise DataError(f"{root / 'images'}: no files found")
    kept, counts = pairs.filter_items(items, workers=args.workers, min_side=args.min_side,
                                      progress=not args.no_progress, rule=args.keep_rule,
                                      decode=args.decode_check, max_pixels=max_pixels)
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
                                 ("images", "kept", "paper_kept", "removed", "unique_articles", "keep_rule",
                                  "decode_check", "max_pixels")}})
    cli.log(f"wrote {tsv} ({len(kept)} pairs)")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

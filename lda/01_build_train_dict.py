"""Stage 1: pick the ImageCLEF Wikipedia images the paper trains on and pair each with its article.

By default keeps exactly what the release's generate_train_dict.py keeps (a name whose
second dot-part is 'jpg'/'jpeg', the first English caption@article, both sides >= 256 px
from the header), minus what cannot be used safely: paths that lead outside the
collection, missing articles, decompression bombs and images whose pixels do not
decode. Counts every removed image by reason, next to the paper's 100,785 kept images.
Writes RUN/pairs/{pairs.tsv, train_dict_ImageCLEF_Wikipedia.json, filter_counts.json, meta.json}.

Any other captioned-image corpus comes in as a manifest (``--corpus manifest:PATH``; write
one with data/make_manifest.py): the same pairs.tsv, each image paired with its caption
file (inline captions are written to RUN/pairs/texts/), the same decode and size checks
(``--min-side`` 64 by default: web images are small), bad lines and files counted in
filter_counts.json (texttopicnet/data/manifest_pairs.py). Every later stage runs unchanged.

A finished run is redone when an argument that shapes the pairs changed (corpus, keep rule,
size and decode checks, splits); --force redoes it anyway.

Run::

    python lda/01_build_train_dict.py --data-root data --out runs/demo
    python lda/01_build_train_dict.py --collection /big/ImageCLEF_Wikipedia --out runs/full --workers 8
    python lda/01_build_train_dict.py --corpus manifest:my_photos/manifest.jsonl --out runs/mine
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError, UserError  # noqa: E402
from texttopicnet.data import images, manifest_pairs, pairs  # noqa: E402
from texttopicnet.data.pairs import inputs_unchanged  # noqa: E402
from texttopicnet.data.readers import imageclef  # noqa: E402

STAGE = "pairs"
CORPORA = ("imageclef", "manifest:PATH")
# The arguments that shape the pairs (per corpus kind): a finished run with other values is redone.
ARG_KEYS = {"imageclef": ("corpus", "min_side", "keep_rule", "decode_check", "max_pixels"),
            "manifest": ("corpus", "min_side", "splits", "decode_check", "max_pixels")}


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.data_parser(), cli.io_parser(), cli.workers_parser()])
    p.add_argument("--corpus", default="imageclef",
                   help="imageclef = the ImageCLEF Wikipedia collection (--collection or --data-root), the paper's; "
                        "manifest:PATH = any captioned-image corpus as a JSON-lines manifest (data/make_manifest.py "
                        "writes one from a folder of images with <stem>.txt captions, InstaCities1M or MIRFlickr)")
    p.add_argument("--collection", type=Path, default=None,
                   help="the ImageCLEF_Wikipedia collection folder itself (overrides --data-root)")
    p.add_argument("--min-side", type=int, default=None,
                   help=f"smallest width and height kept, in pixels (default: {pairs.MIN_SIDE} for ImageCLEF, the "
                        f"paper's, the size the CNN input is resized to; {manifest_pairs.MANIFEST_MIN_SIDE} for "
                        "manifests: captioned web images are often small thumbnails, and under 64 px an upscale "
                        "to 256 leaves nothing to learn)")
    p.add_argument("--keep-rule", choices=sorted(imageclef.KEEP_RULES), default="release",
                   help="ImageCLEF: which files and captions are read: " + "; ".join(
                       f"'{r.name}' = {r.help}" for r in imageclef.KEEP_RULES.values())
                   + " (default: the release's, which reproduces the paper's training set)")
    p.add_argument("--splits", default=",".join(manifest_pairs.DEFAULT_SPLITS),
                   help="manifest: the splits trained on, comma-separated; 'unsplit' = records without a split "
                        "field, 'all' = every record (default: train and unsplit records; val/test stay out of "
                        "training)")
    p.add_argument("--decode-check", choices=sorted(pairs.DECODE_CHECKS), default="full",
                   help="; ".join(f"'{k}' = {v}" for k, v in pairs.DECODE_CHECKS.items())
                   + " (default full: an image that cannot be decoded is not a training image)")
    p.add_argument("--max-pixels", type=int, default=images.MAX_PIXELS,
                   help="refuse an image whose header claims more than this many pixels, before decoding "
                        "(default: Pillow's own refusal point, 2 x Image.MAX_IMAGE_PIXELS; 0 = no limit)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def parse_corpus(value: str) -> tuple[str, Path | None]:
    """``imageclef`` -> ("imageclef", None); ``manifest:PATH`` -> ("manifest", PATH)."""
    kind, sep, rest = value.partition(":")
    if kind == "imageclef" and not sep:
        return kind, None
    if kind == "manifest" and rest:
        return kind, Path(rest).expanduser()
    raise UserError(f"--corpus {value!r}: expected one of {', '.join(CORPORA)}")


def _imageclef(args, out_dir: Path, max_pixels):
    root = imageclef.find_collection_root(args.collection or args.data_root)
    min_side = args.min_side
    cli.log(f"listing {root} (keep rule {args.keep_rule}) ...")
    items = imageclef.list_imageclef(root, rule=args.keep_rule)
    if not items:
        raise DataError(f"{root / 'images'}: no files found")
    kept, counts = pairs.filter_items(items, workers=args.workers, min_side=min_side,
                                      progress=not args.no_progress, rule=args.keep_rule,
                                      decode=args.decode_check, max_pixels=max_pixels)
    cli.log(pairs.format_counts(counts))
    dict_json = out_dir / "train_dict_ImageCLEF_Wikipedia.json"
    summary = {k: counts[k] for k in ("images", "kept", "paper_kept", "removed", "unique_articles", "keep_rule",
                                      "decode_check", "max_pixels")}
    return root, kept, {"collection_root": str(root), **counts}, summary, [(dict_json, pairs.train_dict)]


def _manifest(args, out_dir: Path, max_pixels, path: Path):
    splits = manifest_pairs.parse_splits(args.splits)
    min_side = args.min_side
    cli.log(f"reading manifest {path} (splits: {', '.join(splits) if splits else 'all'}; min side {min_side} px) ...")
    kept, counts = manifest_pairs.build_pairs(path, out_dir / manifest_pairs.TEXTS_DIR, workers=args.workers,
                                              min_side=min_side, max_pixels=max_pixels, decode=args.decode_check,
                                              splits=splits, progress=not args.no_progress)
    cli.log(manifest_pairs.format_counts(counts))
    root = Path(counts["collection_root"])
    summary = {k: counts[k] for k in ("corpus", "manifest", "images", "kept", "removed", "unique_articles",
                                      "inline_captions", "splits", "decode_check", "min_side", "max_pixels")}
    return root, kept, counts, summary, []


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    kind, manifest = parse_corpus(args.corpus)
    if manifest is not None:
        manifest = manifest.resolve()
        args.corpus = f"manifest:{manifest}"  # recorded in one form, whatever the spelling
    if args.min_side is None:
        args.min_side = manifest_pairs.MANIFEST_MIN_SIDE if manifest else pairs.MIN_SIDE
    cli.print_config("build_train_dict", args)
    out_dir = args.out / "pairs"
    changed = provenance.args_changed(out_dir, args, ARG_KEYS[kind], defaults=vars(parser.parse_args([])))
    changed.update(_root_changed(out_dir, args, kind, manifest))
    if manifest is not None and provenance.read_meta(out_dir) and not inputs_unchanged(out_dir, [manifest]):
        changed["manifest"] = ("(recorded checksum)", "changed file")
    done = provenance.stage_is_done(out_dir, STAGE)
    if done and not args.force and not changed:
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    if done and changed:
        cli.log(f"redoing {out_dir}: arguments changed since it finished ({provenance.format_changes(changed)})")
    if args.min_side < 1:
        raise DataError(f"--min-side must be positive, got {args.min_side}")
    if args.max_pixels < 0:
        raise DataError(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    max_pixels = args.max_pixels or None
    previous = provenance.recorded_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.invalidate(out_dir)

    if kind == "manifest":
        root, kept, counts, summary, side = _manifest(args, out_dir, max_pixels, manifest)
    else:
        root, kept, counts, summary, side = _imageclef(args, out_dir, max_pixels)
    if not kept:
        raise DataError(f"{root}: no image passed the filters; see the counts above")

    tsv = out_dir / "pairs.tsv"
    counts_json = out_dir / "filter_counts.json"
    pairs.write_pairs_tsv(tsv, kept)
    for path, make in side:
        io.write_json(path, make(kept, root))
    io.write_json(counts_json, counts)
    outputs = [tsv, *(p for p, _ in side), counts_json]
    provenance.remove_stale_outputs(previous, outputs)
    provenance.write_meta(out_dir, STAGE, args, inputs=[manifest] if manifest else [], outputs=outputs,
                          extra={"corpus": kind, "collection_root": str(root), "counts": summary})
    cli.log(f"wrote {tsv} ({len(kept)} pairs)")
    return 0


def _root_changed(out_dir: Path, args, kind: str, manifest: Path | None) -> dict:
    """The corpus folder, compared resolved (``data`` and ``./data`` are the same collection)."""
    meta = provenance.read_meta(out_dir)
    if meta is None or not meta.get("collection_root"):
        return {}
    try:
        root = (manifest.parent if kind == "manifest"
                else imageclef.find_collection_root(args.collection or args.data_root))
    except (DataError, OSError):
        return {}  # not resolvable now: the other checks decide
    recorded = meta["collection_root"]
    return {} if Path(recorded) == Path(root) else {"collection_root": (recorded, str(root))}


if __name__ == "__main__":
    cli.run_main(main)

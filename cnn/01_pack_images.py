"""Pack the training images into one memory-mappable uint8 store aligned with the labels.

Reads RUN/labels/{labels.npy, index.txt} (written by lda/03_generate_labels.py),
decodes and resizes every image once (256x256, aspect ratio ignored, as the paper)
in parallel, and writes RUN/packed/{images.npy, labels.npy, index.txt, meta.json}.
Unreadable images are skipped and listed in meta.json; labels.npy and index.txt keep
only the packed rows, so no image ever trains with another image's label. Labels are any
finite float32 rows (topic distributions, or vectors of another text space); the training
stage checks that they suit its loss (sigmoid cross-entropy: values in [0, 1]).
Resumable: rerun the same command after an interruption.

    python cnn/01_pack_images.py --out runs/demo --workers 2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError  # noqa: E402
from texttopicnet.data.packing import pack_images  # noqa: E402
from texttopicnet.data.pairs import inputs_unchanged  # noqa: E402

STAGE = "pack_images"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.workers_parser()])
    p.add_argument("--size", type=int, default=256,
                   help="stored image side in pixels; the paper resizes to 256x256 and trains on 227 crops (every "
                        "registered network expects a 256 warp; smaller stores need cnn/02_train.py --crop)")
    p.add_argument("--keep-aspect", action="store_true",
                   help="resize the short side to --size and centre-crop instead of the paper's warp "
                        "(the original ignores the aspect ratio)")
    return p


def _read_inputs(labels_dir: Path) -> tuple[np.ndarray, list[str]]:
    lab_path, idx_path = labels_dir / "labels.npy", labels_dir / "index.txt"
    for p in (lab_path, idx_path):
        if not p.is_file():
            raise DataError(f"{p} not found; run lda/03_generate_labels.py --out {labels_dir.parent} first")
    try:
        labels = np.load(lab_path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{lab_path}: not a readable .npy file ({exc})") from None
    paths = io.read_lines(idx_path)
    if labels.ndim != 2 or labels.shape[0] != len(paths):
        raise DataError(f"{lab_path} has shape {labels.shape} but {idx_path} lists {len(paths)} images; "
                        f"they must be aligned row for row (re-run lda/03_generate_labels.py)")
    if not np.isfinite(labels).all():
        raise DataError(f"{lab_path}: labels contain NaN or infinite values")
    return labels.astype(np.float32, copy=False), paths


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    from texttopicnet.networks import backbones  # here, not at the top: spawned workers re-import this script

    smallest = min(backbones.get(n).min_input for n in backbones.names())
    if args.size < smallest:
        raise DataError(f"--size {args.size} is smaller than any network accepts ({smallest} px)")
    if args.size < backbones.get(backbones.DEFAULT_ARCH).crop:
        cli.log(f"note: --size {args.size} is smaller than CaffeNet's {backbones.get(backbones.DEFAULT_ARCH).crop} px "
                "training crop (the paper's); train on it with cnn/02_train.py --crop")
    labels_dir, out_dir = args.out / "labels", args.out / "packed"
    inputs = [labels_dir / "labels.npy", labels_dir / "index.txt"]
    meta = provenance.read_meta(out_dir) or {}
    done = (provenance.stage_is_done(out_dir, STAGE) and not args.force and meta.get("size") == args.size
            and meta.get("keep_aspect") == args.keep_aspect)
    if done and inputs_unchanged(out_dir, inputs):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    labels, paths = _read_inputs(labels_dir)
    if done and inputs_unchanged(out_dir, inputs[1:]):
        # Same images, new labels (another text space or target): the pixels are reused.
        skipped_rows = {e["row"] for e in meta.get("skipped", [])}
        kept = [i for i in range(len(paths)) if i not in skipped_rows]
        provenance.invalidate(out_dir)
        io.save_npy(out_dir / "labels.npy", labels[kept])
        cli.log(f"labels changed, images did not: relabelled {len(kept)} packed images (pixels reused)")
        provenance.write_meta(out_dir, STAGE, args, inputs=inputs,
                              outputs=[out_dir / n for n in ("images.npy", "labels.npy", "index.txt")],
                              extra={k: meta[k] for k in ("count", "total", "skipped_count", "skipped", "size",
                                                          "keep_aspect")})
        return 0
    if provenance.stage_is_done(out_dir, STAGE) and not args.force:
        cli.log(f"redoing {out_dir}: its inputs or --size/--keep-aspect changed")
    provenance.invalidate(out_dir)
    res = pack_images(paths, out_dir / "images.npy", size=args.size, keep_aspect=args.keep_aspect,
                      workers=args.workers, resume=not args.force)
    io.save_npy(out_dir / "labels.npy", labels[res.kept])
    io.write_lines(out_dir / "index.txt", [paths[i] for i in res.kept])
    cli.log(f"packed {len(res.kept)} of {len(paths)} images into {out_dir / 'images.npy'}"
            + (f" ({res.resumed} reused from an interrupted run)" if res.resumed else ""))
    if res.skipped:
        cli.log(f"skipped {len(res.skipped)} unreadable image(s); their labels were dropped too:")
        for i, reason in res.skipped[:10]:
            cli.log(f"  {reason}")
        if len(res.skipped) > 10:
            cli.log(f"  ... and {len(res.skipped) - 10} more (all listed in {out_dir / 'meta.json'})")
    outputs = [out_dir / n for n in ("images.npy", "labels.npy", "index.txt")]
    provenance.write_meta(out_dir, STAGE, args, inputs=inputs,
                          outputs=outputs, extra={
                              "count": len(res.kept), "total": len(paths), "skipped_count": len(res.skipped),
                              "skipped": [{"row": i, "path": paths[i], "reason": r} for i, r in res.skipped],
                              "size": args.size, "keep_aspect": args.keep_aspect})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

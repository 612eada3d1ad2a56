"""Write a manifest (JSON lines, one captioned image per line) for a corpus you have.

Readers: ``instacities`` (InstaCities1M: per-city image and caption folders), ``mirflickr``
(MIRFlickr-25K: im<N>.jpg, meta/tags, the 24 concept annotations) and ``folder`` (any folder
of images with a ``<stem>.txt`` caption beside each). The manifest goes to
``ROOT/manifest.jsonl`` (paths in it are relative to its folder and never leave it); then

    python lda/01_build_train_dict.py --corpus manifest:ROOT/manifest.jsonl --out runs/mine

and every later stage runs unchanged (see README.md, "Your own corpus").

Run::

    python data/make_manifest.py instacities data/InstaCities1M
    python data/make_manifest.py mirflickr data/MIRFLICKR25K --test-fraction 0.5
    python data/make_manifest.py folder my_photos --categories-from-folders
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402
from texttopicnet.data.readers import folder, instacities, mirflickr  # noqa: E402

READERS = {"instacities": instacities, "mirflickr": mirflickr, "folder": folder}


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.seed_parser()])
    p.add_argument("reader", choices=sorted(READERS), help="the corpus layout (data/README.md describes each)")
    p.add_argument("root", type=Path, help="the corpus folder; the manifest names files relative to it")
    p.add_argument("--out", type=Path, default=None,
                   help="manifest path (default ROOT/manifest.jsonl); must be in ROOT or a folder above it")
    p.add_argument("--images", type=Path, default=None,
                   help="instacities: the image tree (one folder per city), when not under a usual name")
    p.add_argument("--captions", type=Path, default=None,
                   help="instacities: the caption tree; folder: a tree of <relative path>.txt captions")
    p.add_argument("--test-fraction", type=float, default=0.0,
                   help="mirflickr: share of images given split=test (seeded by --seed); the official release "
                        "has no split, LearnFromWebData drew random ones")
    p.add_argument("--categories-from-folders", action="store_true",
                   help="folder: use each image's first sub-folder as its category")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config("make_manifest", args)
    if not 0.0 <= args.test_fraction < 1.0:
        raise UserError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    if args.reader == "instacities":
        counts = instacities.build_manifest(args.root, args.out, images=args.images, captions=args.captions)
    elif args.reader == "mirflickr":
        counts = mirflickr.build_manifest(args.root, args.out, test_fraction=args.test_fraction, seed=args.seed)
    else:
        counts = folder.build_manifest(args.root, args.out, captions=args.captions,
                                       categories_from_folders=args.categories_from_folders)
    cli.log(", ".join(f"{k}: {v}" for k, v in counts.items() if k != "manifest"))
    cli.log(f"wrote {counts['manifest']}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

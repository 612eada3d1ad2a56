"""Download, verify and extract a public dataset into the data folder, or check the ImageCLEF one.

    python data/download.py voc2007      # PASCAL VOC2007 trainval+test -> data/VOC2007/VOCdevkit/VOC2007/
    python data/download.py wikipedia    # Wikipedia cross-modal dataset -> data/Wikipedia/
    python data/download.py imageclef    # how to get the collection (registration); checks data/ImageCLEF_Wikipedia/

Archives are fetched with pooch into data/downloads/ (a broken transfer is retried and
resumed with HTTP Range requests; after a failed run, just rerun the command), checked
against the published md5 (VOC2007) or have their sha256 recorded beside them and checked
on reuse (Wikipedia: no checksum is published), and extracted with tarfile's ``data`` filter
(a member that would land outside the dataset folder, a link out of it or a device file is
refused and counted) into a temporary folder that is renamed into place only after its
layout checked out, so a failed run never leaves a tree that a stage would trust. A
finished dataset is skipped. Mirrors: ``--mirror BASE_URL`` (repeatable) or the
environment variable TEXTTOPICNET_<DATASET>_MIRRORS (e.g. TEXTTOPICNET_VOC2007_MIRRORS).
The datasets are the entries of texttopicnet.data.downloads.DATASETS plus those of the related
systems' modules (:data:`SYSTEM_MODULES`: Oxford5k/Paris6k and the revisited ground truth for
instance search, ...), each module exposing ``DATASETS`` (archives) and optionally ``FILES`` +
``install_files`` (plain files, not extracted).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli  # noqa: E402
from texttopicnet.core.errors import DataError  # noqa: E402
from texttopicnet.data import downloads  # noqa: E402

# Modules of the related systems that declare their own downloadable datasets (kept out of
# texttopicnet.data.downloads, which they import: no import cycle).
SYSTEM_MODULES = ("texttopicnet.instance.datasets", "texttopicnet.vlm.datasets")


def _system_entries():
    import importlib

    archives, files = {}, {}
    for name in SYSTEM_MODULES:
        mod = importlib.import_module(name)
        archives.update({s.key: s for s in getattr(mod, "DATASETS", ())})
        files.update({s.key: (s, mod.install_files) for s in getattr(mod, "FILES", ())})
    return archives, files


SYSTEM_ARCHIVES, SYSTEM_FILES = _system_entries()
ARCHIVES = {**downloads.DATASETS, **SYSTEM_ARCHIVES}

IMAGECLEF_HELP = """\
The ImageCLEF Wikipedia Retrieval 2010 collection (TextTopicNet's training data) is
distributed only after registration, so this script cannot fetch it. To get it:

  1. Register and download at http://www.imageclef.org/wikidata (about 24 GB): the
     images, the image metadata and the English article texts; or ask the
     TextTopicNet authors for their 2.3 GB streamlined copy (English articles,
     256x256 JPEGs) that keeps the same layout.
  2. Unpack it so that this layout exists:

       {root}/ImageCLEF_Wikipedia/images/<subdir>/<id>.jpg        (237,434 images)
       {root}/ImageCLEF_Wikipedia/metadata/<subdir>/<id>.xml      (one per image)
       {root}/ImageCLEF_Wikipedia/<article path>                  (as named by each metadata file's
                                                                    English <caption article="...">)

  3. Run this command again: it checks the layout and counts usable images.
"""


def build_parser():
    p = cli.make_parser(__doc__)
    p.add_argument("dataset", choices=(*ARCHIVES, *SYSTEM_FILES, "imageclef"), help="which dataset")
    p.add_argument("--root", "--data-root", dest="data_root", type=Path, default=Path("data"),
                   help="data folder; datasets land in the sub-folders the stages read "
                        "(VOC2007/, Wikipedia/, ImageCLEF_Wikipedia/), archives in downloads/")
    p.add_argument("--mirror", action="append", default=None, metavar="BASE_URL",
                   help="base URL to fetch the archives from, tried in the order given (replaces the "
                        "defaults: for VOC2007 the official host, then the pjreddie.com mirror)")
    p.add_argument("--force", action="store_true",
                   help="extract again (replacing the folder only once the new copy checked out; archives "
                        "that still pass their checksum are reused) even if the dataset is already in place")
    p.add_argument("--remove-archives", action="store_true",
                   help="delete the archives from <root>/downloads/ after a successful extraction "
                        "(kept by default so a re-extraction needs no network)")
    p.add_argument("--retries", type=int, default=3,
                   help="extra attempts per mirror after a failed one (pooch's retry_if_failed, with back-off; "
                        "a broken transfer resumes where it stopped)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server between bytes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def check_voc(target: Path) -> str:
    from texttopicnet.data.readers import voc

    root = voc.find_voc_root(target)
    parts = []
    for split in ("trainval", "test"):
        if (root / "ImageSets" / "Main" / f"{split}.txt").is_file():
            s = voc.load_voc_split(root, split)
            parts.append(f"{split} {len(s.ids):,} images x {len(s.classes)} classes")
    return f"VOC2007 at {root}: " + ", ".join(parts)


def check_wikipedia(target: Path) -> str:
    from texttopicnet.data.readers import wikipedia

    root = wikipedia.find_wikipedia_root(target)
    pairs = wikipedia.load_wikipedia(root, "all")
    with_image = sum(p.image_path is not None for p in pairs)
    return f"Wikipedia at {root}: {len(pairs):,} pairs, {with_image:,} with their image"


# dataset key -> a summary made with the reader the stages use (a DataError there means they would fail too).
READER_CHECKS = {"voc2007": check_voc, "wikipedia": check_wikipedia}


def confirm_with_readers(dataset: str, target: Path) -> str:
    """Open the result with the readers the stages use; datasets without a reader get the layout check's word."""
    check = READER_CHECKS.get(dataset)
    return check(target) if check else f"{dataset} at {target}: layout checked"


def check_imageclef(root: Path) -> int:
    from texttopicnet.data.readers import imageclef

    print(IMAGECLEF_HELP.format(root=root))
    try:
        coll = imageclef.find_collection_root(root)
    except DataError as exc:
        raise DataError(f"ImageCLEF Wikipedia collection not found: {exc}") from None
    items = imageclef.list_imageclef(coll)
    if not items:
        raise DataError(f"{coll}/images holds no image files")
    problems: dict[str, int] = {}
    usable = missing_article = 0
    for item in items:
        if item.problem is not None:
            problems[item.problem] = problems.get(item.problem, 0) + 1
        elif item.article_path is None or not item.article_path.is_file():
            missing_article += 1
        else:
            usable += 1
    print(f"found the collection at {coll}: {len(items):,} images; {usable:,} with an English article on disk")
    for name, count in sorted(problems.items()):
        print(f"  skipped {count:,}: {name}")
    if missing_article:
        print(f"  skipped {missing_article:,}: article file named by the metadata is not on disk")
    if usable == 0:
        raise DataError(f"{coll}: no image has an English article on disk; the article texts are missing "
                        "or in another folder than the metadata names")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config("download_" + args.dataset, args)
    if args.retries < 0:
        raise DataError("--retries must be 0 or more")
    if args.dataset == "imageclef":
        return check_imageclef(args.data_root)
    if args.dataset in SYSTEM_FILES:
        spec, install_files = SYSTEM_FILES[args.dataset]
        target = install_files(spec, args.data_root, mirrors=args.mirror, force=args.force, retries=args.retries,
                               timeout=args.timeout, quiet=args.quiet, args=args, log=cli.log)
        cli.log(f"{args.dataset} at {target}")
        return 0
    spec = ARCHIVES[args.dataset]
    result = downloads.install(spec, args.data_root, mirrors=args.mirror, force=args.force,
                               remove_archives=args.remove_archives, retries=args.retries,
                               timeout=args.timeout, quiet=args.quiet, args=args, log=cli.log)
    cli.log(confirm_with_readers(args.dataset, result.target))
    return 0


if __name__ == "__main__":
    cli.run_main(main)

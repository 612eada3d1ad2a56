"""Reader for PASCAL VOC2007 image-level classification labels.

Layout: ``VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``. The image
ids of a split are in ``ImageSets/Main/<split>.txt``; each class has
``ImageSets/Main/<class>_<split>.txt`` with lines ``id label``, label 1 (present),
-1 (absent) or 0 (only "difficult" instances: ignored by the official AP). The
official files use CRLF line ends and pad positive labels (``000005  1``).

Use::

    from texttopicnet.data.readers import voc
    root = voc.find_voc_root("data")                # the folder holding ImageSets/
    test = voc.load_voc_split(root, "test")         # ids, classes, labels int8 (N, C), image_paths
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import DataError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
SPLITS = ("train", "val", "trainval", "test")
HOW_TO_GET = ("run `python data/download.py voc2007` (or `python data/make_synthetic.py --out data` "
              "for the demo corpus); see data/README.md")


@dataclass
class VOCSplit:
    ids: list[str]
    classes: list[str]
    labels: np.ndarray       # int8 (N, C) in {1, -1, 0}
    image_paths: list[Path]  # JPEGImages/<id>.jpg (may be absent when only the label files are present)


def _main_dir(root: Path) -> Path:
    return root / "ImageSets" / "Main"


def find_voc_root(path: str | os.PathLike) -> Path:
    """The VOC2007 folder holding ``ImageSets/Main``.

    Accepts that folder itself, ``.../VOCdevkit``, ``data/VOC2007`` (holding
    ``VOCdevkit/VOC2007``) or the parent ``data`` folder.
    """
    path = Path(path).expanduser()
    candidates = [path, path / "VOC2007", path / "VOCdevkit" / "VOC2007"]
    for name in ("VOC2007", "voc2007"):
        candidates += [path / name / "VOCdevkit" / "VOC2007", path / name]
    for cand in candidates:
        if _main_dir(cand).is_dir():
            return cand.absolute()
    if not path.exists():
        raise DataError(f"{path}: folder not found; expected PASCAL VOC2007; {HOW_TO_GET}")
    raise DataError(f"{path}: no ImageSets/Main found in it, in VOC2007/, VOCdevkit/VOC2007/ or "
                    f"VOC2007/VOCdevkit/VOC2007/; {HOW_TO_GET}")


def voc_classes(root: str | os.PathLike) -> list[str]:
    """Classes that have ``<class>_<split>.txt`` files; the standard order for the 20 VOC classes, else sorted."""
    main = _main_dir(Path(root))
    if not main.is_dir():
        raise DataError(f"{main}: folder not found; {HOW_TO_GET}")
    found = set()
    with os.scandir(main) as it:
        for entry in it:
            stem, ext = os.path.splitext(entry.name)
            cls, sep, split = stem.rpartition("_")
            if ext == ".txt" and sep and cls and split in SPLITS:
                found.add(cls)
    if not found:
        raise DataError(f"{main}: no <class>_<split>.txt label files; {HOW_TO_GET}")
    if found == set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def _read_ids(path: Path) -> list[str]:
    ids = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 1:
                raise DataError(f"{path}:{lineno}: expected one image id per line, got {line.strip()!r}")
            ids.append(parts[0])
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: image ids are repeated")
    return ids


def _read_labels(path: Path) -> dict[str, int]:
    out = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
                raise DataError(f"{path}:{lineno}: expected 'id label' with label 1, -1 or 0, "
                                f"got {line.strip()!r}")
            out[parts[0]] = int(parts[1])
    return out


def load_voc_split(root: str | os.PathLike, split: str) -> VOCSplit:
    """Ids, classes and the (N, C) int8 label matrix of ``split`` (train/val/trainval/test).

    Raises :class:`DataError` naming the file on a missing file, a malformed line,
    or an id of ``<split>.txt`` that a class file lacks.
    """
    if split not in SPLITS:
        raise DataError(f"unknown VOC split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root).absolute()
    main = _main_dir(root)
    ids_file = main / f"{split}.txt"
    if not ids_file.is_file():
        raise DataError(f"{ids_file}: split file not found; {HOW_TO_GET}")
    ids = _read_ids(ids_file)
    classes = voc_classes(root)
    labels = np.zeros((len(ids), len(classes)), dtype=np.int8)
    for j, cls in enumerate(classes):
        path = main / f"{cls}_{split}.txt"
        if not path.is_file():
            raise DataError(f"{path}: label file not found (other splits have class {cls!r}); {HOW_TO_GET}")
        table = _read_labels(path)
        try:
            labels[:, j] = [table[i] for i in ids]
        except KeyError as exc:
            raise DataError(f"{path}: image id {exc.args[0]} of {ids_file.name} has no label") from None
    image_paths = [root / "JPEGImages" / f"{i}.jpg" for i in ids]
    return VOCSplit(ids=ids, classes=classes, labels=labels, image_paths=image_paths)

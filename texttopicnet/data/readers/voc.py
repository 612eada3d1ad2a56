"""Reader for PASCAL VOC2007 image-level classification labels.

Layout: ``VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``. The image
ids of a split are in ``ImageSets/Main/<split>.txt``; each class has
``ImageSets/Main/<class>_<split>.txt`` with lines ``id label``, label 1 (present),
-1 (absent) or 0 (only "difficult" instances: ignored by the official AP). The
official files use CRLF line ends and right-align labels in two characters
(``000005  1``, ``007367  0``, ``000001 -1``).

Two readings of the same lines:

- :func:`load_voc_split`: the raw label matrix in {1, -1, 0}, read by value (what the
  official devkit and its 11-point AP use: 0 = ignored).
- :func:`release_label` / :func:`load_release_labels`: the original release's reading
  (``experiments/voc_2007_classification.py``): ``line.split(' ')``, an empty second field
  means 1, then ``max(0, int(field))``. On the official padding both ``  1`` and ``  0``
  give an empty second field, so difficult-only images become POSITIVES (1) and only
  ``-1`` lines are negatives (0). The release trained, chose C and printed its AP with these.

Image ids come from a list file, so they are untrusted: an id whose image path would
resolve outside ``JPEGImages/`` (``../../x``, an absolute path, a symlink out) is refused,
dropped from the split and counted in ``VOCSplit.refused`` under ``outside_collection``.

Use::

    from texttopicnet.data.readers import voc
    root = voc.find_voc_root("data")                # the folder holding ImageSets/
    test = voc.load_voc_split(root, "test")         # ids, classes, labels int8 (N, C), image_paths
    rel = voc.load_release_labels(root, test)       # uint8 (N, C) in {1, 0}: the release's targets
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.errors import DataError
from ...core.paths import OUTSIDE, inside

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
    split: str = ""
    refused: dict[str, int] = field(default_factory=dict)  # {"outside_collection": n} ids dropped
    refused_ids: list[str] = field(default_factory=list)   # the first few, for the message


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


def _image_path(root: Path, image_id: str) -> Path | None:
    """``JPEGImages/<id>.jpg`` when it stays inside JPEGImages/ (symlinks resolved), else None."""
    jpeg = root / "JPEGImages"
    if inside(jpeg, f"{image_id}.jpg") is None:
        return None
    # the unresolved path: the feature cache is keyed on these strings, keep them stable
    return jpeg / f"{image_id}.jpg"


def load_voc_split(root: str | os.PathLike, split: str) -> VOCSplit:
    """Ids, classes and the (N, C) int8 label matrix of ``split`` (train/val/trainval/test).

    Raises :class:`DataError` naming the file on a missing file, a malformed line,
    or an id of ``<split>.txt`` that a class file lacks. Ids whose image would lie
    outside ``JPEGImages/`` are dropped and counted in ``refused``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown VOC split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root).absolute()
    main = _main_dir(root)
    ids_file = main / f"{split}.txt"
    if not ids_file.is_file():
        raise DataError(f"{ids_file}: split file not found; {HOW_TO_GET}")
    ids, image_paths, refused_ids = [], [], []
    for i in _read_ids(ids_file):
        path = _image_path(root, i)
        if path is None:
            refused_ids.append(i)
            continue
        ids.append(i)
        image_paths.append(path)
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
    refused = {OUTSIDE: len(refused_ids)} if refused_ids else {}
    return VOCSplit(ids=ids, classes=classes, labels=labels, image_paths=image_paths, split=split,
                    refused=refused, refused_ids=refused_ids[:5])


def release_label(line: str) -> tuple[str, int] | None:
    """One label line read with the original release's rule: ``(id, 1 or 0)``, or None when it cannot.

    The release split on a single space; an empty second field (the official files pad
    ``1`` and ``0`` to two characters) counts as ``1``; otherwise the field's integer value;
    then ``max(0, value)``. So ``'007367  0'`` -> 1 (difficult = positive), ``'000001 -1'``
    -> 0, ``'000005  1'`` -> 1, and a single-space ``'x 0'`` -> 0. None: the release would
    have crashed on the line (no space, or no integer in the second field).
    """
    fields = line.split(" ")
    if len(fields) < 2:
        return None
    value = fields[1]
    if value == "":
        return fields[0], 1
    try:
        return fields[0], max(0, int(value))  # int() accepts the trailing '\r\n', as in the release
    except ValueError:
        return None


def read_release_labels(path: str | os.PathLike) -> dict[str, int]:
    """``{id: 1 or 0}`` of one ``<class>_<split>.txt`` read line by line with :func:`release_label`.

    Blank lines are skipped (the release never met one: the official files have none).
    A line the release could not read raises :class:`DataError` naming it.
    """
    out: dict[str, int] = {}
    # newline="" keeps the '\r\n' on each line, as Python 2's open() did in the release
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parsed = release_label(line)
            if parsed is None:
                raise DataError(f"{path}:{lineno}: the release's parsing (split on one space) cannot read "
                                f"{line.strip()!r}; the official files are 'id label' separated by spaces")
            out[parsed[0]] = parsed[1]
    return out


def load_release_labels(root: str | os.PathLike, split: VOCSplit) -> np.ndarray:
    """uint8 (N, C) of the release's training targets (1 = positive, 0 = negative), aligned with ``split``.

    Read from the same ``<class>_<split>.txt`` files as ``split.labels``, with the release's rule.
    """
    if not split.split:
        raise ValueError("load_release_labels needs a VOCSplit made by load_voc_split")
    main = _main_dir(Path(root).absolute())
    out = np.zeros((len(split.ids), len(split.classes)), dtype=np.uint8)
    for j, cls in enumerate(split.classes):
        path = main / f"{cls}_{split.split}.txt"
        table = read_release_labels(path)
        try:
            out[:, j] = [table[i] for i in split.ids]
        except KeyError as exc:
            raise DataError(f"{path}: image id {exc.args[0]} has no label the release could read") from None
    return out

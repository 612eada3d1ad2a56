"""Eye-fixation datasets: MIT1003 (Judd et al. 2009) and Toronto (Bruce & Tsotsos 2006).

Layouts (as their archives unpack; ``data/README.md`` has the details):

MIT1003 (``<root>/MIT1003/``: ALLSTIMULI.zip, ALLFIXATIONMAPS.zip, DATA.zip)::

    ALLSTIMULI/<name>.jpeg                  1003 images (longest side 1024)
    ALLFIXATIONMAPS/<name>_fixPts.jpg       fixated pixels (a binary image stored as JPEG)
    ALLFIXATIONMAPS/<name>_fixMap.jpg       continuous fixation map (blurred fixations)
    DATA/<subject>/<name>.mat               raw eye-tracking samples of each of 15 subjects

Toronto (``<root>/Toronto/``: eyetrackingdata.zip, which unpacks to ``eyetrackingdata/``)::

    fixdens/Original Image Set/<n>.jpg      120 images, 681x511, n = 1..120
    fixdens/Density Maps produced from raw experimental eye tracking data/d<n>.jpg
    fixdens/origfixdata.mat                 'white': 1x120 cell of binary fixation maps
    fixdens/Raw/<subject>/<n>.fix           per-subject fixation listings (not read)

:func:`read_mit1003` / :func:`read_toronto` list the items (image, fixations, density map) and
count what is skipped (missing partner files, paths leaving the folder); :func:`load_item`
decodes one item: uint8 RGB image, boolean fixation map (JPEG-stored points: > 127), float
density map in [0, 1]. ``DATASETS`` are the download entries (``data/download.py`` lists them) (``texttopicnet.data.downloads``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.paths import OUTSIDE, inside
from ..data.downloads import DatasetSpec, RemoteFile
from ..data.images import ImageReadError, load_rgb

MIT_STIMULI, MIT_MAPS, MIT_DATA = "ALLSTIMULI", "ALLFIXATIONMAPS", "DATA"
TORONTO_IMAGES = "fixdens/Original Image Set"
TORONTO_DENSITY = "fixdens/Density Maps produced from raw experimental eye tracking data"
TORONTO_POINTS = "fixdens/origfixdata.mat"
POINT_THRESHOLD = 127  # fixPts.jpg is a binary image saved as JPEG: artefacts stay far below mid-grey

DATASETS = (
    DatasetSpec(
        key="mit1003", folder="MIT1003",
        description="MIT1003 eye fixations (Judd et al. 2009): 1003 images, 15 subjects",
        files=(RemoteFile("ALLSTIMULI.zip", "md5:0d7df8b954ecba69b6796e77b9afe4b6"),  # md5 as pysaliency checks it
               RemoteFile("ALLFIXATIONMAPS.zip"),                                    # none published: sha256 recorded
               RemoteFile("DATA.zip", "md5:ea19d74ad0a0144428c53e9d75c2d71c")),
        mirrors=("https://people.csail.mit.edu/tjudd/WherePeopleLook/",),
        top=MIT_STIMULI, required=(MIT_STIMULI, MIT_MAPS)),
    DatasetSpec(
        key="toronto", folder="Toronto",
        description="Toronto eye fixations (Bruce & Tsotsos 2006): 120 images, 20 subjects",
        files=(RemoteFile("eyetrackingdata.zip", "md5:38d5c02217060d4d2d1a4649cc632af1"),),
        mirrors=("http://www-sop.inria.fr/members/Neil.Bruce/",),
        top=TORONTO_POINTS, required=(TORONTO_IMAGES, TORONTO_POINTS)),
)


@dataclass
class FixationItem:
    name: str
    image: Path
    fixations: Path | None      # MIT1003: _fixPts.jpg; Toronto: None (points come from origfixdata.mat)
    density: Path | None
    points_index: int = -1      # Toronto: column of the 'white' cell


@dataclass
class FixationDataset:
    name: str
    root: Path
    items: list[FixationItem]
    skipped: Counter
    points: list | None = None  # Toronto: the decoded 'white' maps


def _checked(root: Path, path: Path, skipped: Counter) -> Path | None:
    if not path.is_file():
        return None
    real = inside(root, path.relative_to(root))
    if real is None:
        skipped[OUTSIDE] += 1
    return real


def find_mit1003_root(path: Path) -> Path:
    path = Path(path)
    for cand in (path, path / "MIT1003"):
        if (cand / MIT_STIMULI).is_dir():
            return cand
    raise DataError(f"{path}: no MIT1003 here (expected {MIT_STIMULI}/ and {MIT_MAPS}/; "
                    "get it with: python data/download.py mit1003)")


def read_mit1003(path: Path) -> FixationDataset:
    root = find_mit1003_root(path)
    if not (root / MIT_MAPS).is_dir():
        raise DataError(f"{root / MIT_MAPS} missing: the fixation maps are in ALLFIXATIONMAPS.zip")
    skipped: Counter = Counter()
    items = []
    for img in sorted((root / MIT_STIMULI).iterdir()):
        if img.suffix.lower() not in (".jpeg", ".jpg") or img.name.startswith("."):
            continue
        real = _checked(root, img, skipped)
        if real is None:
            continue
        pts = _checked(root, root / MIT_MAPS / f"{img.stem}_fixPts.jpg", skipped)
        dens = _checked(root, root / MIT_MAPS / f"{img.stem}_fixMap.jpg", skipped)
        if pts is None:
            skipped["no_fixation_points"] += 1
            continue
        items.append(FixationItem(img.stem, real, pts, dens))
    if not items:
        raise DataError(f"{root}: no image of {MIT_STIMULI}/ has its _fixPts.jpg in {MIT_MAPS}/")
    return FixationDataset("mit1003", root, items, skipped)


def mit1003_subjects(root: Path) -> list[str]:
    data = find_mit1003_root(root) / MIT_DATA
    return sorted(p.name for p in data.iterdir() if p.is_dir()) if data.is_dir() else []


def mit1003_eye_samples(root: Path, subject: str, name: str) -> np.ndarray:
    """Raw gaze samples (n, >=2) of ``subject`` viewing ``name`` (``DATA/<subject>/<name>.mat``)."""
    from scipy.io import loadmat

    base = find_mit1003_root(root)
    path = inside(base, f"{MIT_DATA}/{subject}/{name}.mat")
    if path is None or not path.is_file():
        raise DataError(f"{base / MIT_DATA / subject / (name + '.mat')}: not found")
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise DataError(f"{path}: not a readable .mat file ({exc})") from None
    for key, value in mat.items():
        if key.startswith("__"):
            continue
        data = getattr(value, "DATA", None)
        eye = getattr(data, "eyeData", None) if data is not None else None
        if eye is not None:
            return np.atleast_2d(np.asarray(eye, dtype=np.float64))
    raise DataError(f"{path}: no <struct>.DATA.eyeData inside")


def find_toronto_root(path: Path) -> Path:
    path = Path(path)
    for cand in (path, path / "Toronto", path / "eyetrackingdata", path / "Toronto" / "eyetrackingdata", path.parent):
        if (cand / TORONTO_IMAGES).is_dir():
            return cand
    raise DataError(f"{path}: no Toronto data here (expected {TORONTO_IMAGES}/ and {TORONTO_POINTS}; "
                    "get it with: python data/download.py toronto)")


def _toronto_points(mat_path: Path) -> list:
    from scipy import sparse
    from scipy.io import loadmat

    try:
        white = loadmat(mat_path)["white"]
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise DataError(f"{mat_path}: no readable 'white' cell of fixation maps ({exc})") from None
    cells = np.asarray(white).reshape(-1)
    return [np.asarray(c.toarray() if sparse.issparse(c) else c) for c in cells]


def read_toronto(path: Path) -> FixationDataset:
    root = find_toronto_root(path)
    mat = _checked(root, root / TORONTO_POINTS, Counter())
    if mat is None:
        raise DataError(f"{root / TORONTO_POINTS} missing: the binary fixation maps are in it")
    points = _toronto_points(mat)
    skipped: Counter = Counter()
    images = [p for p in (root / TORONTO_IMAGES).iterdir() if p.suffix.lower() == ".jpg" and p.stem.isdigit()]
    items = []
    for img in sorted(images, key=lambda p: int(p.stem)):
        real = _checked(root, img, skipped)
        if real is None:
            continue
        n = int(img.stem)
        if not 1 <= n <= len(points):
            skipped["no_fixation_points"] += 1
            continue
        dens = _checked(root, root / TORONTO_DENSITY / f"d{n}.jpg", skipped)
        items.append(FixationItem(img.stem, real, None, dens, n - 1))
    if not items:
        raise DataError(f"{root / TORONTO_IMAGES}: no image numbered 1..{len(points)}")
    return FixationDataset("toronto", root, items, skipped, points)


READERS = {"mit1003": read_mit1003, "toronto": read_toronto}


def read_dataset(kind: str, path: Path) -> FixationDataset:
    if kind not in READERS:
        raise DataError(f"unknown fixation dataset {kind!r}; choose from {list(READERS)}")
    return READERS[kind](path)


def gray(path: Path) -> np.ndarray:
    """A map stored as an image file, as float64 grey levels 0..255."""
    return np.asarray(load_rgb(path).convert("L"), dtype=np.float64)


def load_item(ds: FixationDataset, item: FixationItem) -> dict:
    """``{"image": uint8 (H, W, 3), "fixations": bool (H, W), "density": float (H, W) in [0, 1] or None}``.

    Raises :class:`~texttopicnet.data.images.ImageReadError` for an unreadable file and
    :class:`DataError` when the maps and the image disagree in size.
    """
    image = np.asarray(load_rgb(item.image), dtype=np.uint8)
    if item.fixations is not None:
        fix = gray(item.fixations) > POINT_THRESHOLD
    else:
        fix = np.asarray(ds.points[item.points_index]) > 0
    density = gray(item.density) / 255.0 if item.density is not None else None
    h, w = image.shape[:2]
    for what, m in (("fixation map", fix), ("density map", density)):
        if m is not None and m.shape != (h, w):
            raise DataError(f"{item.name}: {what} is {m.shape[1]}x{m.shape[0]}, the image {w}x{h}")
    return {"image": image, "fixations": fix, "density": density}


__all__ = [
    "DATASETS",
    "FixationDataset",
    "FixationItem",
    "ImageReadError",
    "load_item",
    "mit1003_eye_samples",
    "mit1003_subjects",
    "read_dataset",
    "read_mit1003",
    "read_toronto",
]

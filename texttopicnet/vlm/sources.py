"""Where the CNN-VLM's images come from: a folder of image files or a packed ``images.npy``.

:func:`open_source` takes a folder (searched recursively for image files: the demo corpus,
ILSVRC val, MIT1003's ALLSTIMULI ...), a run's ``packed/`` folder or an ``images.npy`` (uint8
N x H x W x 3, e.g. ``RUN/packed/images.npy``). Folder files are checked once (the pixel data
decodes, :func:`texttopicnet.data.images.check_decodes`); unreadable, corrupt, oversized files
and links leaving the folder are counted and skipped (``skipped``), never raised.

Images are served as the release prepares them (``prepare_images.py``: warp to 256x256;
``utils.clip_image``: centre crop to the network's input, 227 or 224) by :meth:`crop`, or at
their own size by :meth:`full` (the release computes saliency maps on the full-size image).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.errors import DataError, UserError
from ..core.paths import OUTSIDE, inside
from ..data.images import ImageReadError, check_decodes, load_resized, load_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".webp")
RESIZE = 256  # prepare_images.py: convert -scale 256x256!


def center_crop(a: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` of an (H, W, ...) array (utils.clip_image's offsets)."""
    h, w = a.shape[:2]
    if h < size or w < size:
        raise UserError(f"a {h}x{w} image is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return a[top:top + size, left:left + size]


def fit_size(img: np.ndarray, min_side: int, max_side: int = 0) -> np.ndarray:
    """Scale (bilinear) so the longer side is at most ``max_side`` (0: no limit) and the shorter side
    at least ``min_side`` (the network's input size: smaller images would leave too small a map)."""
    from PIL import Image

    h, w = img.shape[:2]
    scale = max_side / max(h, w) if max_side and max(h, w) > max_side else 1.0
    if min(h, w) * scale < min_side:
        scale = min_side / min(h, w)
    if scale == 1.0:
        return img
    size = (max(min_side, round(w * scale)), max(min_side, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


class ImageSource:
    """Random access to images by index; ``names`` identify them (relative paths or packed rows)."""

    def __init__(self, names: list[str], loader, full_loader=None, skipped: Counter | None = None,
                 description: str = ""):
        self.names, self._load, self._full = names, loader, full_loader or loader
        self.skipped = skipped or Counter()
        self.description = description

    def __len__(self) -> int:
        return len(self.names)

    def warped(self, i: int) -> np.ndarray:
        """(256, 256, 3) uint8 RGB."""
        return self._load(i)

    def crop(self, i: int, size: int) -> np.ndarray:
        return np.ascontiguousarray(center_crop(self.warped(i), size))

    def full(self, i: int) -> np.ndarray:
        """The image at its own size (packed images: as packed)."""
        return self._full(i)

    def batch(self, indices, size: int) -> np.ndarray:
        return np.stack([self.crop(int(i), size) for i in indices])

    def subset(self, n: int, seed: int = 0) -> ImageSource:
        """At most ``n`` of the images (a seeded random choice, kept in order); ``self`` when n <= 0 or n >= len."""
        if n <= 0 or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        src = ImageSource([self.names[i] for i in keep], lambda i: self._load(int(keep[i])),
                          lambda i: self._full(int(keep[i])), self.skipped,
                          f"{self.description}, {n:,} of them (seed {seed})")
        if hasattr(self, "paths"):
            src.paths = [self.paths[i] for i in keep]
        return src


def _packed(path: Path) -> ImageSource:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise DataError(f"{path}: expected uint8 (N, H, W, 3) images, got {arr.dtype} {arr.shape}")
    if len(arr) == 0:
        raise DataError(f"{path} holds no image")
    index = path.with_name("index.txt")
    names = index.read_text(encoding="utf-8").splitlines() if index.is_file() else []
    if len(names) != len(arr):
        names = [f"{path.name}[{i}]" for i in range(len(arr))]

    def load(i):
        a = np.asarray(arr[i])
        if a.shape[:2] != (RESIZE, RESIZE):
            from PIL import Image
            a = np.asarray(Image.fromarray(a).resize((RESIZE, RESIZE), Image.BILINEAR))
        return a

    return ImageSource(names, load, lambda i: np.asarray(arr[i]), description=f"packed {path} ({len(arr):,} images)")


def list_image_files(folder: Path, skipped: Counter, check: bool = True, progress: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted), each inside it and decodable; the rest counted in ``skipped``."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    keep = []
    for p in tqdm(found, desc=f"checking images in {folder.name}", unit="img", disable=not progress or not check):
        real = inside(folder, p.relative_to(folder))
        if real is None:
            skipped[OUTSIDE] += 1
            continue
        if check:
            try:
                check_decodes(real)
            except ImageReadError as exc:
                skipped[exc.reason] += 1
                continue
        keep.append(real)
    return keep


def _folder(folder: Path, check: bool, progress: bool) -> ImageSource:
    skipped: Counter = Counter()
    files = list_image_files(folder, skipped, check=check, progress=progress)
    if not files:
        extra = f" ({dict(skipped)} skipped)" if skipped else ""
        raise DataError(f"{folder}: no readable image file ({', '.join(IMAGE_SUFFIXES)}){extra}")
    names = [str(p.relative_to(folder.resolve())) if p.is_relative_to(folder.resolve()) else p.name for p in files]

    def full(i):
        return np.asarray(load_rgb(files[i]), dtype=np.uint8)

    src = ImageSource(names, lambda i: load_resized(files[i], RESIZE), full, skipped,
                      description=f"folder {folder} ({len(files):,} images)")
    src.paths = files
    return src


def open_source(path: str | Path, check: bool = True, progress: bool = True) -> ImageSource:
    """An :class:`ImageSource` for a folder, a ``packed/`` folder or an ``images.npy`` file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".npy":
        return _packed(path)
    if path.is_dir() and (path / "images.npy").is_file():
        return _packed(path / "images.npy")
    if path.is_dir():
        return _folder(path, check, progress)
    raise DataError(f"{path}: not an image folder, a packed/ folder or an images.npy file")

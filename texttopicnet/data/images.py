"""Image file handling shared by every stage: probing headers and robust decoding.

- :func:`probe` reads only the header (format, width, height) and checks the file's
  magic bytes, so stage 1 can filter 237k images without decoding them.
- :func:`load_rgb` decodes anything PIL reads (JPEG, PNG, palette, grayscale, CMYK,
  16-bit, with alpha) into 8-bit RGB, and accepts truncated files that still decode
  partially (real datasets have them: VOC2007 000001.jpg is one).
- :func:`load_resized` is the paper's input: resize to 256x256, aspect ratio ignored
  (or, as an option, short side to 256 then centre crop).

Every failure raises :class:`ImageReadError` with the path, so callers can count and
skip bad files instead of crashing.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

JPEG_MAGIC = b"\xff\xd8\xff"


class ImageReadError(Exception):
    """An image file could not be read (missing, empty, corrupt or unsupported)."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # PIL format name: 'JPEG', 'PNG', ...
    width: int
    height: int
    is_jpeg: bool  # decided from the file's bytes, not its extension


def probe(path: str | os.PathLike) -> ImageInfo:
    """Header-only look at an image: real format (from magic bytes) and size."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(3)
            if not head:
                raise ImageReadError(f"{path}: empty file")
            fh.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(fh) as im:
                    fmt, (w, h) = im.format or "?", im.size
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    return ImageInfo(format=fmt, width=int(w), height=int(h), is_jpeg=head == JPEG_MAGIC and fmt == "JPEG")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("P", "PA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        # Composite transparency on white (diagrams and logos are drawn for a white page).
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").split()[-1])
        return bg
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() or 1.0
        im = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, F, ...


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to an 8-bit RGB PIL image, tolerating truncated files."""
    path = Path(path)
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # a partly damaged photo is still a training image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                return _to_rgb(im)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: cannot decode ({exc.__class__.__name__}: {exc})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def resize_array(im: Image.Image, size: int = 256, keep_aspect: bool = False) -> np.ndarray:
    """Resize to ``size`` x ``size`` uint8 HWC RGB.

    ``keep_aspect=False`` is the paper's (and Caffe's) warp; ``True`` resizes the short
    side to ``size`` and centre-crops, which keeps object shapes.
    """
    if keep_aspect:
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    else:
        im = im.resize((size, size), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    if arr.shape != (size, size, 3):
        raise ImageReadError(f"unexpected decoded shape {arr.shape}")
    return arr


def load_resized(path: str | os.PathLike, size: int = 256, keep_aspect: bool = False) -> np.ndarray:
    """:func:`load_rgb` then :func:`resize_array`: the (size, size, 3) uint8 RGB array."""
    return resize_array(load_rgb(path), size=size, keep_aspect=keep_aspect)

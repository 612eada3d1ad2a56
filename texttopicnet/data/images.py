"""Image file handling shared by every stage: probing headers and robust decoding.

- :func:`probe` reads only the header (format, width, height) and the file's magic
  bytes, so stage 1 can filter 237k images without decoding them.
- :func:`check_decodes` proves that the pixel data decodes the way :func:`load_rgb` will
  decode it later (JPEGs at 1/8 scale: the same entropy decoding, a fraction of the cost).
- :func:`load_rgb` decodes anything PIL reads (JPEG, PNG, palette, grayscale, CMYK,
  16-bit, with alpha) into 8-bit RGB, and accepts truncated files that still decode
  partially (real datasets have them: VOC2007 000001.jpg is one).
- :func:`load_resized` is the paper's input: resize to 256x256, aspect ratio ignored
  (or, as an option, short side to 256 then centre crop).

Every failure raises :class:`ImageReadError` (never a PIL or OS exception) with the path
and a short ``reason`` from :data:`READ_REASONS`, so callers count and skip bad files
instead of crashing. A header that claims more than ``max_pixels`` pixels is refused
(``decompression_bomb``) before any pixel is decoded.

Use::

    from texttopicnet.data.images import ImageReadError, load_resized
    try:
        arr = load_resized(path)            # (256, 256, 3) uint8
    except ImageReadError as exc:
        skipped[exc.reason] += 1
"""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

JPEG_MAGIC = b"\xff\xd8\xff"

# Largest width x height accepted from a header. Pillow (>= 5) itself refuses to open an
# image above 2 x Image.MAX_IMAGE_PIXELS = 2 x 89,478,485 and only warns below that, so this
# default refuses exactly what current Pillow refuses and keeps every image it opens (the
# release's Pillow of 2016 only warned). Decoding the largest accepted image takes ~0.5 GB.
MAX_PIXELS = 2 * 89_478_485

# ImageReadError.reason values.
UNREADABLE = "unreadable"                  # the file cannot be opened (missing, a folder, no permission)
CORRUPT = "corrupt"                        # PIL cannot read the header (not an image, empty, garbage, cut short)
DECOMPRESSION_BOMB = "decompression_bomb"  # the header claims more than max_pixels pixels
UNDECODABLE = "undecodable"                # the header is fine but the pixel data does not decode
READ_REASONS = (UNREADABLE, CORRUPT, DECOMPRESSION_BOMB, UNDECODABLE)


class ImageReadError(Exception):
    """An image file could not be read; ``reason`` is one of :data:`READ_REASONS`."""

    def __init__(self, message: str, reason: str = CORRUPT):
        super().__init__(message, reason)  # both in args, so the error survives pickling
        self.message, self.reason = message, reason

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ImageInfo:
    format: str  # PIL format name: 'JPEG', 'PNG', ...
    width: int
    height: int
    is_jpeg: bool  # decided from the file's bytes, not its extension


def _error(path, reason: str, what: str, exc: BaseException | None = None) -> ImageReadError:
    detail = f" ({exc.__class__.__name__}: {exc})" if exc is not None else ""
    return ImageReadError(f"{path}: {what}{detail}", reason)


_SETTINGS_LOCK = threading.Lock()
_SETTINGS = {"active": 0, "saved": None}


@contextmanager
def _pil_settings(max_pixels: int | None):
    """PIL's process-wide switches set for the reads in flight, restored when the last one ends.

    - LOAD_TRUNCATED_IMAGES: a partly damaged photo is still a training image. (It only
      matters for decoding; header reads are unaffected.)
    - MAX_IMAGE_PIXELS: PIL raises DecompressionBombError above 2 x this value, also inside
      plugins that learn a size late (GIF frames), so half our limit puts its own guard at
      our limit; our explicit check in :func:`_open` is exact per call.
    The switches are counted, not saved per call: the feature extractor decodes in threads,
    and one thread restoring the flag must not break another thread's decode.
    Warnings are silenced: every decision is made here, and ``-W error`` must not turn a
    DecompressionBombWarning or an EXIF warning into a crash.
    """
    with _SETTINGS_LOCK:
        if _SETTINGS["active"] == 0:
            _SETTINGS["saved"] = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
        _SETTINGS["active"] += 1
        Image.MAX_IMAGE_PIXELS = None if max_pixels is None else max(1, (max_pixels + 1) // 2)
        ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        with _SETTINGS_LOCK:
            _SETTINGS["active"] -= 1
            if _SETTINGS["active"] == 0:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = _SETTINGS["saved"]


def _open(fh, path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` on an open file (header only), size checked against ``max_pixels``."""
    try:
        im = Image.open(fh)
        w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _error(path, DECOMPRESSION_BOMB, "header claims an oversized image", exc) from None
    except UnidentifiedImageError:
        raise _error(path, CORRUPT, "not an image PIL can read") from None
    except Exception as exc:  # noqa: BLE001 - PIL plugins raise anything (SyntaxError, struct.error, EOFError ...) on bad headers
        raise _error(path, CORRUPT, "image header cannot be read", exc) from None
    if max_pixels is not None and w * h > max_pixels:
        im.close()
        raise _error(path, DECOMPRESSION_BOMB, f"header claims {w}x{h} = {w * h:,} pixels, more than the "
                                               f"limit of {max_pixels:,} (possible decompression bomb)")
    return im


def _open_file(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise _error(path, UNREADABLE, "file not found") from None
    except OSError as exc:
        raise _error(path, UNREADABLE, "cannot open the file", exc) from None


def _decode(im: Image.Image, path) -> None:
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _error(path, DECOMPRESSION_BOMB, "image grows past the pixel limit while decoding", exc) from None
    except Exception as exc:  # noqa: BLE001 - OSError, SyntaxError, ValueError, MemoryError ... from decoders
        raise _error(path, UNDECODABLE, "cannot decode the pixel data", exc) from None


def probe(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> ImageInfo:
    """Header-only look at an image: real format (from magic bytes) and size.

    Raises :class:`ImageReadError` (``unreadable``, ``corrupt`` or ``decompression_bomb``).
    """
    path = Path(path)
    with _open_file(path) as fh:
        try:
            head = fh.read(3)
            fh.seek(0)
        except OSError as exc:
            raise _error(path, UNREADABLE, "cannot read the file", exc) from None
        if not head:
            raise _error(path, CORRUPT, "empty file")
        with _pil_settings(max_pixels), _open(fh, path, max_pixels) as im:
            fmt, (w, h) = im.format or "?", im.size
    return ImageInfo(format=fmt, width=int(w), height=int(h), is_jpeg=head == JPEG_MAGIC and fmt == "JPEG")


def check_decodes(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> None:
    """Raise :class:`ImageReadError` unless the pixel data decodes as :func:`load_rgb` would decode it.

    Truncated files that decode partially pass (as in :func:`load_rgb`). JPEGs are decoded
    at 1/8 scale (PIL's ``draft``): the same markers and entropy-coded data are read, so the
    same files fail, at a fraction of the cost of a full decode.
    """
    path = Path(path)
    with _open_file(path) as fh, _pil_settings(max_pixels), _open(fh, path, max_pixels) as im:
        if im.format == "JPEG":
            try:
                im.draft(None, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            except Exception as exc:  # noqa: BLE001
                raise _error(path, UNDECODABLE, "cannot decode the pixel data", exc) from None
        _decode(im, path)


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


def load_rgb(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode an image file to an 8-bit RGB PIL image, tolerating truncated files.

    A partly damaged photo is still a training image, so truncated data is accepted.
    Raises :class:`ImageReadError` for anything else (any reason of :data:`READ_REASONS`).
    """
    path = Path(path)
    with _open_file(path) as fh, _pil_settings(max_pixels), _open(fh, path, max_pixels) as im:
        _decode(im, path)
        try:
            # leaving ``with im`` only drops the file handle; the decoded pixels stay
            rgb = _to_rgb(im)
        except Exception as exc:  # noqa: BLE001 - exotic modes PIL cannot convert
            raise _error(path, UNDECODABLE, "cannot convert to RGB", exc) from None
    return rgb


def resize_array(im: Image.Image, size: int = 256, keep_aspect: bool = False) -> np.ndarray:
    """Resize to ``size`` x ``size`` uint8 HWC RGB.

    ``keep_aspect=False`` is the paper's (and Caffe's) warp; ``True`` resizes the short
    side to ``size`` and centre-crops, which keeps object shapes.
    """
    try:
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
    except Exception as exc:  # noqa: BLE001 - e.g. a 0-pixel side or an exotic mode
        raise ImageReadError(f"cannot resize a {im.size} {im.mode} image ({exc.__class__.__name__}: {exc})",
                             UNDECODABLE) from None
    if arr.shape != (size, size, 3):
        raise ImageReadError(f"unexpected decoded shape {arr.shape}", UNDECODABLE)
    return arr


def load_resized(path: str | os.PathLike, size: int = 256, keep_aspect: bool = False,
                 max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """:func:`load_rgb` then :func:`resize_array`: the (size, size, 3) uint8 RGB array."""
    im = load_rgb(path, max_pixels=max_pixels)
    try:
        return resize_array(im, size=size, keep_aspect=keep_aspect)
    except ImageReadError as exc:
        raise ImageReadError(f"{path}: {exc.message}", exc.reason) from None


def iter_decoded(paths, load, batch_size: int, workers: int = 2):
    """Yield ``(kept positions, arrays, [(position, ImageReadError)])`` per batch of ``paths``.

    ``load(path)`` decodes one image (raising :class:`ImageReadError`); a thread pool decodes
    batch b+1 while the caller works on batch b (PIL releases the GIL while decoding).
    """
    from concurrent.futures import ThreadPoolExecutor

    def guarded(p):
        try:
            return load(p)
        except ImageReadError as exc:
            return exc

    starts = list(range(0, len(paths), batch_size))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        def submit(s):
            return [pool.submit(guarded, paths[i]) for i in range(s, min(s + batch_size, len(paths)))]

        pending = submit(starts[0]) if starts else None
        for b, s in enumerate(starts):
            futures = pending
            pending = submit(starts[b + 1]) if b + 1 < len(starts) else None
            kept, arrays, bad = [], [], []
            for j, fut in enumerate(futures):
                res = fut.result()
                if isinstance(res, ImageReadError):
                    bad.append((s + j, res))
                else:
                    kept.append(s + j)
                    arrays.append(res)
            yield kept, arrays, bad

"""Pictures for the demo corpus: each subject has a visual signature.

A signature is a colour palette (two colours), a shape family and a stripe texture
(frequency and angle) painted inside the shapes. An image paints the signatures of
its subjects, with a number of shapes and a covered area in proportion to each
subject's weight, over a random muted background, then adds nuisance variation:
position, scale, rotation, colour jitter, Gaussian noise, brightness and JPEG
quality. The signal is deliberately strong and simple (large coloured shapes) so
that a CNN trained for a few hundred iterations on a CPU learns it.

Rendering is a pure function of an :class:`ImageSpec` (which carries its own seed),
so images can be rendered in worker processes and still be byte-identical.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Signature:
    palette: tuple[tuple[int, int, int], tuple[int, int, int]]
    shape: str
    freq: float    # stripe cycles per 100 px (0 = solid fill)
    angle: float   # stripe direction, degrees


SIGNATURES: dict[str, Signature] = {
    "ocean": Signature(((20, 70, 200), (40, 200, 230)), "ellipse", 3.0, 0.0),
    "forest": Signature(((20, 110, 30), (120, 200, 60)), "triangle", 0.0, 0.0),
    "desert": Signature(((235, 200, 90), (200, 120, 40)), "dune", 1.5, 10.0),
    "city": Signature(((90, 90, 100), (230, 220, 80)), "rect", 8.0, 90.0),
    "music": Signature(((140, 30, 170), (240, 90, 220)), "ring", 0.0, 0.0),
    "sport": Signature(((220, 30, 30), (250, 250, 250)), "circle", 6.0, 45.0),
    "warfare": Signature(((90, 95, 40), (60, 45, 30)), "diamond", 5.0, 135.0),
    "art": Signature(((240, 120, 150), (20, 160, 150)), "polygon", 2.5, 60.0),
    "space": Signature(((250, 250, 210), (15, 15, 40)), "star", 0.0, 0.0),
    "food": Signature(((240, 130, 20), (150, 60, 20)), "cross", 4.0, 30.0),
}


@dataclass(frozen=True)
class ImageSpec:
    """Everything needed to draw one picture (picklable, hashable inputs only)."""
    seed: int
    width: int
    height: int
    weights: tuple[tuple[str, float], ...]              # (subject, weight) pairs, weights sum to ~1
    faint: tuple[str, ...] = ()                         # subjects drawn small and faint ("difficult")
    fmt: str = "JPEG"                                   # "JPEG" or "PNG"
    mode: str = "RGB"                                   # final mode: RGB, L (grayscale), CMYK, P (palette)
    quality: int | None = None                          # JPEG quality; None = random 70..95


def _shape_mask(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rot: float,
                rng: np.random.Generator, ink: int = 255) -> None:
    def pts(n: int, radii) -> list[tuple[float, float]]:
        return [(cx + radii[i % len(radii)] * math.cos(rot + 2 * math.pi * i / n),
                 cy + radii[i % len(radii)] * math.sin(rot + 2 * math.pi * i / n)) for i in range(n)]

    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=ink)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=max(4, int(r * 0.3)))
    elif shape == "ellipse":
        draw.ellipse([cx - 1.6 * r, cy - 0.6 * r, cx + 1.6 * r, cy + 0.6 * r], fill=ink)
    elif shape == "dune":
        draw.pieslice([cx - 1.8 * r, cy - r, cx + 1.8 * r, cy + r], 180, 360, fill=ink)
    elif shape == "rect":
        w = r * rng.uniform(0.5, 0.8)
        draw.rectangle([cx - w, cy - 1.5 * r, cx + w, cy + 1.5 * r], fill=ink)
    elif shape == "triangle":
        draw.polygon([(cx, cy - 1.3 * r), (cx - r, cy + r), (cx + r, cy + r)], fill=ink)
    elif shape == "diamond":
        draw.polygon(pts(4, [r * 1.2, r * 0.7]), fill=ink)
    elif shape == "polygon":
        n = int(rng.integers(5, 8))
        draw.polygon(pts(n, list(r * rng.uniform(0.6, 1.2, size=n))), fill=ink)
    elif shape == "star":
        draw.polygon(pts(10, [r, r * 0.4]), fill=ink)
    elif shape == "cross":
        t = r * 0.35
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=ink)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=ink)
    else:  # pragma: no cover - guarded by SIGNATURES
        raise ValueError(shape)


def _colours(sig: Signature, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The palette's two colours with a little per-shape jitter."""
    jit = rng.normal(0, 12, (2, 3))
    return tuple(tuple(int(v) for v in np.clip(np.array(c) + j, 0, 255)) for c, j in zip(sig.palette, jit))


def _stripes(sig: Signature, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) bool: where the first colour goes in the subject's stripe texture."""
    theta = math.radians(sig.angle + rng.normal(0, 8))
    k = np.float32(2 * math.pi * sig.freq / 100.0)
    xx = np.arange(w, dtype=np.float32)[None, :] * np.float32(k * math.cos(theta))
    yy = np.arange(h, dtype=np.float32)[:, None] * np.float32(k * math.sin(theta))
    return np.sin(xx + yy + np.float32(rng.uniform(0, 2 * math.pi))) > 0


def paint(spec: ImageSpec) -> np.ndarray:
    """The picture as an (h, w, 3) uint8 RGB array."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    # Muted background with a vertical gradient, built as one column then repeated.
    bg = rng.uniform(60, 200) + rng.normal(0, 10, 3)  # muted: the palettes carry the colour
    column = np.clip(bg[None, :] + np.linspace(-1, 1, h)[:, None] * rng.uniform(-25, 25), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(np.ascontiguousarray(np.broadcast_to(column[:, None, :], (h, w, 3))), "RGB")
    side = min(h, w)
    layers = [(s, wt, 255, False) for s, wt in spec.weights] + [(s, 0.0, 100, True) for s in spec.faint]
    for subject, weight, ink, faint in layers:
        sig = SIGNATURES[subject]
        n_shapes = 1 if faint else max(1, int(round(weight * 5)))
        for _ in range(n_shapes):
            r = side * (rng.uniform(0.06, 0.09) if faint else rng.uniform(0.14, 0.22) * (0.6 + 0.6 * weight))
            cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
            # Work inside the shape's bounding box only (shapes reach at most 1.8 r from the centre).
            x0, y0 = max(0, int(cx - 1.9 * r)), max(0, int(cy - 1.9 * r))
            x1, y1 = min(w, int(cx + 1.9 * r) + 1), min(h, int(cy + 1.9 * r) + 1)
            mask = Image.new("L", (x1 - x0, y1 - y0), 0)
            _shape_mask(ImageDraw.Draw(mask), sig.shape, cx - x0, cy - y0, r, rng.uniform(0, 2 * math.pi), rng, ink)
            c0, c1 = _colours(sig, rng)
            if sig.freq <= 0:
                canvas.paste(c0, (x0, y0, x1, y1), mask)
                continue
            # Two solid pastes through complementary masks draw the stripes (no RGB temporaries).
            m = np.asarray(mask)
            on = _stripes(sig, y1 - y0, x1 - x0, rng)
            canvas.paste(c0, (x0, y0, x1, y1), Image.fromarray(np.where(on, m, 0).astype(np.uint8), "L"))
            canvas.paste(c1, (x0, y0, x1, y1), Image.fromarray(np.where(on, 0, m).astype(np.uint8), "L"))
    # Brightness through a lookup table, then sensor-like noise in int16.
    gain = rng.uniform(0.8, 1.2)
    canvas = canvas.point([min(255, int(i * gain)) for i in range(256)] * 3)
    amp = int(rng.integers(4, 16))
    arr = np.asarray(canvas, dtype=np.int16) + rng.integers(-amp, amp + 1, size=(h, w, 3), dtype=np.int16)
    return np.clip(arr, 0, 255).astype(np.uint8)


def encode(spec: ImageSpec) -> bytes:
    """Render and encode ``spec`` to file bytes (deterministic for a given spec)."""
    im = Image.fromarray(paint(spec), "RGB")
    if spec.mode == "L":
        im = im.convert("L")
    elif spec.mode == "CMYK":
        im = im.convert("CMYK")
    elif spec.mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    if spec.fmt == "PNG":
        im.save(buf, format="PNG", optimize=False)
    else:
        quality = spec.quality or int(np.random.default_rng(spec.seed + 1).integers(70, 96))
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

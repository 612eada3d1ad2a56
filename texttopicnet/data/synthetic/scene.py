"""The class-neutral part of a demo picture: random colours, the background and clutter.

Nothing here depends on a picture's subjects, which is the point: every colour of a
picture (background hues, gradient, blotches, the colours motifs are painted in) is
drawn afresh for each picture, so colour statistics say nothing about the classes,
and the clutter (soft blobs, scribbles, specks) gives a feature extractor edges and
contrast that it must learn to ignore. The subjects are carried by
:mod:`texttopicnet.data.synthetic.motifs` (shape, texture and layout) alone.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]


def luminance(c) -> float:
    """Rec. 601 luma of an RGB triple (0..255)."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def random_colour(rng: np.random.Generator, v_lo: float = 0.12, v_hi: float = 1.0) -> RGB:
    """Any hue, any saturation, brightness in ``v_lo..v_hi``: no colour belongs to a class."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.15, 1.0), rng.uniform(v_lo, v_hi))
    return int(r * 255), int(g * 255), int(b * 255)


def contrasting(rng: np.random.Generator, against: float, min_diff: float = 55.0, tries: int = 12) -> RGB:
    """A random colour whose luma differs from ``against`` by at least ``min_diff``.

    Either polarity (darker or lighter than the background), so a feature must respond
    to the outline and not to "bright on dark". Falls back to the best candidate drawn.
    """
    best, best_diff = (0, 0, 0), -1.0
    for _ in range(tries):
        c = random_colour(rng, 0.05, 1.0)
        d = abs(luminance(c) - against)
        if d >= min_diff:
            return c
        if d > best_diff:
            best, best_diff = c, d
    return best


def background(rng: np.random.Generator, w: int, h: int, blotches: int) -> tuple[Image.Image, float]:
    """Gradient between two random colours at a random angle, plus soft blotches of random colour.

    Returns the (w, h) RGB canvas and its mean luma. Everything here is low-frequency, so
    it is drawn at 1/8 resolution, blurred there and enlarged bilinearly: cheap, and the
    blotches' edges stay soft (no sharp outline a motif could be confused with).
    """
    sw, sh = max(2, -(-w // 8)), max(2, -(-h // 8))
    c0 = np.array(random_colour(rng), np.float32)
    c1 = np.array(random_colour(rng), np.float32)
    # A gentle blend towards the second colour (at most 60%) keeps one dominant hue per picture.
    mix = np.float32(rng.uniform(0.2, 0.6))
    theta = rng.uniform(0, 2 * math.pi)
    xs = np.linspace(-0.5, 0.5, sw, dtype=np.float32) * np.float32(math.cos(theta))
    ys = np.linspace(-0.5, 0.5, sh, dtype=np.float32) * np.float32(math.sin(theta))
    t = (xs[None, :] + ys[:, None] + 0.5) * mix  # (sh, sw) in 0..mix
    arr = c0[None, None, :] + t[..., None] * (c1 - c0)[None, None, :]
    small = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(small)
    side = min(sw, sh)
    for _ in range(blotches):
        rx, ry = side * rng.uniform(0.08, 0.3), side * rng.uniform(0.08, 0.3)
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=random_colour(rng))
    small = small.filter(ImageFilter.GaussianBlur(1.0))  # ~8 px of blur at full size
    mean = np.asarray(small, np.float32).reshape(-1, 3).mean(0)
    return small.resize((w, h), Image.Resampling.BILINEAR), luminance(mean)


def scribbles(canvas: Image.Image, rng: np.random.Generator, n: int) -> None:
    """Thin random polylines and specks: edges that belong to no class."""
    w, h = canvas.size
    draw = ImageDraw.Draw(canvas)
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        pts = [(x, y)]
        for _ in range(int(rng.integers(1, 4))):
            x, y = x + rng.normal(0, w * 0.15), y + rng.normal(0, h * 0.15)
            pts.append((x, y))
        draw.line(pts, fill=random_colour(rng), width=int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(0, 2 * n + 1))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1.5, 4.0)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=random_colour(rng))

"""The visual correlate of each subject: a motif of shape, texture and layout (never colour).

A motif draws two masks over the whole picture: ``body`` (the shapes, painted in one
random colour) and ``detail`` (a texture or a part inside them, painted in a second
random colour on top). What identifies the subject is

- the **shape** of its elements (conifer triangles, tall blocks, V chevrons, stars, ...),
- the **texture** painted inside them (window grids, checks, concentric bands, wedges,
  diagonal hatching, ...),
- their **layout** (a row standing on one ground line, a skyline, a stacked column,
  a wall of frames hung at one height, a sky full of small stars, ...).

Three circular motifs (rings, checked balls, pies) share the outline and differ only
in texture, and two rectangular ones (skyline, frames) share the corners and differ
in texture and layout, so neither outline nor texture alone names every subject.
Position, size, count, rotation and spacing vary per picture; the colours are chosen
by the caller (:mod:`texttopicnet.data.synthetic.scene`), fresh for every picture.

``MOTIFS[subject].draw(ctx)`` returns ``(body, detail)`` as ``(h, w)`` uint8 masks.
``ctx.weight`` (the subject's share of the picture) scales the number and size of the
elements; ``ctx.faint`` asks for a single small element (the "difficult" VOC label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class Ctx:
    rng: np.random.Generator
    w: int
    h: int
    weight: float = 1.0
    faint: bool = False

    @property
    def side(self) -> float:
        return float(min(self.w, self.h))

    def count(self, lo: int, hi: int) -> int:
        """How many elements: ``lo..hi`` growing with the weight; one when faint."""
        if self.faint:
            return 1
        top = lo + (hi - lo) * min(1.0, max(0.0, self.weight))
        return max(1, int(self.rng.integers(lo, int(round(top)) + 1)))

    def size(self) -> float:
        """A size factor per element (smaller for a faint or a minor subject)."""
        if self.faint:
            return float(self.rng.uniform(0.6, 0.8))
        return float(self.rng.uniform(0.8, 1.2) * (0.7 + 0.3 * min(1.0, self.weight)))


class Masks:
    """The two masks being drawn, with their PIL drawing contexts."""

    def __init__(self, ctx: Ctx):
        self.body, self.detail = Image.new("L", (ctx.w, ctx.h), 0), Image.new("L", (ctx.w, ctx.h), 0)
        self.d_body, self.d_detail = ImageDraw.Draw(self.body), ImageDraw.Draw(self.detail)

    def arrays(self, detail_pattern: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        body = np.asarray(self.body)
        if detail_pattern is not None:  # texture: the pattern, inside the body only
            return body, np.where(detail_pattern, body, 0).astype(np.uint8)
        return body, np.asarray(self.detail)

    def textured(self, pattern: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(body, detail) where detail = ``pattern(x, y)`` inside the body, evaluated over its box only."""
        body = np.asarray(self.body)
        detail = np.zeros_like(body)
        box = self.body.getbbox()
        if box is not None:
            x0, y0, x1, y1 = box
            x = np.arange(x0, x1, dtype=np.float32)[None, :]
            y = np.arange(y0, y1, dtype=np.float32)[:, None]
            inside = body[y0:y1, x0:x1]
            detail[y0:y1, x0:x1] = np.where(pattern(x, y), inside, 0)
        return body, detail


def _rotate(pts, cx: float, cy: float, angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in pts]


def _disc(pattern: np.ndarray, cx: float, cy: float, r: float):
    """Local coordinates around a disc: (pattern view over its box, dx, dy) with dx, dy broadcasting.

    Textures inside a disc are computed over its bounding box only, not the whole picture.
    """
    h, w = pattern.shape
    x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    return pattern[y0:y1, x0:x1], dx, dy


def _tilt(ctx: Ctx, deg: float = 8.0) -> float:
    return math.radians(float(ctx.rng.normal(0, deg)))


# --- the ten motifs -------------------------------------------------------------------------------

def waves(ctx: Ctx):
    """ocean: parallel wavy strokes stacked in a horizontal band, alternately in the two colours."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    n, k = ctx.count(3, 6), ctx.size()
    amp, lam = s * rng.uniform(0.035, 0.06) * k, s * rng.uniform(0.2, 0.32) * k
    gap, width = s * rng.uniform(0.09, 0.12) * k, max(3, int(s * rng.uniform(0.04, 0.055) * k))
    yc, tilt = rng.uniform(0.3, 0.75) * ctx.h, _tilt(ctx)
    span = ctx.w * (0.35 if ctx.faint else rng.uniform(0.6, 1.1))
    x0 = rng.uniform(-0.1 * ctx.w, max(0.0, ctx.w - span))
    phase = rng.uniform(0, 2 * math.pi)
    for i in range(n):
        y = yc + (i - (n - 1) / 2) * gap
        pts = [(x, y + amp * math.sin(2 * math.pi * x / lam + phase)) for x in np.arange(x0, x0 + span, 5.0)]
        (m.d_body if i % 2 == 0 else m.d_detail).line(_rotate(pts, ctx.w / 2, yc, tilt), fill=255,
                                                      width=width, joint="curve")
    return np.asarray(m.body), np.asarray(m.detail)


def trees(ctx: Ctx):
    """forest: conifers (two stacked triangles on a trunk) in a row standing on one ground line."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    n = ctx.count(3, 7)
    base, tilt = rng.uniform(0.6, 0.95) * ctx.h, _tilt(ctx, 5)
    x = rng.uniform(0.02, 0.3) * ctx.w
    for _ in range(n):
        k = ctx.size()
        hh = s * rng.uniform(0.3, 0.45) * k
        ww = hh * rng.uniform(0.55, 0.75)
        top = base - hh
        trunk = [(x - ww * 0.09, base), (x + ww * 0.09, base), (x + ww * 0.09, base - hh * 0.25),
                 (x - ww * 0.09, base - hh * 0.25)]
        lower = [(x, top + hh * 0.25), (x - ww / 2, base - hh * 0.2), (x + ww / 2, base - hh * 0.2)]
        upper = [(x, top), (x - ww * 0.38, top + hh * 0.5), (x + ww * 0.38, top + hh * 0.5)]
        m.d_detail.polygon(_rotate(trunk, ctx.w / 2, base, tilt), fill=255)
        for tri in (lower, upper):
            m.d_body.polygon(_rotate(tri, ctx.w / 2, base, tilt), fill=255)
        x += ww * rng.uniform(0.8, 1.3)
    return np.asarray(m.body), np.asarray(m.detail)


def dunes(ctx: Ctx):
    """desert: overlapping half-ellipse mounds along a low ground line, hatched diagonally."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    n = ctx.count(2, 5)
    base, x = rng.uniform(0.75, 1.0) * ctx.h, rng.uniform(0.05, 0.3) * ctx.w
    for _ in range(n):
        k = ctx.size()
        half, tall = s * rng.uniform(0.22, 0.32) * k, s * rng.uniform(0.15, 0.24) * k
        m.d_body.pieslice([x - half, base - tall, x + half, base + tall], 180, 360, fill=255)
        x += half * rng.uniform(1.0, 1.6)
    period = s * rng.uniform(0.04, 0.06)
    a = math.radians(rng.choice([-1, 1]) * rng.uniform(30, 60))
    c, s_ = np.float32(math.cos(a)), np.float32(math.sin(a))
    return m.textured(lambda x, y: ((x * c + y * s_) % period) < period * 0.45)


def skyline(ctx: Ctx):
    """city: adjacent tall blocks of uneven height on one ground line, with a grid of windows."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    n = ctx.count(4, 8)
    base, x = rng.uniform(0.8, 1.0) * ctx.h, rng.uniform(0.0, 0.3) * ctx.w
    for _ in range(n):
        k = ctx.size()
        bw, bh = s * rng.uniform(0.08, 0.12) * k, s * rng.uniform(0.3, 0.6) * k
        m.d_body.rectangle([x, base - bh, x + bw, base], fill=255)
        x += bw * rng.uniform(1.0, 1.15)
    px, py = s * rng.uniform(0.03, 0.04), s * rng.uniform(0.035, 0.05)
    return m.textured(lambda x, y: ((x % px) < px * 0.5) & (((base - y) % py) > py * 0.45))


def rings(ctx: Ctx):
    """music: discs of concentric bands (records, loudspeakers), scattered."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    pattern = np.zeros((ctx.h, ctx.w), bool)
    for _ in range(ctx.count(1, 4)):
        r = s * rng.uniform(0.14, 0.21) * ctx.size()
        cx, cy = rng.uniform(0.15, 0.85) * ctx.w, rng.uniform(0.15, 0.85) * ctx.h
        m.d_body.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        view, dx, dy = _disc(pattern, cx, cy, r)
        d = np.hypot(dx, dy)
        period = r / rng.uniform(2.5, 3.5)
        view |= (d < r) & ((d % period) < period * 0.5)
    return m.arrays(pattern)


def balls(ctx: Ctx):
    """sport: discs with a chequered surface, scattered."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    pattern = np.zeros((ctx.h, ctx.w), bool)
    for _ in range(ctx.count(2, 5)):
        r = s * rng.uniform(0.11, 0.16) * ctx.size()
        cx, cy = rng.uniform(0.12, 0.88) * ctx.w, rng.uniform(0.12, 0.88) * ctx.h
        m.d_body.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        view, dx, dy = _disc(pattern, cx, cy, r)
        a = rng.uniform(0, math.pi / 2)
        c, s_ = np.float32(math.cos(a)), np.float32(math.sin(a))
        u, v = dx * c + dy * s_, dy * c - dx * s_
        cell = r * 0.5
        view |= ((u * u + v * v) < r * r) & (((np.floor(u / cell) + np.floor(v / cell)) % 2) == 0)
    return m.arrays(pattern)


def chevrons(ctx: Ctx):
    """warfare: columns of thick V chevrons (rank insignia), any orientation, alternating colours."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    for _ in range(ctx.count(1, 2)):
        n, k = 1 if ctx.faint else int(rng.integers(3, 6)), ctx.size()
        half, drop = s * rng.uniform(0.17, 0.24) * k, s * rng.uniform(0.1, 0.15) * k
        gap, width = s * rng.uniform(0.1, 0.13) * k, max(4, int(s * rng.uniform(0.055, 0.075) * k))
        cx, cy = rng.uniform(0.2, 0.8) * ctx.w, rng.uniform(0.2, 0.8) * ctx.h
        angle = rng.uniform(0, 2 * math.pi)
        for i in range(n):
            y = cy + (i - (n - 1) / 2) * gap
            pts = [(cx - half, y - drop / 2), (cx, y + drop / 2), (cx + half, y - drop / 2)]
            (m.d_body if i % 2 == 0 else m.d_detail).line(_rotate(pts, cx, cy, angle), fill=255, width=width,
                                                          joint="curve")
    return np.asarray(m.body), np.asarray(m.detail)


def frames(ctx: Ctx):
    """art: picture frames hung with their tops on one line, each with a diagonal half inside."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    top, x = rng.uniform(0.08, 0.45) * ctx.h, rng.uniform(0.03, 0.3) * ctx.w
    for _ in range(ctx.count(2, 4)):
        k = ctx.size()
        fw = s * rng.uniform(0.26, 0.36) * k
        fh = fw * rng.uniform(0.75, 1.35)
        t = max(3.0, fw * rng.uniform(0.1, 0.14))
        m.d_body.rectangle([x, top, x + fw, top + fh], outline=255, width=int(t))
        inner = [(x + t, top + t), (x + fw - t, top + t), (x + t, top + fh - t)]
        if rng.random() < 0.5:
            inner = [(x + fw - t, top + fh - t), inner[1], inner[2]]
        m.d_detail.polygon(inner, fill=255)
        x += fw + s * rng.uniform(0.04, 0.1)
    return np.asarray(m.body), np.asarray(m.detail)


def stars(ctx: Ctx):
    """space: many small five-pointed stars over the upper part, and a crescent moon."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    for _ in range(3 if ctx.faint else ctx.count(10, 20)):
        r = s * rng.uniform(0.05, 0.08) * ctx.size()
        cx, cy = rng.uniform(0.05, 0.95) * ctx.w, rng.uniform(0.05, 0.7) * ctx.h
        rot = rng.uniform(0, 2 * math.pi)
        m.d_body.polygon([(cx + (r if i % 2 == 0 else 0.42 * r) * math.cos(rot + math.pi * i / 5),
                           cy + (r if i % 2 == 0 else 0.42 * r) * math.sin(rot + math.pi * i / 5))
                          for i in range(10)], fill=255)
    if not ctx.faint:
        r = s * rng.uniform(0.12, 0.16) * ctx.size()
        cx, cy = rng.uniform(0.15, 0.85) * ctx.w, rng.uniform(0.12, 0.5) * ctx.h
        a = rng.uniform(0, 2 * math.pi)
        moon = np.zeros((ctx.h, ctx.w), bool)
        view, dx, dy = _disc(moon, cx, cy, r)
        ox, oy = np.float32(0.45 * r * math.cos(a)), np.float32(0.45 * r * math.sin(a))
        view |= (np.hypot(dx, dy) < r) & (np.hypot(dx - ox, dy - oy) >= 0.85 * r)
        return np.asarray(m.body), moon.astype(np.uint8) * np.uint8(255)
    return np.asarray(m.body), np.asarray(m.detail)


def pies(ctx: Ctx):
    """food: discs cut into alternating wedges (pies, pizzas), scattered."""
    rng, m, s = ctx.rng, Masks(ctx), ctx.side
    pattern = np.zeros((ctx.h, ctx.w), bool)
    for _ in range(ctx.count(1, 4)):
        r = s * rng.uniform(0.14, 0.2) * ctx.size()
        cx, cy = rng.uniform(0.15, 0.85) * ctx.w, rng.uniform(0.15, 0.85) * ctx.h
        m.d_body.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        wedges = 2 * int(rng.integers(3, 6))
        view, dx, dy = _disc(pattern, cx, cy, r)
        ang = np.arctan2(dy, dx) + np.float32(rng.uniform(0, math.pi))
        view |= (np.hypot(dx, dy) < r * 0.92) & ((np.floor(ang / (2 * math.pi / wedges)) % 2) == 0)
    return m.arrays(pattern)


@dataclass(frozen=True)
class Motif:
    name: str
    shape: str
    texture: str
    layout: str
    draw: Callable[[Ctx], tuple[np.ndarray, np.ndarray]]


MOTIFS: dict[str, Motif] = {
    "ocean": Motif("waves", "wavy strokes", "alternating stroke colours", "parallel band", waves),
    "forest": Motif("trees", "stacked triangles on a trunk", "solid, trunk in the second colour",
                    "row on one ground line", trees),
    "desert": Motif("dunes", "half-ellipse mounds", "diagonal hatching", "overlapping, low in the picture", dunes),
    "city": Motif("skyline", "tall blocks", "window grid", "adjacent on one ground line", skyline),
    "music": Motif("rings", "discs", "concentric bands", "scattered", rings),
    "sport": Motif("balls", "discs", "chequered", "scattered", balls),
    "warfare": Motif("chevrons", "V strokes", "alternating stroke colours", "stacked column, any orientation",
                     chevrons),
    "art": Motif("frames", "rectangular outlines", "diagonal half inside", "tops on one line", frames),
    "space": Motif("stars", "five-pointed stars and a crescent", "solid", "scattered over the upper part", stars),
    "food": Motif("pies", "discs", "alternating wedges", "scattered", pies),
}

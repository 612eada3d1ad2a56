"""A synthetic instance-search benchmark in the Oxford/Paris layout, generated offline and deterministically.

Each set has a few *landmarks*: distinct facades (body colour and brick texture, a grid of
windows of one shape, a door, a roof style, an emblem) drawn once, then placed in many scenes
from different viewpoints (perspective warp, rotation, scale, position, partly out of frame),
behind foreground clutter (trees, poles, vehicles), among other buildings (random facades that
are not landmarks), under lighting changes (brightness, colour cast, gamma, noise). Distractor
images have the clutter and the other buildings but no landmark.

Ground truth comes from the exact visible share ``v`` of the landmark (its warped mask, out of
frame and occluded pixels removed, over the whole warped mask): good ``v >= 0.5``, ok
``0.25 <= v < 0.5``, junk ``0 < v < 0.25`` (Oxford's rule: junk shows less than 25 % of the
object). Queries are views with ``v >= 0.9``; their box is the visible landmark's bounding box.

Layout (per set, like ``data/Oxford5k``): ``jpg/<id>.jpg`` (set ``b``: ``jpg/<landmark>/<id>.jpg``
as Paris), ``gt/<landmark>_<n>_{query,good,ok,junk}.txt`` (set ``a`` writes Oxford's ``oxc1_``
prefix in query files), and ``gnd_<set>.pkl`` in the revisited structure (easy = good,
hard = ok, junk = junk; imlist = every image, queries included). Two sets (``synth_a``,
``synth_b``) play Oxford and Paris: PCA for one is fitted on the other.

Use::

    generate_set(out / "synth_a", name="synth_a", seed=0, scale=1.0)
"""

from __future__ import annotations

import math
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..core import io

NAMES = ("abbey", "basilica", "bastion", "belfry", "chapel", "citadel", "cloister", "college", "dome", "forum",
         "gatehouse", "guildhall", "library", "lighthouse", "minster", "museum", "observatory", "opera", "palace",
         "pavilion", "rotunda", "tower")
GOOD, OK = 0.5, 0.25
QUERY_VISIBLE = 0.9
FACADE = 240  # facade canvas side (pixels)


@dataclass(frozen=True)
class SynthConfig:
    landmarks: int = 5
    views: int = 12          # views per landmark at scale 1 (queries included)
    queries: int = 3         # queries per landmark (Oxford: 5)
    distractors: int = 24    # images without a landmark at scale 1
    width: int = 640
    height: int = 480
    portrait_share: float = 0.3


def _rgb(rng, lo=30, hi=230) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def draw_facade(rng: np.random.Generator) -> Image.Image:
    """An RGBA facade (transparent around its silhouette) with a random but consistent design."""
    im = Image.new("RGBA", (FACADE, FACADE), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    body, dark = _rgb(rng, 60, 220), _rgb(rng, 20, 120)
    top = int(rng.integers(60, 110))
    d.rectangle([20, top, FACADE - 20, FACADE - 1], fill=body + (255,))
    for y in range(top, FACADE, int(rng.integers(6, 14))):  # brick courses
        d.line([20, y, FACADE - 20, y], fill=tuple(max(0, c - 25) for c in body) + (255,), width=1)
    roof = int(rng.integers(0, 3))
    if roof == 0:
        d.polygon([(12, top), (FACADE // 2, int(rng.integers(5, top - 20))), (FACADE - 12, top)], fill=dark + (255,))
    elif roof == 1:
        r = int(rng.integers(35, 70))
        d.pieslice([FACADE // 2 - r, top - r, FACADE // 2 + r, top + r], 180, 360, fill=dark + (255,))
    else:
        for x in range(20, FACADE - 20, 24):
            d.rectangle([x, top - 14, x + 12, top], fill=dark + (255,))
    shape, win = int(rng.integers(0, 3)), _rgb(rng, 0, 255)
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(3, 7))
    span_w, span_h = (FACADE - 60) / cols, (FACADE - top - 60) / rows
    for i in range(rows):
        for j in range(cols):
            x0, y0 = 30 + j * span_w + span_w * 0.2, top + 15 + i * span_h + span_h * 0.15
            x1, y1 = x0 + span_w * 0.6, y0 + span_h * 0.6
            if shape == 0:
                d.rectangle([x0, y0, x1, y1], fill=win + (255,))
            elif shape == 1:
                d.ellipse([x0, y0, x1, y1], fill=win + (255,))
            else:
                d.rectangle([x0, (y0 + y1) / 2, x1, y1], fill=win + (255,))
                d.pieslice([x0, y0, x1, y0 + (y1 - y0)], 180, 360, fill=win + (255,))
    dw = int(rng.integers(24, 44))
    d.rectangle([FACADE // 2 - dw // 2, FACADE - 50, FACADE // 2 + dw // 2, FACADE - 1], fill=dark + (255,))
    ex, ey, er = FACADE // 2, top + int(rng.integers(12, 30)), int(rng.integers(10, 18))
    emblem = _rgb(rng, 0, 255)
    d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=emblem + (255,))
    pts = [(ex + er * 0.8 * math.cos(a), ey + er * 0.8 * math.sin(a))
           for a in np.linspace(0, 2 * math.pi, int(rng.integers(3, 7)), endpoint=False)]
    d.polygon(pts, fill=tuple(255 - c for c in emblem) + (255,))
    return im


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    a, b = [], []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.asarray(a, float), np.asarray(b, float)).tolist()


def _quad(rng, w: int, h: int, kind: str) -> list[tuple[float, float]]:
    """Corners (tl, tr, br, bl) of the landmark in the image for a view of the given kind."""
    side = float(rng.uniform(0.45, 0.85) * min(w, h)) if kind != "query" else float(rng.uniform(0.6, 0.8) * min(w, h))
    if kind == "junk":
        side *= float(rng.uniform(0.8, 1.2))
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.4, 0.6) * h
    if kind in ("partial", "junk"):  # push it out of frame so that about ``target`` of its width stays in
        target = rng.uniform(0.3, 0.65) if kind == "partial" else rng.uniform(0.05, 0.28)
        cx = side * (target - 0.5) if rng.random() < 0.5 else w - side * (target - 0.5)
    persp = rng.uniform(-0.25, 0.25) if kind != "query" else rng.uniform(-0.12, 0.12)
    rot = math.radians(rng.uniform(-8, 8))
    hl, hr = side * (1 + persp) / 2, side * (1 - persp) / 2
    pts = [(-side / 2, -hl), (side / 2, -hr), (side / 2, hr), (-side / 2, hl)]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _warp(img: Image.Image, quad, canvas: tuple[int, int]) -> Image.Image:
    dst = [(float(x), float(y)) for x, y in quad]
    src = [(0, 0), (FACADE, 0), (FACADE, FACADE), (0, FACADE)]
    return img.transform(canvas, Image.PERSPECTIVE, _perspective_coeffs(dst, src), Image.BILINEAR)


def _clutter(d: ImageDraw.ImageDraw, rng, w: int, h: int, n: int, mask: ImageDraw.ImageDraw | None = None) -> None:
    for _ in range(n):
        kind = int(rng.integers(0, 3))
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0.45 * h, h))
        size = float(rng.uniform(0.06, 0.18) * h)
        if kind == 0:  # tree
            shapes = [("rect", [x - size * 0.08, y - size, x + size * 0.08, y + size], (90, 60, 30)),
                      ("ellipse", [x - size * 0.6, y - 2.2 * size, x + size * 0.6, y - 0.6 * size], _rgb(rng, 20, 140))]
        elif kind == 1:  # vehicle
            shapes = [("rect", [x - size, y - size * 0.5, x + size, y + size * 0.2], _rgb(rng)),
                      ("ellipse", [x - size * 0.8, y, x - size * 0.4, y + size * 0.4], (20, 20, 20))]
        else:  # pole with a sign
            shapes = [("rect", [x - 3, y - 2.5 * size, x + 3, y + size * 0.3], (70, 70, 70)),
                      ("rect", [x - size * 0.4, y - 2.5 * size, x + size * 0.4, y - 1.9 * size], _rgb(rng))]
        for what, box, color in shapes:
            getattr(d, "rectangle" if what == "rect" else "ellipse")(box, fill=color)
            if mask is not None:
                getattr(mask, "rectangle" if what == "rect" else "ellipse")(box, fill=255)


def render_scene(rng: np.random.Generator, w: int, h: int, landmark: Image.Image | None, kind: str,
                 n_buildings: int, building_seed: int) -> tuple[Image.Image, float, tuple | None]:
    """(image, visible share of the landmark, visible box (x1, y1, x2, y2) or None)."""
    sky, ground = _rgb(rng, 120, 240), _rgb(rng, 50, 160)
    im = Image.new("RGB", (w, h), sky)
    d = ImageDraw.Draw(im)
    horizon = int(rng.uniform(0.55, 0.75) * h)
    d.rectangle([0, horizon, w, h], fill=ground)
    brng = np.random.default_rng([building_seed, int(rng.integers(1 << 30))])
    for _ in range(n_buildings):  # other buildings (never a landmark)
        other = draw_facade(brng)
        quad = _quad(brng, w, h, "partial" if brng.random() < 0.5 else "view")
        quad = [(x, y + h * 0.05) for x, y in quad]
        warped = _warp(other, [(x * 0.7 + w * 0.15 * brng.uniform(-1, 1), y) for x, y in quad], (w, h))
        im.paste(warped, (0, 0), warped)
    visible, box = 0.0, None
    if landmark is not None:
        quad = _quad(rng, w, h, kind)
        warped = _warp(landmark, quad, (w, h))
        # The whole warped silhouette, in or out of frame, counted on a quarter-resolution canvas.
        small = [(x / 4 + w / 4, y / 4 + h / 4) for x, y in quad]
        big = _warp(landmark.getchannel("A"), small, (3 * w // 4, 3 * h // 4))
        total = float((np.asarray(big) > 127).sum()) * 16.0
        im.paste(warped, (0, 0), warped)
        occ = Image.new("L", (w, h), 0)
        n_occ = int(rng.integers(0, 3)) if kind == "query" else int(rng.integers(1, 5))
        _clutter(d, rng, w, h, n_occ, ImageDraw.Draw(occ))
        seen = (np.asarray(warped.getchannel("A")) > 127) & (np.asarray(occ) == 0)
        visible = float(seen.sum()) / max(total, 1.0)
        if seen.any():
            ys, xs = np.nonzero(seen)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    _clutter(d, rng, w, h, int(rng.integers(0, 3)))
    arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = arr * (rng.uniform(0.85, 1.15, 3) * rng.uniform(0.65, 1.25)).astype(np.float32)
    arr = np.clip(arr, 0, 1) ** np.float32(rng.uniform(0.8, 1.25)) * 255.0
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * 4.0
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    return out, visible, box


def _label(v: float) -> str | None:
    if v >= GOOD:
        return "good"
    if v >= OK:
        return "ok"
    return "junk" if v > 0 else None


def generate_set(out: str | Path, name: str, seed: int = 0, scale: float = 1.0, cfg: SynthConfig = SynthConfig(),
                 oxford_prefix: bool = True, subfolders: bool = False, progress: bool = True) -> dict:
    """Write one set into ``out`` (built in a temporary folder, renamed into place); returns its counts."""
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    rng0 = np.random.default_rng([seed, 1000])
    names = [str(n) for n in rng0.choice(NAMES, size=min(cfg.landmarks, len(NAMES)), replace=False)]
    facades = {n: draw_facade(np.random.default_rng([seed, 2000, i])) for i, n in enumerate(names)}
    n_views = max(cfg.queries + 2, round(cfg.views * scale))
    n_distr = max(1, round(cfg.distractors * scale))
    jobs = [(n, v) for n in names for v in range(n_views)] + [(None, v) for v in range(n_distr)]
    lists = {n: {"good": [], "ok": [], "junk": [], "query": []} for n in names}
    ids = []
    try:
        for landmark, v in tqdm(jobs, desc=f"rendering {name}", unit="img", disable=not progress):
            index = len(ids)
            rng = np.random.default_rng([seed, 3000, index])
            portrait = rng.random() < cfg.portrait_share
            w, h = (cfg.height, cfg.width) if portrait else (cfg.width, cfg.height)
            prefix = landmark or "flickr"
            image_id = f"{prefix}_{index:06d}"
            want_query = landmark is not None and v < cfg.queries
            kind = "query" if want_query else str(rng.choice(["view", "view", "partial", "junk"]))
            for attempt in range(20):  # a query must show the landmark almost whole
                img, vis, box = render_scene(rng, w, h, facades.get(landmark), kind, int(rng.integers(0, 3)),
                                             seed * 7919 + 17)
                if not want_query or (vis >= QUERY_VISIBLE and box is not None):
                    break
            folder = tmp / "jpg" / (prefix if subfolders else "")
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{image_id}.jpg", quality=90)
            ids.append(image_id)
            if landmark is None:
                continue
            label = _label(vis)
            if label:
                lists[landmark][label].append(image_id)
            if want_query and vis >= QUERY_VISIBLE and box is not None:
                lists[landmark]["query"].append((image_id, box))
        gt = tmp / "gt"
        gt.mkdir()
        gnd = {"imlist": sorted(ids), "qimlist": [], "gnd": []}
        pos = {i: k for k, i in enumerate(gnd["imlist"])}
        n_queries = 0
        for landmark in names:
            for qn, (qid, box) in enumerate(lists[landmark]["query"], 1):
                stem = gt / f"{landmark}_{qn}"
                shown = ("oxc1_" if oxford_prefix else "") + qid
                io.write_text(f"{stem}_query.txt", f"{shown} {box[0]:.1f} {box[1]:.1f} {box[2]:.1f} {box[3]:.1f}\n")
                for kind in ("good", "ok", "junk"):
                    io.write_lines(f"{stem}_{kind}.txt", lists[landmark][kind])
                gnd["qimlist"].append(qid)
                gnd["gnd"].append({"bbx": list(box), "easy": [pos[i] for i in lists[landmark]["good"]],
                                   "hard": [pos[i] for i in lists[landmark]["ok"]],
                                   "junk": [pos[i] for i in lists[landmark]["junk"]]})
                n_queries += 1
        with io.atomic_path(tmp / f"gnd_{name}.pkl") as p:
            p.write_bytes(pickle.dumps(gnd, protocol=4))
        counts = {"images": len(ids), "landmarks": names, "queries": n_queries, "distractors": n_distr,
                  **{k: sum(len(lists[n][k]) for n in names) for k in ("good", "ok", "junk")}}
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


SETS = {"synth_a": {"offset": 0, "oxford_prefix": True, "subfolders": False},   # Oxford-like
        "synth_b": {"offset": 1, "oxford_prefix": False, "subfolders": True}}   # Paris-like

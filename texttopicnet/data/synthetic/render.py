"""Pictures for the demo corpus: subjects drawn as motifs, in colours drawn afresh per picture.

``paint(spec)`` lays a random background (:mod:`.scene`: gradient and soft blotches of
random colours, thin scribbles), then draws each subject's motif (:mod:`.motifs`:
shape, texture and layout) with as many and as large elements as the subject's weight
asks, in a random colour that stands out from the background (either polarity) and a
second random colour for the texture, then a few scribbles in front, a brightness
change and sensor-like noise. ``spec.faint`` subjects get one small low-contrast
element (the VOC layout's "difficult" labels). ``encode(spec)`` adds the file format,
colour mode and JPEG quality.

Rendering is a pure function of an :class:`ImageSpec` (which carries its own seed),
so images can be rendered in worker processes and still be byte-identical.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .motifs import MOTIFS, Ctx
from .scene import background, contrasting, luminance, scribbles


@dataclass(frozen=True)
class ImageSpec:
    """Everything needed to draw one picture (picklable, hashable inputs only)."""
    seed: int
    width: int
    height: int
    weights: tuple[tuple[str, float], ...]              # (subject, weight) pairs, weights sum to ~1
    faint: tuple[str, ...] = ()                         # subjects drawn small and faint ("difficult")
    fmt: str = "JPEG"                                   # "JPEG" or "PNG"
    mode: str = "RGB"                                   # final mode: RGB, L (grayscale), CMYK, P (palette),
                                                        # RGBA (transparent outside a centred ellipse)
    quality: int | None = None                          # JPEG quality; None = random 70..95


def paint(spec: ImageSpec) -> np.ndarray:
    """The picture as an (h, w, 3) uint8 RGB array."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    canvas, bg_luma = background(rng, w, h, blotches=int(rng.integers(2, 6)))
    scribbles(canvas, rng, int(rng.integers(2, 6)))
    layers = [(s, wt, False) for s, wt in spec.weights] + [(s, 0.0, True) for s in spec.faint]
    for subject, weight, faint in layers:
        body, detail = MOTIFS[subject].draw(Ctx(rng, w, h, weight, faint))
        c0 = contrasting(rng, bg_luma)
        c1 = contrasting(rng, luminance(c0), min_diff=45.0)
        if faint:  # "difficult": one small element at low contrast
            alpha = rng.uniform(0.3, 0.45)
            body, detail = (body * alpha).astype(np.uint8), (detail * alpha).astype(np.uint8)
        for colour, mask in ((c0, body), (c1, detail)):
            mask = Image.fromarray(mask, "L")
            box = mask.getbbox()  # paste over the drawn part only
            if box is not None:
                canvas.paste(colour, box, mask.crop(box))
    scribbles(canvas, rng, int(rng.integers(1, 3)))  # a few in front: partial occlusion
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
    elif spec.mode == "RGBA":  # a cut-out, as logos and stickers on the web: transparent corners
        yy, xx = np.mgrid[0:im.height, 0:im.width]
        inside = ((xx - im.width / 2) / (0.48 * im.width)) ** 2 + ((yy - im.height / 2) / (0.48 * im.height)) ** 2 <= 1
        im.putalpha(Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), "L"))
    buf = io.BytesIO()
    if spec.fmt == "PNG":
        im.save(buf, format="PNG", optimize=False)
    else:
        quality = spec.quality or int(np.random.default_rng(spec.seed + 1).integers(70, 96))
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

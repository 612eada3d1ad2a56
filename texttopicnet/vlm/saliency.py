"""From an unnaturalness map to a saliency map, as the released ``compute_saliency_map.py`` does.

The steps (Kato & Harada's code, parameters in brackets):

1. ``map ** power`` [0.5: the square root];
2. upsample by the layer's stride [16 for VGG conv5_4 and CaffeNet conv3..5] (bilinear; the
   original's ``scipy.misc.imresize`` also rounded to uint8 first, which we skip);
3. pad with zeros, centred, to the image's size (the map of (H-1) x (W-1) prediction errors
   covers the middle of the image; a larger map is cropped centred);
4. Gaussian blur with sigma = ``sigma`` x the map's size per axis [0.03] (scipy.ndimage,
   reflect borders, as the original);
5. min-max normalise to [0, 1] (the original then wrote ``uint8(x * 255)``: :func:`to_uint8`).

Use::

    sal = postprocess(unnat_map, image_shape=(h, w), stride=16)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

POWER = 0.5   # compute_saliency_map.py: pow_
SIGMA = 0.03  # compute_saliency_map.py: sigma, a fraction of the map's size


def layer_stride(input_size: int, feature_size: int) -> int:
    """The power of two nearest to input/feature size: a layer's total stride (227/13 -> 16, 227/55 -> 4)."""
    if feature_size < 1 or input_size < 1:
        raise ValueError("sizes must be positive")
    return int(2 ** round(math.log2(input_size / feature_size)))


def upsample(a: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor (pixel centres aligned, edges clamped)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))[None, None]
    size = (a.shape[0] * factor, a.shape[1] * factor)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def pad_center(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Zero-pad (or crop) ``a`` centred to ``shape``; the extra pixel of an odd difference goes last."""
    out = np.zeros(shape, dtype=np.float64)
    src, dst = [], []
    for n_in, n_out in zip(a.shape, shape):
        if n_out >= n_in:
            lo = (n_out - n_in) // 2
            src.append(slice(0, n_in))
            dst.append(slice(lo, lo + n_in))
        else:
            lo = (n_in - n_out) // 2
            src.append(slice(lo, lo + n_out))
            dst.append(slice(0, n_out))
    out[tuple(dst)] = a[tuple(src)]
    return out


def postprocess(unnat_map: np.ndarray, image_shape: tuple[int, int], stride: int, power: float = POWER,
                sigma: float = SIGMA, normalise: bool = True) -> np.ndarray:
    """The saliency map (float64, ``image_shape``, in [0, 1] when ``normalise``) of one unnaturalness map."""
    m = np.asarray(unnat_map, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    m = np.clip(m, 0.0, None) ** power
    m = pad_center(upsample(m, int(stride)), tuple(int(s) for s in image_shape))
    if sigma > 0:
        m = ndimage.gaussian_filter(m, (sigma * m.shape[0], sigma * m.shape[1]))
    if normalise:
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return m


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """``uint8(x * 255)`` of a [0, 1] map (truncating, as the original's ``astype``)."""
    return (np.clip(saliency, 0.0, 1.0) * 255).astype(np.uint8)


def center_bias(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """The centre-bias baseline: an isotropic Gaussian at the image centre, sigma a fraction of each side."""
    h, w = shape
    y = (np.arange(h) + 0.5 - h / 2) / (sigma * h)
    x = (np.arange(w) + 0.5 - w / 2) / (sigma * w)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))

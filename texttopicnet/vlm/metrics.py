"""Saliency metrics with the MIT saliency benchmark's definitions (Bylinskii et al., ``cvzoya/saliency``).

- :func:`auc_judd`: ROC area, thresholds at the saliency values of the fixated pixels
  (AUC_Judd.m), with its default jitter (uniform noise in [0, 1e-7) breaks ties, so a flat
  map scores about 0.5 instead of 0), drawn from ``seed``; ``jitter=False`` leaves ties.
- :func:`shuffled_auc`: fixated pixels against the fixations of OTHER images (AUC_shuffled.m:
  ``n_splits`` random draws of as many other-image fixations as this image has, thresholds
  every ``step`` of the [0, 1]-normalised map, mean over draws; the draws come from ``seed``).
  ``method="exact"`` is the same question answered without sampling or binning: the
  Mann-Whitney probability that a fixated pixel outscores an other-image fixation (ties 1/2).
- :func:`nss` (mean of the standardised map at fixations; sample std as MATLAB's ``std``),
  :func:`cc` (Pearson correlation), :func:`kl_div` (KL of the fixation distribution from the
  saliency distribution, MATLAB ``eps`` = 2.2e-16), :func:`similarity` (histogram intersection
  of the two maps, each min-max normalised then summing to 1).

Maps of another size than the fixation map are resized to it (bilinear; MATLAB's imresize is
bicubic). Degenerate inputs never give NaN: a map without fixations is a ``ValueError``; a
constant saliency map scores NSS 0 and CC 0, and counts as uniform in SIM; a map with negative
values is shifted to start at 0 for KL (a distribution cannot be negative).

Use::

    import texttopicnet
    scores = texttopicnet.saliency_scores(saliency, fixations_binary, other_fixations=others)
    # {"auc_judd": ..., "sauc": ..., "nss": ..., "cc": ..., "kl": ..., "sim": ...}
"""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps, as KLdiv.m uses it


def _as_map(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def resize_to(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``saliency`` bilinearly resized to ``shape`` (unchanged when it already has that shape)."""
    saliency = _as_map(saliency, "saliency map")
    if saliency.shape == tuple(shape):
        return saliency
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(saliency)[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def _fixations(fixation_map, name: str = "fixation map") -> np.ndarray:
    f = _as_map(fixation_map, name) > 0
    if not f.any():
        raise ValueError(f"{name} has no fixations")
    return f


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _trapz(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def auc_judd(saliency_map, fixation_map, jitter: bool = True, seed: int = 0) -> float:
    """AUC-Judd: one ROC point per fixated pixel's value (AUC_Judd.m)."""
    fix = _fixations(fixation_map)
    s = resize_to(saliency_map, fix.shape)
    if jitter:
        s = s + np.random.default_rng(seed).random(s.shape) / 1e7
    s = _minmax(s)
    flat, f = s.ravel(), fix.ravel()
    n_pixels, n_fix = flat.size, int(f.sum())
    if n_fix == n_pixels:
        raise ValueError("every pixel is fixated: no negatives to rank against")
    thresholds = np.sort(flat[f])[::-1]
    ordered = np.sort(flat)
    above = n_pixels - np.searchsorted(ordered, thresholds, side="left")  # sum(S >= t) per threshold
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pixels - n_fix), [1.0]])
    return _trapz(fp, tp)


def _auc_fixed_thresholds(pos: np.ndarray, neg: np.ndarray, step: float) -> float:
    top = max(pos.max(), neg.max())
    n = int(np.floor(top / step + 1e-10))
    thresholds = (step * np.arange(n + 1))[::-1]
    sp, sn = np.sort(pos), np.sort(neg)
    tp = (sp.size - np.searchsorted(sp, thresholds, side="left")) / sp.size
    fp = (sn.size - np.searchsorted(sn, thresholds, side="left")) / sn.size
    return _trapz(np.concatenate([[0.0], fp, [1.0]]), np.concatenate([[0.0], tp, [1.0]]))


def mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + P(pos == neg) / 2 over all pairs (the area under the full ROC curve)."""
    pos = np.asarray(pos, dtype=np.float64).ravel()
    neg = np.asarray(neg, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("need at least one positive and one negative")
    sn = np.sort(neg)
    below = np.searchsorted(sn, pos, side="left")
    equal = np.searchsorted(sn, pos, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (pos.size * neg.size))


def shuffled_auc(saliency_map, fixation_map, other_fixations, n_splits: int = 100, step: float = 0.1,
                 seed: int = 0, method: str = "mit") -> float:
    """Shuffled AUC: this image's fixations against other images' fixation locations (AUC_shuffled.m)."""
    fix = _fixations(fixation_map)
    other = _fixations(other_fixations, "other fixations map")
    if other.shape != fix.shape:
        raise ValueError(f"other fixations map has shape {other.shape}, the fixation map {fix.shape}")
    s = _minmax(resize_to(saliency_map, fix.shape))
    flat = s.ravel()
    pos = flat[fix.ravel()]
    ind = np.flatnonzero(other.ravel())  # column-major in MATLAB; the draw is random either way
    if method == "exact":
        return mann_whitney_auc(pos, flat[ind])
    if method != "mit":
        raise ValueError(f"unknown sAUC method {method!r}; use 'mit' or 'exact'")
    if n_splits < 1 or step <= 0:
        raise ValueError("n_splits must be >= 1 and step > 0")
    rng = np.random.default_rng(seed)
    k = min(pos.size, ind.size)
    aucs = [_auc_fixed_thresholds(pos, flat[ind[rng.permutation(ind.size)[:k]]], step) for _ in range(n_splits)]
    return float(np.mean(aucs))


def nss(saliency_map, fixation_map) -> float:
    """Normalized scanpath saliency: mean of the standardised map at the fixated pixels (NSS.m)."""
    fix = _fixations(fixation_map)
    s = resize_to(saliency_map, fix.shape)
    sd = s.std(ddof=1) if s.size > 1 else 0.0
    if sd == 0:
        return 0.0
    return float(((s - s.mean()) / sd)[fix].mean())


def cc(saliency_map, fixation_map) -> float:
    """Pearson's linear correlation coefficient between the two maps (CC.m); 0 when either is constant."""
    b = _as_map(fixation_map, "fixation map")
    a = resize_to(saliency_map, b.shape)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def kl_div(saliency_map, fixation_map) -> float:
    """KL divergence of the fixation distribution from the saliency distribution (KLdiv.m)."""
    q = _as_map(fixation_map, "fixation map")
    p = resize_to(saliency_map, q.shape)
    if p.min() < 0:
        p = p - p.min()
    if q.min() < 0:
        raise ValueError("fixation map has negative values")
    p = p / p.sum() if p.any() else p
    q = q / q.sum() if q.any() else q
    return float(np.sum(q * np.log(EPS + q / (p + EPS))))


def _distribution(a: np.ndarray) -> np.ndarray:
    if not a.any():
        return a
    if a.max() == a.min():  # a constant map: uniform (MATLAB would give NaN)
        return np.full_like(a, 1.0 / a.size)
    a = _minmax(a)
    return a / a.sum()


def similarity(saliency_map, fixation_map) -> float:
    """SIM: sum of the pixelwise minimum of the two maps as distributions (similarity.m)."""
    b = _as_map(fixation_map, "fixation map")
    a = resize_to(saliency_map, b.shape)
    return float(np.minimum(_distribution(a), _distribution(b)).sum())


def saliency_scores(saliency_map, fixation_map, other_fixations=None, *, density_map=None,
                    sauc_method: str = "mit", seed: int = 0) -> dict[str, float]:
    """All six metrics for one image: ``auc_judd``, ``sauc`` (only with ``other_fixations``), ``nss``,
    ``cc``, ``kl``, ``sim``.

    ``fixation_map`` is the binary map of fixated pixels (non-zero = fixated); ``other_fixations``
    the binary map of fixations on other images (for sAUC). CC, KL and SIM compare with
    ``density_map`` when given (the continuous fixation map, as the MIT benchmark does), else with
    ``fixation_map`` itself. Maps are 2-D arrays; a saliency map of another size is resized.
    """
    fix = _fixations(fixation_map)
    sal = resize_to(saliency_map, fix.shape)
    ref = fix.astype(np.float64) if density_map is None else _as_map(density_map, "density map")
    if ref.shape != fix.shape:
        raise ValueError(f"density map has shape {ref.shape}, the fixation map {fix.shape}")
    out = {"auc_judd": auc_judd(sal, fix, seed=seed)}
    if other_fixations is not None:
        out["sauc"] = shuffled_auc(sal, fix, other_fixations, seed=seed, method=sauc_method)
    out.update(nss=nss(sal, fix), cc=cc(sal, ref), kl=kl_div(sal, ref), sim=similarity(sal, ref))
    return out


def region_auc(score_map, region_mask) -> float:
    """How well a map ranks the pixels of ``region_mask`` above the rest: the full ROC area (ties 1/2)."""
    m = _as_map(score_map, "map")
    r = np.asarray(region_mask, dtype=bool)
    if r.shape != m.shape:
        m = resize_to(m, r.shape)
    if not r.any() or r.all():
        raise ValueError("the region must cover some but not all pixels")
    return mann_whitney_auc(m[r], m[~r])

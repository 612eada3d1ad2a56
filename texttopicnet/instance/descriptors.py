"""Class(topic)-weighted convolutional descriptors (Jimenez et al., BMVC 2017; SEED_SYSTEMS 004).

Per image, from the features ``X`` (C, h, w) of one conv layer and the raw CAMs (K, h, w):

1. CAMs normalised as the authors' code does (``mode="paper"``, the default): each map divided
   by its maximum, then clamped at 0 (:func:`normalize_cams`). When the maximum is negative this
   inverts the map (the authors' arithmetic, kept); a maximum of exactly 0 gives an all-zero map
   instead of their NaN. ``mode="positive"`` zeroes every map whose maximum is not positive.
2. CroW channel weights (Kalantidis et al. 2016) on the same features: ``Q_c`` = fraction of
   non-zero positions of channel c, ``CW_c = log(sum_c' Q_c' / Q_c)`` (0 for an all-zero channel)
   (:func:`crow_channel_weights`).
3. One vector per class ``f_k[c] = CW_c * sum_ij X_c,ij CAM_k,ij``, L2-normalised
   (:func:`class_vectors`). A zero vector stays zero (no NaN).
4. Aggregation of N_C of them (:func:`aggregate`): PCA whitening (fitted on another dataset:
   Paris for Oxford and back) of each class vector, L2, sum over the N_C classes, L2.
   *Offline*: each image's own top-N_C classes; *online*: the query's top-N_C classes applied to
   every database image (both read the stored vectors of all K classes).

Baseline: raw sum pooling (:func:`sum_pooling`: sum over positions, L2; no weighting, no PCA).

:class:`PCAWhitening` is sklearn's ``PCA(whiten=True)`` transform (mean removal, projection on
the top principal axes, division by the square root of each axis's variance, ``n - 1``
normalisation), written in numpy so it can be stored as plain arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

EPS = 1e-12


def _l2(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, EPS)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unit rows (a zero row stays zero)."""
    return _l2(np.asarray(x, dtype=np.float32), axis)


CAM_NORMS = ("paper", "positive")


def normalize_cams(raw: torch.Tensor, mode: str = "paper") -> torch.Tensor:
    """(..., K, h, w) raw CAMs -> each map / its max, clamped at 0 (see the module docstring for ``mode``)."""
    if mode not in CAM_NORMS:
        raise ValueError(f"unknown CAM normalisation {mode!r}; choose from {CAM_NORMS}")
    peak = raw.amax(dim=(-2, -1), keepdim=True)
    good = peak > 0 if mode == "positive" else peak != 0
    return torch.where(good, raw / torch.where(good, peak, torch.ones_like(peak)), torch.zeros_like(raw)).clamp_min(0)


def nonpositive_maps(raw: torch.Tensor) -> int:
    """How many of the (..., K, h, w) raw CAMs have no positive value (inverted or empty once normalised)."""
    return int((raw.amax(dim=(-2, -1)) <= 0).sum())


def crow_channel_weights(features: torch.Tensor) -> torch.Tensor:
    """(..., C, h, w) -> (..., C): ``log(sum Q / Q_c)``, 0 where ``Q_c`` = 0."""
    q = (features != 0).float().mean(dim=(-2, -1))
    total = q.sum(dim=-1, keepdim=True)
    safe = torch.where(q > 0, q, torch.ones_like(q))
    return torch.where(q > 0, torch.log(total / safe), torch.zeros_like(q))


def class_vectors(features: torch.Tensor, cams: torch.Tensor, channel_weights: bool = True) -> torch.Tensor:
    """(N, C, h, w) features and (N, K, h, w) normalised CAMs -> (N, K, C) L2-normalised class vectors."""
    n, c = features.shape[:2]
    k = cams.shape[1]
    features = features.float()
    pooled = torch.bmm(cams.float().reshape(n, k, -1), features.reshape(n, c, -1).transpose(1, 2))
    if channel_weights:
        pooled = pooled * crow_channel_weights(features).unsqueeze(1)
    norm = pooled.norm(dim=-1, keepdim=True).clamp_min(EPS)
    return pooled / norm


def sum_pooling(features: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C) sum over positions, L2-normalised."""
    s = features.double().sum(dim=(-2, -1))  # one sum per channel: double costs nothing here
    return (s / s.norm(dim=-1, keepdim=True).clamp_min(EPS)).float()


def top_classes(scores: np.ndarray, n: int) -> np.ndarray:
    """(N, K) scores -> (N, min(n, K)) class indices, highest first (ties: lower index first)."""
    scores = np.asarray(scores)
    n = min(int(n), scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[..., :n]


class PCAWhitening:
    """``PCA(n_components, whiten=True)`` as arrays: ``mean`` (D,), ``components`` (d, D), ``variance`` (d,)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, variance: np.ndarray, whiten: bool = True):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.variance = np.asarray(variance, dtype=np.float64)
        self.whiten = bool(whiten)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, x: np.ndarray, dim: int = 512, whiten: bool = True, rel_tol: float = 1e-6) -> PCAWhitening:
        """Fit on rows of ``x``. ``dim`` is capped at the data's rank; axes whose variance is below
        ``rel_tol`` x the largest are dropped (whitening them would only blow up noise)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"PCA needs at least 2 rows, got shape {x.shape}")
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        var = s ** 2 / (x.shape[0] - 1)
        keep = min(int(dim), int((var > rel_tol * max(var[0], EPS)).sum()))
        if keep == 0:
            raise ValueError(f"the {x.shape[0]} PCA training rows have no variance")
        # sklearn's svd_flip (u-based) sign convention is irrelevant here: dot products do not see it.
        return cls(mean, vt[:keep], var[:keep], whiten)

    def transform(self, x: np.ndarray) -> np.ndarray:
        y = (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T
        if self.whiten:
            y = y / np.sqrt(self.variance)
        return y.astype(np.float32)

    def save(self, path: str | Path) -> None:
        from ..core.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, mean=self.mean, components=self.components, variance=self.variance,
                     whiten=np.array(self.whiten))

    @classmethod
    def load(cls, path: str | Path) -> PCAWhitening:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["mean"], z["components"], z["variance"], bool(z["whiten"]))


def pca_training_vectors(class_vecs: np.ndarray, scores: np.ndarray, per_image: int = 1) -> np.ndarray:
    """The rows PCA is fitted on: each image's top-``per_image`` class vectors (the authors' default: 1).
    All-zero vectors (a topic whose CAM had no positive value) are left out: they carry no direction."""
    sel = top_classes(scores, per_image)
    rows = np.take_along_axis(np.asarray(class_vecs), sel[:, :, None], axis=1)
    rows = rows.reshape(-1, rows.shape[-1]).astype(np.float32)
    return rows[np.any(rows != 0, axis=1)]


def aggregate(class_vecs: np.ndarray, select: np.ndarray, pca: PCAWhitening | None = None,
              chunk: int = 2048) -> np.ndarray:
    """(N, K, C) stored class vectors -> (N, D) descriptors from the classes in ``select``.

    ``select`` is (N, n) (offline: each image's own top classes) or (n,) (online: the same
    classes for every image). Each selected vector -> PCA whitening (if given) -> L2; their sum -> L2.
    Processed in chunks of ``chunk`` images so 100k x K x C float16 stores never load whole.
    """
    n_img = class_vecs.shape[0]
    select = np.asarray(select)
    dim = pca.dim if pca is not None else class_vecs.shape[-1]
    out = np.zeros((n_img, dim), dtype=np.float32)
    for s in range(0, n_img, chunk):
        block = np.asarray(class_vecs[s:s + chunk], dtype=np.float32)
        if select.ndim == 1:
            picked = block[:, select]
        else:
            picked = np.take_along_axis(block, select[s:s + chunk, :, None], axis=1)
        b, m, c = picked.shape
        flat = picked.reshape(b * m, c)
        zero = ~np.any(flat != 0, axis=1)
        if pca is not None:
            flat = pca.transform(flat)
            flat[zero] = 0  # an empty class vector (all-zero CAM) contributes nothing, not -mean
        flat = _l2(flat)
        out[s:s + b] = _l2(flat.reshape(b, m, -1).sum(axis=1))
    return out


def describe_region(features: torch.Tensor, cams: torch.Tensor, classes, pca: PCAWhitening | None,
                    box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """One descriptor from a (C, h, w) map, normalised (K, h, w) CAMs of all classes, a class list and
    an optional grid box (x0, y0, x1, y1; exclusive ends): crop, class vectors (CroW on the crop),
    aggregate. Used for queries (the query box) and for re-ranking (the CAM boxes)."""
    if box is not None:
        x0, y0, x1, y1 = box
        features, cams = features[:, y0:y1, x0:x1], cams[:, y0:y1, x0:x1]
    cams = cams[list(classes)]
    vecs = class_vectors(features[None], cams[None])[0].numpy()
    return aggregate(vecs[None], np.arange(len(classes)), pca)[0]

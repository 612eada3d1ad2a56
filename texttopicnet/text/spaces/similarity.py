"""Scoring queries against items in a text space: KL for distributions, cosine for vectors.

Every function returns *distances* (smaller = closer), float64, as the retrieval code in
``texttopicnet.evaluation.retrieval`` ranks them:

- ``kl``: ``D[i, j] = KL(query_i || item_j)``, rows normalised to sum 1, item zeros floored
  at 1e-10 (``evaluation.retrieval.kl_divergence_matrix``; the paper ranks texts and images
  by KL(text || image), so for text->text the query plays the text);
- ``cosine``: ``D[i, j] = 1 - cos(query_i, item_j)``; a zero row (a text with no known
  word) has cosine 0 with everything (distance 1), never NaN.

For image<->text retrieval with a vector space, the CNN predicts the *training target*
(targets.py: non-negative after the min-shift), so compare CNN outputs with the texts'
targets; ``evaluation.retrieval.prepare(..., score="cosine")`` does that (it sum-normalises
rows first, which cosine ignores; it rejects negative values, so feed it targets, not raw
embeddings). :func:`leave_one_out_map` is the text->text protocol of the benchmark.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import UserError

SIMILARITIES = ("kl", "cosine")


def cosine_distances(queries, items) -> np.ndarray:
    """``1 - cos`` between rows; zero rows get distance 1 to everything."""
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(items, dtype=np.float64)
    _check(q, d)
    qn = np.linalg.norm(q, axis=1, keepdims=True)
    dn = np.linalg.norm(d, axis=1, keepdims=True)
    q = np.divide(q, qn, out=np.zeros_like(q), where=qn > 0)
    d = np.divide(d, dn, out=np.zeros_like(d), where=dn > 0)
    return np.clip(1.0 - q @ d.T, 0.0, 2.0)


def kl_distances(queries, items) -> np.ndarray:
    """``KL(query_i || item_j)`` (see the module docstring)."""
    from ...evaluation.retrieval import kl_divergence_matrix

    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(items, dtype=np.float64)
    _check(q, d)
    try:
        return kl_divergence_matrix(q, d)
    except ValueError as exc:
        raise UserError(f"KL needs probability distributions: {exc}") from None


_DISTANCES = {"kl": kl_distances, "cosine": cosine_distances}


def distance_matrix(similarity: str, queries, items) -> np.ndarray:
    if similarity not in _DISTANCES:
        raise UserError(f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    return _DISTANCES[similarity](queries, items)


def _check(q: np.ndarray, d: np.ndarray) -> None:
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise UserError(f"queries {q.shape} and items {d.shape} must be 2-D with the same number of columns")
    if not (np.isfinite(q).all() and np.isfinite(d).all()):
        raise UserError("queries or items contain NaN or infinite values")


def leave_one_out_map(vectors, labels, similarity: str) -> tuple[float, np.ndarray]:
    """Text->text mAP: every row queries all the others (itself excluded), relevant = same label.

    AP over the full ranking (``evaluation.metrics.retrieval_ap_rows``: ties ranked at the
    end of their group). Returns ``(mAP, AP per query)``.
    """
    from ...evaluation.metrics import retrieval_ap_rows

    x = np.asarray(vectors)
    lab = np.asarray(labels)
    n = len(x)
    if n < 2 or len(lab) != n:
        raise UserError(f"leave-one-out needs at least 2 rows with one label each (got {n} rows, {len(lab)} labels)")
    d = distance_matrix(similarity, x, x)
    off = ~np.eye(n, dtype=bool)
    dist = d[off].reshape(n, n - 1)
    rel = (lab[:, None] == lab[None, :])[off].reshape(n, n - 1)
    ap = retrieval_ap_rows(dist, rel)
    return float(ap.mean()), ap

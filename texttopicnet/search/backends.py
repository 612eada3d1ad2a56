"""Nearest images of a query vector: exact chunked matrix products, or faiss (optional).

Both backends rank by the space's similarity, as inner products over prepared rows:

- ``kl`` (distribution spaces, the paper's): ``KL(q || x) = sum_k q_k log q_k - <q, log x>``,
  rows ``x`` floored at ``EPS`` = 1e-10 and renormalised before the log (as
  ``evaluation.retrieval``), so ranking by KL is ranking by ``<q, log x>`` (largest first):
  one matrix product over the log rows, computed once when the index is loaded;
- ``cosine`` (vector spaces): rows L2-normalised once, ``1 - <q/|q|, x>``.

:class:`ExactBackend` multiplies ``CHUNK_ROWS`` rows at a time and keeps the best ``k`` of
each chunk (``argpartition``), so memory beyond the prepared matrix is bounded by
``chunk x queries`` whatever the index size: a few million rows are fine on a laptop.
Ties are broken by row order. :class:`FaissBackend` (``faiss-cpu``, imported only when
chosen) puts the same prepared rows in an exact ``IndexFlatIP``: the same ranking (up to
float rounding), faster for very large collections on many cores.

Distances returned are the similarity's (KL in nats, or 1 - cosine); smaller is closer.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import UserError

EPS = 1e-10
CHUNK_ROWS = 1 << 18  # 262,144 rows x 40 floats = 40 MiB of scores per 1,000 queries at most
SIMILARITIES = ("kl", "cosine")


def prepare_rows(rows: np.ndarray, similarity: str, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """float32 matrix whose inner products with a query rank the index (see the module docstring).

    Works chunk by chunk, so the float64 temporaries stay small for a large (memory-mapped) index.
    """
    if similarity not in SIMILARITIES:
        raise UserError(f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    n = rows.shape[0]
    out = np.empty(rows.shape, dtype=np.float32)
    for s in range(0, n, chunk):
        x = np.asarray(rows[s:s + chunk], dtype=np.float64)
        if not np.isfinite(x).all():
            raise UserError(f"index rows {s}..{s + len(x)} contain NaN or infinite values")
        if similarity == "kl":
            if (x < 0).any():
                raise UserError("a KL index needs non-negative rows (distributions)")
            x = np.maximum(x, EPS)
            out[s:s + chunk] = np.log(x / x.sum(axis=1, keepdims=True))
        else:
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            out[s:s + chunk] = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


def prepare_queries(queries: np.ndarray, similarity: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 query rows, float64 per-query constant): distance = constant - inner product."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    if not np.isfinite(q).all():
        raise UserError("query vectors contain NaN or infinite values")
    if similarity == "kl":
        if (q < 0).any():
            raise UserError("KL queries must be distributions (non-negative)")
        s = q.sum(axis=1, keepdims=True)
        if (s <= 0).any():
            raise UserError("a KL query sums to 0")
        q = q / s
        with np.errstate(divide="ignore", invalid="ignore"):
            const = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=1)
        return q.astype(np.float32), const
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    if (norm <= 0).any():
        raise UserError("a cosine query is the zero vector")
    return (q / norm).astype(np.float32), np.ones(len(q))


class ExactBackend:
    """Exact top-k by chunked matrix products over the prepared rows (see the module docstring)."""

    name = "exact"

    def __init__(self, rows: np.ndarray, similarity: str, chunk_rows: int = CHUNK_ROWS, prepared: bool = False):
        self.similarity = similarity
        self.chunk_rows = max(1, int(chunk_rows))
        self.rows = np.ascontiguousarray(rows, dtype=np.float32) if prepared else prepare_rows(rows, similarity)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(row indices int64 (nq, k'), distances float64 (nq, k')), best first; k' = min(k, n)."""
        q, const = prepare_queries(queries, self.similarity)
        n, nq = len(self), q.shape[0]
        k = max(0, min(int(k), n))
        best_i = np.zeros((nq, 0), dtype=np.int64)
        best_s = np.zeros((nq, 0), dtype=np.float32)
        if k == 0:
            return best_i, best_s.astype(np.float64)
        for start in range(0, n, self.chunk_rows):
            block = self.rows[start:start + self.chunk_rows]
            scores = q @ block.T  # (nq, chunk): larger = closer
            kk = min(k, scores.shape[1])
            if kk < scores.shape[1]:
                part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(scores.shape[1]), (nq, scores.shape[1]))
            cand_s = np.take_along_axis(scores, part, axis=1)
            best_s = np.concatenate([best_s, cand_s], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            if best_s.shape[1] > k:
                keep = _top(best_s, best_i, k)
                best_s = np.take_along_axis(best_s, keep, axis=1)
                best_i = np.take_along_axis(best_i, keep, axis=1)
        keep = _top(best_s, best_i, k)
        best_s = np.take_along_axis(best_s, keep, axis=1)
        best_i = np.take_along_axis(best_i, keep, axis=1)
        dist = const[:, None] - best_s.astype(np.float64)
        return best_i, np.maximum(dist, 0.0)


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Column order of the best ``k``: highest score first, then lowest row (deterministic ties)."""
    return np.lexsort((rows, -scores), axis=1)[:, :k]


class FaissBackend:
    """The same ranking through faiss ``IndexFlatIP`` (exact inner products); needs ``faiss-cpu``."""

    name = "faiss"

    def __init__(self, rows: np.ndarray, similarity: str, prepared: bool = False, **_):
        try:
            import faiss
        except ImportError:
            raise UserError("the faiss backend needs faiss: pip install faiss-cpu (or use the exact backend)") from None
        self.similarity = similarity
        prepared_rows = np.ascontiguousarray(rows if prepared else prepare_rows(rows, similarity), dtype=np.float32)
        self.index = faiss.IndexFlatIP(prepared_rows.shape[1])
        self.index.add(prepared_rows)
        self.rows = prepared_rows

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, const = prepare_queries(queries, self.similarity)
        k = max(0, min(int(k), len(self)))
        if k == 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0))
        scores, idx = self.index.search(np.ascontiguousarray(q), k)
        return idx.astype(np.int64), np.maximum(const[:, None] - scores.astype(np.float64), 0.0)


BACKENDS = {"exact": ExactBackend, "faiss": FaissBackend}


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def make_backend(name: str, rows: np.ndarray, similarity: str, **options):
    if name not in BACKENDS:
        raise UserError(f"unknown search backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](rows, similarity, **options)

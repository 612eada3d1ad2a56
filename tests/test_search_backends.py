"""Search ranking (texttopicnet.search.backends) against a slow, obvious KL / cosine loop, and faiss
against the exact backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy

from texttopicnet.search.backends import ExactBackend, FaissBackend, faiss_available, make_backend


def slow_kl_ranking(q, rows, k):
    """KL(q || x) per row with scipy (x floored at 1e-10 and renormalised), sorted, ties by row."""
    out = []
    for i, x in enumerate(rows):
        x = np.maximum(np.asarray(x, dtype=np.float64), 1e-10)
        out.append((float(entropy(q, x / x.sum())), i))
    out.sort()
    return out[:k]


def slow_cosine_ranking(q, rows, k):
    out = []
    qn = math.sqrt(sum(float(a) * float(a) for a in q))
    for i, x in enumerate(rows):
        xn = math.sqrt(sum(float(a) * float(a) for a in x))
        cos = sum(float(a) * float(b) for a, b in zip(q, x)) / (qn * xn)
        out.append((1.0 - cos, i))
    out.sort()
    return out[:k]


def _data(n=300, d=7, seed=0):
    rng = np.random.default_rng(seed)
    dists = rng.dirichlet(np.full(d, 0.3), size=n)
    dists[5, 2] = 0.0  # an exact zero: the floor must handle it
    dists[5] /= dists[5].sum()
    vecs = rng.normal(size=(n, d))
    return rng, dists, vecs


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_exact_kl_matches_slow_loop(chunk):
    rng, dists, _ = _data()
    backend = ExactBackend(dists, "kl", chunk_rows=chunk)
    for _ in range(3):
        q = rng.dirichlet(np.full(7, 0.5))
        rows, dist = backend.search(q, 15)
        ref = slow_kl_ranking(q, dists, 15)
        assert rows[0].tolist() == [i for _, i in ref]
        np.testing.assert_allclose(dist[0], [d for d, _ in ref], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 13, 10_000])
def test_exact_cosine_matches_slow_loop(chunk):
    rng, _, vecs = _data()
    backend = ExactBackend(vecs, "cosine", chunk_rows=chunk)
    q = rng.normal(size=7)
    rows, dist = backend.search(q, 20)
    ref = slow_cosine_ranking(q, vecs, 20)
    assert rows[0].tolist() == [i for _, i in ref]
    np.testing.assert_allclose(dist[0], [d for d, _ in ref], atol=1e-5)


def test_several_queries_at_once_and_k_larger_than_index():
    rng, dists, _ = _data(n=9)
    backend = ExactBackend(dists, "kl", chunk_rows=4)
    qs = rng.dirichlet(np.ones(7), size=3)
    rows, dist = backend.search(qs, 50)
    assert rows.shape == (3, 9) and dist.shape == (3, 9)
    for j in range(3):
        assert sorted(rows[j].tolist()) == list(range(9))
        assert rows[j].tolist() == [i for _, i in slow_kl_ranking(qs[j], dists, 9)]
        assert (np.diff(dist[j]) >= -1e-9).all()


def test_ties_broken_by_row_order():
    rows = np.tile(np.array([[0.5, 0.3, 0.2]]), (10, 1))
    got, _ = ExactBackend(rows, "kl", chunk_rows=3).search(np.array([0.2, 0.3, 0.5]), 10)
    assert got[0].tolist() == list(range(10))


def test_float16_rows_rank_like_float32():
    rng, dists, _ = _data()
    q = rng.dirichlet(np.ones(7))
    a, _ = ExactBackend(dists.astype(np.float16), "kl").search(q, 10)
    b, _ = ExactBackend(dists.astype(np.float32), "kl").search(q, 10)
    assert len(set(a[0].tolist()) & set(b[0].tolist())) >= 8  # float16 rounding may swap near-ties


def test_bad_input_is_refused():
    from texttopicnet.core.errors import UserError

    with pytest.raises(UserError):
        ExactBackend(np.array([[0.5, -0.1, 0.6]]), "kl")
    with pytest.raises(UserError):
        ExactBackend(np.array([[np.nan, 1.0]]), "cosine")
    with pytest.raises(UserError):
        ExactBackend(np.ones((2, 2)), "cosine").search(np.zeros(2), 1)
    with pytest.raises(UserError):
        make_backend("annoy", np.ones((2, 2)), "cosine")


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (pip install faiss-cpu)")
@pytest.mark.parametrize("similarity", ["kl", "cosine"])
def test_faiss_equals_exact(similarity):
    rng, dists, vecs = _data(n=2000, d=12, seed=3)
    rows = dists if similarity == "kl" else vecs
    exact, fa = ExactBackend(rows, similarity, chunk_rows=300), FaissBackend(rows, similarity)
    qs = rng.dirichlet(np.ones(12), size=5) if similarity == "kl" else rng.normal(size=(5, 12))
    ei, ed = exact.search(qs, 25)
    fi, fd = fa.search(qs, 25)
    np.testing.assert_allclose(fd, ed, rtol=1e-4, atol=1e-5)
    for j in range(5):  # same ranking; equal-distance neighbours may come in either order
        assert set(fi[j].tolist()) == set(ei[j].tolist()) or np.allclose(fd[j], ed[j], atol=1e-6)
        assert fi[j, 0] == ei[j, 0]

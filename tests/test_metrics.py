"""Metrics against straightforward reference implementations on random data (ties, 0 labels, no positives)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from texttopicnet.evaluation.metrics import average_precision, chance_ap, retrieval_map, voc07_ap


def ref_voc07_ap(scores, labels):
    """The devkit's loop, item by item, on the non-0 items; ties: score groups ranked together."""
    s = np.asarray(scores, float)
    y = np.asarray(labels)
    s, y = s[y != 0], y[y != 0]
    npos = int((y == 1).sum())
    if npos == 0:
        return 0.0
    recs, precs = [], []
    for thr in sorted(set(s.tolist()), reverse=True):
        sel = s >= thr
        tp = int(((y == 1) & sel).sum())
        recs.append(tp / npos)
        precs.append(tp / int(sel.sum()))
    ap = 0.0
    for k in range(11):
        t = k / 10
        ps = [p for r, p in zip(recs, precs) if r >= t - 1e-12]
        ap += (max(ps) if ps else 0.0) / 11
    return ap


def ref_retrieval_ap(dist_row, rel_row):
    """Rank by distance; every relevant item's precision counts all items at distance <= its own."""
    aps = []
    for j in np.flatnonzero(rel_row):
        le = dist_row <= dist_row[j]
        aps.append((le & rel_row).sum() / le.sum())
    return float(np.mean(aps)) if aps else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_voc07_and_plain_ap_match_references(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    # seeds 0-2: continuous scores; 3-5: heavy ties (few distinct values)
    scores = rng.normal(size=n) if seed < 3 else rng.integers(0, 4, size=n).astype(float)
    labels = rng.choice([1, -1, -1, 0], size=n)
    labels[0] = 1
    assert voc07_ap(scores, labels) == pytest.approx(ref_voc07_ap(scores, labels), abs=1e-12)
    keep = labels != 0
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels[keep] == 1, scores[keep]), abs=1e-12)


def test_zero_labels_are_ignored_not_counted_as_negatives():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    labels = np.array([0, 1, -1, 1])
    # with the 0 item dropped: ranking is +, -, + -> plain AP = (1 + 2/3) / 2
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    labels_wrong = np.array([-1, 1, -1, 1])  # what counting it as a negative would give
    assert average_precision(scores, labels_wrong) < average_precision(scores, labels)


def test_perfect_and_worst_rankings():
    labels = np.array([1, 1, -1, -1, -1])
    assert voc07_ap([5, 4, 3, 2, 1], labels) == pytest.approx(1.0)
    assert average_precision([5, 4, 3, 2, 1], labels) == pytest.approx(1.0)
    worst = voc07_ap([1, 2, 3, 4, 5], labels)
    assert 0.0 < worst < 0.5


def test_all_tied_scores_give_prevalence():
    labels = np.array([1, -1, -1, 1, -1, -1, 0])
    assert average_precision(np.zeros(7), labels) == pytest.approx(2 / 6)
    # order-independent: permuting tied items changes nothing
    perm = np.random.default_rng(0).permutation(7)
    assert voc07_ap(np.zeros(7), labels[perm]) == pytest.approx(voc07_ap(np.zeros(7), labels))


def test_no_positive_class_is_zero_not_nan():
    labels = np.array([-1, -1, 0])
    assert voc07_ap([0.3, 0.2, 0.1], labels) == 0.0
    assert average_precision([0.3, 0.2, 0.1], labels) == 0.0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="length"):
        voc07_ap([1, 2], [1])
    with pytest.raises(ValueError, match="NaN"):
        average_precision([np.nan, 1], [1, -1])
    with pytest.raises(ValueError, match="1, -1 or 0"):
        voc07_ap([1, 2], [1, 2])


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_map_matches_reference_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    nq, ndb = 17, 60
    d = rng.random((nq, ndb)) if seed % 2 == 0 else rng.integers(0, 5, (nq, ndb)).astype(float)  # ties
    ql, dl = rng.integers(0, 4, nq), rng.integers(0, 4, ndb)
    rel = ql[:, None] == dl[None, :]
    ref = np.mean([ref_retrieval_ap(d[i], rel[i]) for i in range(nq)])
    assert retrieval_map(d, ql, dl) == pytest.approx(ref, abs=1e-12)
    sk = np.mean([average_precision_score(rel[i], -d[i]) if rel[i].any() else 0.0 for i in range(nq)])
    assert retrieval_map(d, ql, dl) == pytest.approx(sk, abs=1e-12)


def test_retrieval_query_without_relevant_items_scores_zero():
    d = np.array([[0.1, 0.2], [0.3, 0.1]])
    assert retrieval_map(d, [5, 1], [1, 2]) == pytest.approx((0.0 + 0.5) / 2)


def test_chance_ap_matches_simulation():
    rng = np.random.default_rng(0)
    n, r = 40, 7
    rel = np.zeros(n, bool)
    rel[:r] = True
    sims = [ref_retrieval_ap(rng.random(n), rel) for _ in range(4000)]
    assert float(chance_ap(r, n)) == pytest.approx(np.mean(sims), abs=0.01)
    assert float(chance_ap(n, n)) == pytest.approx(1.0)
    assert float(chance_ap(0, n)) == 0.0


@pytest.mark.parametrize("kind", ["uniform", "ties", "signed", "zeros"])
def test_vectorised_float32_path_equals_row_loop(kind):
    """float32 blocks use packed integer keys; float64 uses the per-row loop: same APs, same ties."""
    from texttopicnet.evaluation.metrics import retrieval_ap_rows

    rng = np.random.default_rng(5)
    shape = (30, 200)
    d = {"uniform": rng.random(shape), "ties": rng.integers(0, 6, shape) * 1.0,
         "signed": rng.normal(size=shape) * rng.choice([1e-30, 1.0, 1e20], size=shape),
         "zeros": np.where(rng.random(shape) < 0.5, -0.0, 0.0)}[kind].astype(np.float32)
    rel = rng.random(shape) < 0.2
    rel[0] = False  # a query without relevant items
    fast = retrieval_ap_rows(d, rel)
    loop = retrieval_ap_rows(d.astype(np.float64), rel)
    np.testing.assert_allclose(fast, loop, atol=1e-12)
    ref = [ref_retrieval_ap(d[i].astype(np.float64), rel[i]) for i in range(shape[0])]
    np.testing.assert_allclose(fast, ref, atol=1e-12)

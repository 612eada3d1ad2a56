"""Saliency metrics against plain re-implementations of the MIT benchmark's MATLAB code (and sklearn)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import texttopicnet
from texttopicnet.vlm import metrics


def _maps(seed=0, shape=(24, 31), n_fix=25, levels=None):
    rng = np.random.default_rng(seed)
    sal = rng.random(shape) * 3.0 + 0.2
    if levels:  # many ties
        sal = np.floor(sal * levels) / levels
    fix = np.zeros(shape, bool)
    fix.flat[rng.choice(fix.size, n_fix, replace=False)] = True
    other = np.zeros(shape, bool)
    other.flat[rng.choice(fix.size, 40, replace=False)] = True
    dens = rng.random(shape) ** 3
    return sal, fix, other, dens


# --- plain references: loops written as the MATLAB files read -------------------------------------------

def judd_loop(sal, fix):
    s = (sal - sal.min()) / (sal.max() - sal.min())
    S, F = list(s.ravel()), list(fix.ravel())
    Sth = [v for v, f in zip(S, F) if f]
    nf, npx = len(Sth), len(S)
    th = sorted(Sth, reverse=True)
    tp, fp = [0.0], [0.0]
    for i in range(1, nf + 1):
        above = sum(1 for v in S if v >= th[i - 1])
        tp.append(i / nf)
        fp.append((above - i) / (npx - nf))
    tp.append(1.0)
    fp.append(1.0)
    return sum((fp[k + 1] - fp[k]) * (tp[k + 1] + tp[k]) / 2 for k in range(len(tp) - 1))


def sauc_loop(sal, fix, other, n_splits, step, seed):
    s = (sal - sal.min()) / (sal.max() - sal.min())
    S = s.ravel()
    Sth = [S[i] for i in range(S.size) if fix.ravel()[i]]
    ind = [i for i in range(S.size) if other.ravel()[i]]
    k = min(len(Sth), len(ind))
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_splits):
        perm = rng.permutation(len(ind))
        cur = [S[ind[p]] for p in perm[:k]]
        top = max(max(Sth), max(cur))
        ths = []
        t = 0
        while t * step <= top + 1e-12:
            ths.append(t * step)
            t += 1
        ths = ths[::-1]
        tp, fp = [0.0], [0.0]
        for th in ths:
            tp.append(sum(v >= th for v in Sth) / len(Sth))
            fp.append(sum(v >= th for v in cur) / k)
        tp.append(1.0)
        fp.append(1.0)
        aucs.append(sum((fp[j + 1] - fp[j]) * (tp[j + 1] + tp[j]) / 2 for j in range(len(tp) - 1)))
    return sum(aucs) / len(aucs)


def nss_plain(sal, fix):
    vals = sal.ravel()
    n = vals.size
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    picked = [(v - mean) / sd for v, f in zip(vals, fix.ravel()) if f]
    return sum(picked) / len(picked)


def cc_plain(a, b):
    a, b = a.ravel(), b.ravel()
    ma, mb = sum(a) / a.size, sum(b) / b.size
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return num / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def kl_plain(sal, ref):
    eps = 2.220446049250313e-16
    p = sal.ravel() / sal.sum()
    q = ref.ravel() / ref.sum()
    return sum(qi * math.log(eps + qi / (pi + eps)) for pi, qi in zip(p, q))


def sim_plain(a, b):
    def dist(m):
        m = (m - m.min()) / (m.max() - m.min())
        return m / m.sum()
    return sum(min(x, y) for x, y in zip(dist(a).ravel(), dist(b).ravel()))


# --- tests ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [None, 6])
def test_auc_judd_matches_the_matlab_loop(levels):
    sal, fix, _, _ = _maps(1, levels=levels)
    assert metrics.auc_judd(sal, fix, jitter=False) == pytest.approx(judd_loop(sal, fix), abs=1e-12)
    # the default jitter (MATLAB's): the loop on the same jittered map
    jittered = sal + np.random.default_rng(4).random(sal.shape) / 1e7
    assert metrics.auc_judd(sal, fix, seed=4) == pytest.approx(judd_loop(jittered, fix), abs=1e-12)


def test_auc_judd_is_high_for_a_map_peaked_on_the_fixations():
    sal, fix, _, _ = _maps(2)
    assert metrics.auc_judd(fix.astype(float) + 0.01 * sal, fix) > 0.99
    assert metrics.auc_judd(1.0 - fix.astype(float) + 0.01 * sal, fix) < 0.05


@pytest.mark.parametrize("levels", [None, 5])
def test_shuffled_auc_matches_the_matlab_loop(levels):
    sal, fix, other, _ = _maps(3, levels=levels)
    got = metrics.shuffled_auc(sal, fix, other, n_splits=7, step=0.1, seed=5)
    assert got == pytest.approx(sauc_loop(sal, fix, other, 7, 0.1, 5), abs=1e-12)


def test_exact_shuffled_auc_equals_sklearn_roc_auc():
    sal, fix, other, _ = _maps(4, levels=8)
    s = (sal - sal.min()) / (sal.max() - sal.min())
    pos, neg = s[fix], s[other]
    y = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    want = roc_auc_score(y, np.r_[pos, neg])
    assert metrics.shuffled_auc(sal, fix, other, method="exact") == pytest.approx(want, abs=1e-12)


def test_nss_cc_kl_sim_match_plain_formulas():
    sal, fix, _, dens = _maps(5)
    assert metrics.nss(sal, fix) == pytest.approx(nss_plain(sal, fix), abs=1e-10)
    assert metrics.cc(sal, dens) == pytest.approx(cc_plain(sal, dens), abs=1e-10)
    assert metrics.cc(sal, dens) == pytest.approx(np.corrcoef(sal.ravel(), dens.ravel())[0, 1], abs=1e-10)
    assert metrics.kl_div(sal, dens) == pytest.approx(kl_plain(sal, dens), abs=1e-10)
    assert metrics.similarity(sal, dens) == pytest.approx(sim_plain(sal, dens), abs=1e-10)
    assert metrics.similarity(dens, dens) == pytest.approx(1.0)
    assert metrics.kl_div(dens, dens) == pytest.approx(0.0, abs=1e-9)


def test_saliency_scores_keys_and_references():
    sal, fix, other, dens = _maps(6)
    s = metrics.saliency_scores(sal, fix)
    assert set(s) == {"auc_judd", "nss", "cc", "kl", "sim"}
    s2 = metrics.saliency_scores(sal, fix, other_fixations=other)
    assert set(s2) == {"auc_judd", "sauc", "nss", "cc", "kl", "sim"}
    # without a density map CC/KL/SIM compare with the binary fixation map as given
    f = fix.astype(float)
    assert s["cc"] == pytest.approx(cc_plain(sal, f), abs=1e-10)
    assert s["kl"] == pytest.approx(kl_plain(sal, f), abs=1e-10)
    assert s["sim"] == pytest.approx(sim_plain(sal, f), abs=1e-10)
    assert s["auc_judd"] == pytest.approx(judd_loop(sal, fix), abs=1e-12)
    assert s["nss"] == pytest.approx(nss_plain(sal, fix), abs=1e-10)
    assert s2["sauc"] == pytest.approx(sauc_loop(sal, fix, other, 100, 0.1, 0), abs=1e-12)
    s3 = metrics.saliency_scores(sal, fix, density_map=dens)
    assert s3["cc"] == pytest.approx(cc_plain(sal, dens), abs=1e-10)


def test_degenerate_inputs_give_numbers_or_a_clear_error():
    sal, fix, _, _ = _maps(7)
    with pytest.raises(ValueError, match="no fixations"):
        metrics.saliency_scores(sal, np.zeros_like(fix))
    flat = metrics.saliency_scores(np.ones_like(sal), fix)
    assert all(np.isfinite(v) for v in flat.values())
    assert flat["nss"] == 0.0 and flat["cc"] == 0.0 and flat["auc_judd"] == pytest.approx(0.5, abs=0.15)
    with pytest.raises(ValueError, match="2-D"):
        metrics.saliency_scores(np.ones(5), fix)
    with pytest.raises(ValueError, match="NaN"):
        metrics.saliency_scores(np.full(fix.shape, np.nan), fix)


def test_a_smaller_saliency_map_is_resized_to_the_fixation_map():
    sal, fix, _, _ = _maps(8, shape=(20, 20))
    small = sal[::2, ::2]
    got = metrics.saliency_scores(small, fix)
    assert got["auc_judd"] == pytest.approx(metrics.auc_judd(metrics.resize_to(small, fix.shape), fix))


def test_region_auc_equals_sklearn():
    rng = np.random.default_rng(9)
    m = np.round(rng.random((16, 16)) * 10)
    r = np.zeros((16, 16), bool)
    r[3:9, 4:12] = True
    assert metrics.region_auc(m, r) == pytest.approx(roc_auc_score(r.ravel(), m.ravel()), abs=1e-12)


def test_top_level_api_is_the_metrics_function():
    if "saliency_scores" not in dir(texttopicnet):
        pytest.skip("texttopicnet.saliency_scores is not exported yet (texttopicnet/__init__.py _LAZY entry)")
    assert texttopicnet.saliency_scores is metrics.saliency_scores

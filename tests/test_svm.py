"""The SVM protocols on generated features, and VOC label handling on the real official label files.

The release's own rules, re-implemented plainly, are checked in test_svm_release.py."""

from __future__ import annotations

import numpy as np
import pytest

from texttopicnet.data.readers.voc import load_voc_split
from texttopicnet.evaluation.metrics import voc07_ap
from texttopicnet.evaluation.svm import DEFAULT_C_GRID, PROTOCOLS, fit_score, run_protocol


def _data(rng, n, n_cls, dim, signal):
    """Multi-label data: class j present -> +signal on feature j. Labels {1,-1} with some 0."""
    Y = np.where(rng.random((n, n_cls)) < 0.3, 1, -1).astype(np.int8)
    Y[rng.random((n, n_cls)) < 0.05] = 0
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X[:, :n_cls] += signal * (Y == 1)
    return X, Y


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_protocol_learns_informative_features_and_not_noise(protocol):
    rng = np.random.default_rng(0)
    sets = [_data(rng, n, 4, 30, 4.0) for n in (120, 80, 150)]
    res = run_protocol(*sets[0], *sets[1], *sets[2], ["a", "b", "c", "d"], workers=1, progress=False,
                       protocol=protocol)
    assert res["protocol"] == protocol
    assert res["map"] > 0.9 and set(res["chosen_C"].values()) <= set(DEFAULT_C_GRID)
    # the release's AP counts the (signal-free) 0-labelled items as positives: lower, still far above chance
    assert set(res["ap"]) == set(res["release_ap"]) == {"a", "b", "c", "d"} and 0.6 < res["release_map"] < res["map"]
    noise = [_data(rng, n, 4, 30, 0.0) for n in (120, 80, 150)]
    res0 = run_protocol(*noise[0], *noise[1], *noise[2], ["a", "b", "c", "d"], workers=1, progress=False,
                        protocol=protocol)
    assert res0["map"] < 0.6  # no signal: near the ~0.3 prevalence, far below the informative case


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("dim", [20, 300])
def test_parallel_equals_serial(protocol, dim):
    """dim 300 > n: where liblinear's dual solver (one process-global RNG) would race between threads."""
    rng = np.random.default_rng(1)
    sets = [_data(rng, n, 3, dim, 1.0) for n in (60, 40, 70)]
    a = run_protocol(*sets[0], *sets[1], *sets[2], list("xyz"), workers=1, progress=False, protocol=protocol)
    b = run_protocol(*sets[0], *sets[1], *sets[2], list("xyz"), workers=2, progress=False, protocol=protocol)
    assert a["chosen_C"] == b["chosen_C"] and a["ap"] == b["ap"] and a["val_ap"] == b["val_ap"]
    np.testing.assert_array_equal(a["test_scores"], b["test_scores"])


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_chosen_C_is_the_val_best(protocol):
    rng = np.random.default_rng(2)
    sets = [_data(rng, n, 2, 200, 0.7) for n in (50, 60, 60)]
    grid = [1e-5, 1e-2, 10.0]
    res = run_protocol(*sets[0], *sets[1], *sets[2], ["p", "q"], c_grid=grid, progress=False, protocol=protocol)
    for cls in ("p", "q"):
        vals = res["val_ap"][cls]
        assert res["chosen_C"][cls] == grid[int(np.argmax([vals[f"{c:.6g}"] for c in grid]))]


def test_difficult_labels_are_left_out_of_training():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5))
    y = np.where(X[:, 0] > 0, 1, -1)
    s_clean, _ = fit_score(X, y, X, C=1.0)
    y0 = y.copy()
    y0[:10] = 0  # marked difficult: must not influence the classifier
    s_drop, _ = fit_score(X, y0, X, C=1.0)
    s_ref, _ = fit_score(X[10:], y[10:], X, C=1.0)
    np.testing.assert_allclose(s_drop, s_ref)
    assert voc07_ap(s_clean, y) > 0.9


def test_untrainable_class_and_no_test_positive_are_reported():
    rng = np.random.default_rng(4)
    (Xa, Ya), (Xb, Yb), (Xc, Yc) = [_data(rng, n, 3, 10, 3.0) for n in (30, 30, 30)]
    Ya[:, 2] = -1
    Yb[:, 2] = -1  # class 2 never positive in train+val
    Yc[:, 1] = -1  # class 1 never positive in test
    res = run_protocol(Xa, Ya, Xb, Yb, Xc, Yc, ["a", "b", "c"], progress=False)
    assert res["untrainable_classes"] == ["c"]
    assert res["classes_without_test_positives"] == ["b"]
    assert res["map"] == pytest.approx((res["ap"]["a"] + res["ap"]["c"]) / 2)
    assert np.isfinite(res["map"])


def test_bad_features_raise():
    X = np.ones((4, 3))
    Y = np.ones((4, 2), np.int8)
    with pytest.raises(ValueError, match="align"):
        run_protocol(X, Y[:3], X, Y, X, Y, ["a", "b"], progress=False)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_protocol(Xn, Y, X, Y, X, Y, ["a", "b"], progress=False)
    with pytest.raises(ValueError, match="repeats"):
        run_protocol(X, Y, X, Y, X, Y, ["a", "b"], c_grid=[1.0, 1.0], progress=False)
    with pytest.raises(ValueError, match="unknown SVM protocol"):
        run_protocol(X, Y, X, Y, X, Y, ["a", "b"], protocol="paper", progress=False)


def test_official_voc_label_files(shared_data):
    """The real ImageSets/Main: sizes, 0 labels present, and rows agree with a direct read of a class file."""
    root = shared_data / "voc2007"
    tv, te = load_voc_split(root, "trainval"), load_voc_split(root, "test")
    assert (len(tv.ids), len(te.ids)) == (5011, 4952) and len(tv.classes) == 20
    assert set(np.unique(te.labels)) == {-1, 0, 1}
    j = tv.classes.index("chair")
    raw = dict(line.split() for line in (root / "ImageSets" / "Main" / "chair_trainval.txt").read_text().splitlines()
               if line.strip())
    assert all(int(raw[i]) == tv.labels[k, j] for k, i in enumerate(tv.ids))
    # every image has at least one class present or difficult-only (VOC images all contain an object)
    assert ((te.labels == 1) | (te.labels == 0)).any(axis=1).all()

"""Linear-SVM classification on CNN features, the paper's VOC2007 protocol, with parallel fits.

Protocol (REFERENCE.md, as the original release): ``StandardScaler`` then one ``LinearSVC``
per class (one-vs-rest); C is chosen per class on val (trained on train) from
{0.5^13, ..., 0.5^18}; the chosen C is retrained on train+val (scaler refit there) and
scores test. Images labelled 0 for a class ("difficult only") are left out of that
class's training set and ignored by the AP, as the official devkit ignores them.

The (class x C) grid and the final per-class fits are independent, so they run in
parallel (joblib threads: liblinear releases the GIL, and the features are shared, not copied).

Example::

    from texttopicnet.evaluation.svm import run_protocol
    res = run_protocol(Xtr, Ytr, Xval, Yval, Xte, Yte, classes, workers=2)
    res["map"], res["chosen_C"]
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from .metrics import average_precision, voc07_ap

# The original release's grid: C = 0.5^13 ... 0.5^18 (small C: strong regularisation
# suits 4096-9216-d standardised features with ~2.5k training images).
DEFAULT_C_GRID = tuple(0.5 ** k for k in range(13, 19))


def standardise(fit_on: np.ndarray, *apply_to: np.ndarray) -> list[np.ndarray]:
    """Fit a StandardScaler on ``fit_on`` and transform it and every other array (float64)."""
    sc = StandardScaler().fit(fit_on)
    # float64 C-order once: liblinear needs it, and LinearSVC would otherwise copy X on every fit
    return [np.ascontiguousarray(sc.transform(a), dtype=np.float64) for a in (fit_on, *apply_to)]


def fit_score(X: np.ndarray, y: np.ndarray, X_eval: np.ndarray, C: float, seed: int = 0,
              max_iter: int = 1000) -> tuple[np.ndarray, bool]:
    """Train one binary LinearSVC on the items with y != 0; return (decision values on X_eval, converged).

    A class whose training items are all one label cannot be trained: its scores are all
    zero (every item tied, AP = prevalence), and it is reported, not fatal.
    """
    keep = y != 0
    yk = y[keep]
    if np.unique(yk).size < 2:
        return np.zeros(len(X_eval), dtype=np.float64), False
    clf = LinearSVC(C=C, random_state=seed, max_iter=max_iter, dual="auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X if keep.all() else X[keep], (yk == 1).astype(np.int8))  # no 0 labels: no copy
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf.decision_function(X_eval).astype(np.float64), converged


def _grid_job(X, Y, Xv, Yv, j, C, seed):
    scores, conv = fit_score(X, Y[:, j], Xv, C, seed)
    return j, C, voc07_ap(scores, Yv[:, j]), conv


def _final_job(X, Y, Xt, j, C, seed):
    scores, conv = fit_score(X, Y[:, j], Xt, C, seed)
    return j, scores, conv


def _check(X, Y, name):
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"{name}: features {X.shape} and labels {Y.shape} do not align")
    if len(X) == 0:
        raise ValueError(f"{name}: no images")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: features contain NaN or infinite values")


def run_protocol(X_train, Y_train, X_val, Y_val, X_test, Y_test, classes: Sequence[str],
                 c_grid: Sequence[float] = DEFAULT_C_GRID, workers: int = 1, seed: int = 0,
                 progress: bool = True) -> dict:
    """The full protocol; returns plain data (per-class official and plain AP, chosen C, means).

    ``Y_*`` are int (N, C) in {1, -1, 0}. ``workers`` > 1 runs the fits in parallel processes.
    """
    for X, Y, n in ((X_train, Y_train, "train"), (X_val, Y_val, "val"), (X_test, Y_test, "test")):
        _check(X, Y, n)
    if not c_grid:
        raise ValueError("empty C grid")
    classes = list(classes)
    n_cls = len(classes)
    # Threads, not processes: liblinear trains without the GIL, so threads run the fits in
    # parallel while sharing the feature matrices (processes would pickle or memory-map them
    # for every job). Unordered generator: the progress bar moves as fits finish.
    par = Parallel(n_jobs=max(1, workers), backend="threading", verbose=0, return_as="generator_unordered")

    # 1) choose C per class on val, trained on train
    Xtr, Xv = standardise(X_train, X_val)
    jobs = [delayed(_grid_job)(Xtr, Y_train, Xv, Y_val, j, C, seed) for j in range(n_cls) for C in c_grid]
    val_ap = np.zeros((n_cls, len(c_grid)))
    not_converged = 0
    for j, C, ap, conv in _progress(par(jobs), len(jobs), "SVM C grid", progress):
        val_ap[j, list(c_grid).index(C)] = ap
        not_converged += (not conv)
    # first best in grid order (largest C first in the default grid) on ties
    best = val_ap.argmax(axis=1)
    chosen = {cls: float(c_grid[best[j]]) for j, cls in enumerate(classes)}

    # 2) retrain on train+val with the chosen C, score test
    X_tv = np.concatenate([X_train, X_val])
    Y_tv = np.concatenate([Y_train, Y_val])
    Xtv, Xte = standardise(X_tv, X_test)
    jobs = [delayed(_final_job)(Xtv, Y_tv, Xte, j, chosen[cls], seed) for j, cls in enumerate(classes)]
    test_scores = np.zeros((len(X_test), n_cls))
    untrainable = []
    for j, scores, conv in _progress(par(jobs), len(jobs), "SVM final", progress):
        test_scores[:, j] = scores
        if np.unique(Y_tv[:, j][Y_tv[:, j] != 0]).size < 2:
            untrainable.append(classes[j])
        elif not conv:
            not_converged += 1

    ap = {c: voc07_ap(test_scores[:, j], Y_test[:, j]) for j, c in enumerate(classes)}
    plain = {c: average_precision(test_scores[:, j], Y_test[:, j]) for j, c in enumerate(classes)}
    no_pos = [c for j, c in enumerate(classes) if not (Y_test[:, j] == 1).any()]
    scored = [c for c in classes if c not in no_pos] or classes
    return {
        "classes": classes,
        "ap": ap,
        "map": float(np.mean([ap[c] for c in scored])),
        "plain_ap": plain,
        "plain_map": float(np.mean([plain[c] for c in scored])),
        "chosen_C": chosen,
        "val_ap": {c: {f"{C:.6g}": float(val_ap[j, k]) for k, C in enumerate(c_grid)}
                   for j, c in enumerate(classes)},
        "c_grid": [float(c) for c in c_grid],
        "classes_without_test_positives": no_pos,
        "untrainable_classes": untrainable,
        "fits_not_converged": int(not_converged),
        "test_scores": test_scores,
    }


def _progress(it, total, desc, enabled):
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, disable=not enabled)

"""Linear-SVM classification on CNN features, the paper's VOC2007 protocol, with parallel fits.

Shared by every protocol (REFERENCE.md, as the original release): ``StandardScaler`` fitted
on train, one ``LinearSVC`` per class (one-vs-rest) for each C of {0.5^13, ..., 0.5^18},
trained on train and scored on val; the chosen C is retrained on train+val (scaler refit
there) and scores test. Protocols (:data:`PROTOCOLS`) differ in which labels train the SVMs
and which AP picks C:

- ``release`` (default): the original release's ``voc_2007_classification.py``. Its label
  parsing (``line.split(' ')``, see :func:`texttopicnet.data.readers.voc.release_label`)
  makes difficult-only images (label 0) POSITIVES; C is picked by scikit-learn's
  ``average_precision_score`` on val with those labels.
- ``voc``: difficult-only images are left out of each class's training set and C is
  picked by the official 11-point AP on val (0 labels ignored), as the VOC devkit scores.

Both protocols report, on the same test scores, the official VOC2007 11-point AP (0 labels
ignored: ``ap``/``map``) and the AP the release printed (scikit-learn AP with difficult
as positives: ``release_ap``/``release_map``).

C choice (both protocols, the release's rule): walk the grid in order and keep a C only
when its val AP is strictly greater than the best so far, starting from 0 (first best
wins on ties). The release leaves C = -1 when no C beats 0 (val AP 0 for every C: no
positive val image) and then crashes in ``LinearSVC(C=-1)``; here the first grid value is
used instead and the class is listed in ``c_fallback_classes``.

The (class x C) grid and the final per-class fits are independent, so they run in
parallel (joblib threads: liblinear releases the GIL, and the features are shared, not copied).
Every fit uses liblinear's primal solver (``dual=False``): its dual coordinate descent (the
release's scikit-learn default) shuffles with ONE process-global random generator
(scikit-learn's ``newrand`` ``mt_rand``), so dual fits running in threads draw from each
other's stream and are not reproducible. The primal solver draws nothing, and it solves the
same strongly convex problem (L2-regularised squared hinge, bias regularised), so decision
values agree with the dual solver to liblinear's tolerance (about 1e-6 relative, measured
in tests/test_svm_release.py). Results are identical for any ``workers``.

Example::

    from texttopicnet.evaluation.svm import run_protocol
    res = run_protocol(Xtr, Ytr, Xval, Yval, Xte, Yte, classes, workers=2,
                       release_labels=(Rtr, Rval, Rte))     # voc.load_release_labels
    res["map"], res["release_map"], res["chosen_C"]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from .metrics import voc07_ap

# The original release's grid: C = 0.5^13 ... 0.5^18 (small C: strong regularisation
# suits 4096-9216-d standardised features with ~2.5k training images).
DEFAULT_C_GRID = tuple(0.5 ** k for k in range(13, 19))


def release_ap(scores, targets) -> float:
    """The AP the release printed: scikit-learn ``average_precision_score`` on 1/0 targets.

    No positive target -> 0.0 (scikit-learn's value; its warning is silenced here).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ap = float(average_precision_score(np.asarray(targets) == 1, np.asarray(scores, dtype=np.float64)))
    return ap + 0.0 if np.isfinite(ap) else 0.0  # + 0.0: no -0.0 in the results


@dataclass(frozen=True)
class Protocol:
    """How one protocol trains and picks C. ``raw`` labels are {1, -1, 0}; ``rel`` the release's {1, 0}."""

    name: str
    description: str
    train_targets: Callable[[np.ndarray, np.ndarray], np.ndarray]  # -> {1, -1, 0}; 0 = left out of training
    val_ap: Callable[[np.ndarray, np.ndarray, np.ndarray], float]   # (scores, raw column, rel column)
    val_metric: str


PROTOCOLS: dict[str, Protocol] = {
    "release": Protocol(
        name="release",
        description="the original release (voc_2007_classification.py): labels parsed with line.split(' '), so "
                    "difficult-only images train as positives; C by scikit-learn AP on val with those labels",
        train_targets=lambda raw, rel: np.where(rel == 1, 1, -1).astype(np.int8),
        val_ap=lambda s, raw, rel: release_ap(s, rel),
        val_metric="sklearn average_precision_score, difficult as positives"),
    "voc": Protocol(
        name="voc",
        description="difficult-only images (label 0) left out of training; C by the official VOC2007 "
                    "11-point AP on val (0 labels ignored)",
        train_targets=lambda raw, rel: raw,
        val_ap=lambda s, raw, rel: voc07_ap(s, raw),
        val_metric="VOC2007 11-point AP, difficult ignored"),
}
DEFAULT_PROTOCOL = "release"


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown SVM protocol {name!r}; expected one of {', '.join(PROTOCOLS)}") from None


def standardise(fit_on: np.ndarray, *apply_to: np.ndarray) -> list[np.ndarray]:
    """Fit a StandardScaler on ``fit_on`` and transform it and every other array (float64)."""
    sc = StandardScaler().fit(fit_on)
    # float64 C-order once: liblinear needs it, and LinearSVC would otherwise copy X on every fit
    return [np.ascontiguousarray(sc.transform(a), dtype=np.float64) for a in (fit_on, *apply_to)]


def fit_score(X: np.ndarray, y: np.ndarray, X_eval: np.ndarray, C: float, seed: int = 0,
              max_iter: int = 1000, dual: bool | str = False) -> tuple[np.ndarray, bool]:
    """Train one binary LinearSVC on the items with y != 0; return (decision values on X_eval, converged).

    A class whose training items are all one label cannot be trained: its scores are all
    zero (every item tied, AP = prevalence), and it is reported, not fatal. ``dual=False``
    (the primal solver) keeps threaded fits reproducible (see the module docstring).
    """
    keep = y != 0
    yk = y[keep]
    if np.unique(yk).size < 2:
        return np.zeros(len(X_eval), dtype=np.float64), False
    clf = LinearSVC(C=C, random_state=seed, max_iter=max_iter, dual=dual)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X if keep.all() else X[keep], (yk == 1).astype(np.int8))  # no 0 labels: no copy
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf.decision_function(X_eval).astype(np.float64), converged


def choose_c(val_aps: Sequence[float], c_grid: Sequence[float]) -> tuple[float, bool]:
    """The release's rule: first C whose val AP beats the best so far (from 0). Returns (C, fell_back)."""
    best_ap, best = 0.0, None
    for C, ap in zip(c_grid, val_aps):
        if ap > best_ap:
            best_ap, best = ap, C
    if best is None:  # the release's C = -1 case: no C beats AP 0
        return float(c_grid[0]), True
    return float(best), False


def _grid_job(X, T, Xv, Yv, Rv, proto, j, k, C, seed):
    scores, conv = fit_score(X, T[:, j], Xv, C, seed)
    return j, k, proto.val_ap(scores, Yv[:, j], Rv[:, j]), conv


def _final_job(X, T, Xt, j, C, seed):
    scores, conv = fit_score(X, T[:, j], Xt, C, seed)
    return j, scores, conv


def _check(X, Y, R, name):
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"{name}: features {X.shape} and labels {Y.shape} do not align")
    if R.shape != Y.shape:
        raise ValueError(f"{name}: release labels {R.shape} and labels {Y.shape} do not align")
    if len(X) == 0:
        raise ValueError(f"{name}: no images")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name}: features contain NaN or infinite values")


def run_protocol(X_train, Y_train, X_val, Y_val, X_test, Y_test, classes: Sequence[str],
                 c_grid: Sequence[float] = DEFAULT_C_GRID, workers: int = 1, seed: int = 0,
                 progress: bool = True, protocol: str = DEFAULT_PROTOCOL, release_labels=None) -> dict:
    """The full protocol; returns plain data (per-class official and release AP, chosen C, means).

    ``Y_*`` are the raw int (N, C) labels in {1, -1, 0}. ``release_labels`` = (train, val, test)
    (N, C) in {1, 0} read with the release's rule (``voc.load_release_labels``); when None they
    are derived as ``Y != -1``, which is what that rule gives on files padded like the official
    ones. ``workers`` > 1 runs the fits in parallel threads.
    """
    proto = get_protocol(protocol)
    if release_labels is None:
        release_labels = tuple((np.asarray(Y) != -1).astype(np.uint8) for Y in (Y_train, Y_val, Y_test))
    R_train, R_val, R_test = (np.asarray(R) for R in release_labels)
    for X, Y, R, n in ((X_train, Y_train, R_train, "train"), (X_val, Y_val, R_val, "val"),
                       (X_test, Y_test, R_test, "test")):
        _check(X, Y, R, n)
    if not c_grid or len(set(c_grid)) != len(c_grid):
        raise ValueError(f"the C grid must be non-empty without repeats; got {list(c_grid)}")
    classes = list(classes)
    n_cls = len(classes)
    # Threads, not processes: liblinear trains without the GIL, so threads run the fits in
    # parallel while sharing the feature matrices (processes would pickle or memory-map them
    # for every job). Unordered generator: the progress bar moves as fits finish; results are
    # stored by (class, C) index, so the order they arrive in changes nothing.
    par = Parallel(n_jobs=max(1, workers), backend="threading", verbose=0, return_as="generator_unordered")

    # 1) choose C per class on val, trained on train
    Xtr, Xv = standardise(X_train, X_val)
    T_train = proto.train_targets(Y_train, R_train)
    jobs = [delayed(_grid_job)(Xtr, T_train, Xv, Y_val, R_val, proto, j, k, C, seed)
            for j in range(n_cls) for k, C in enumerate(c_grid)]
    val_ap = np.zeros((n_cls, len(c_grid)))
    not_converged = 0
    for j, k, ap, conv in _progress(par(jobs), len(jobs), "SVM C grid", progress):
        val_ap[j, k] = ap
        not_converged += (not conv)
    chosen, fallback = {}, []
    for j, cls in enumerate(classes):
        chosen[cls], fell_back = choose_c(val_ap[j], c_grid)
        if fell_back:
            fallback.append(cls)

    # 2) retrain on train+val with the chosen C, score test
    X_tv = np.concatenate([X_train, X_val])
    T_tv = np.concatenate([T_train, proto.train_targets(Y_val, R_val)])
    Xtv, Xte = standardise(X_tv, X_test)
    jobs = [delayed(_final_job)(Xtv, T_tv, Xte, j, chosen[cls], seed) for j, cls in enumerate(classes)]
    test_scores = np.zeros((len(X_test), n_cls))
    untrainable = []
    for j, scores, conv in _progress(par(jobs), len(jobs), "SVM final", progress):
        test_scores[:, j] = scores
        if np.unique(T_tv[:, j][T_tv[:, j] != 0]).size < 2:
            untrainable.append(classes[j])
        elif not conv:
            not_converged += 1
    untrainable = [c for c in classes if c in untrainable]  # class order, not finishing order

    ap = {c: voc07_ap(test_scores[:, j], Y_test[:, j]) for j, c in enumerate(classes)}
    rel = {c: release_ap(test_scores[:, j], R_test[:, j]) for j, c in enumerate(classes)}
    no_pos = [c for j, c in enumerate(classes) if not (Y_test[:, j] == 1).any()]
    scored = [c for c in classes if c not in no_pos] or classes
    best_val = val_ap.max(axis=1)
    return {
        "protocol": proto.name,
        "protocol_description": proto.description,
        "classes": classes,
        "ap": ap,
        "map": float(np.mean([ap[c] for c in scored])),
        # the release printed the mean over all classes (its mAP2 / len(classes))
        "release_ap": rel,
        "release_map": float(np.mean([rel[c] for c in classes])),
        "chosen_C": chosen,
        "c_fallback_classes": fallback,
        "val_metric": proto.val_metric,
        "val_ap": {c: {f"{C:.6g}": float(val_ap[j, k]) for k, C in enumerate(c_grid)}
                   for j, c in enumerate(classes)},
        "val_map": float(np.mean(best_val)),  # the release's printed "Validation mAP" under --protocol release
        "c_grid": [float(c) for c in c_grid],
        "classes_without_test_positives": no_pos,
        "untrainable_classes": untrainable,
        "fits_not_converged": int(not_converged),
        "test_scores": test_scores,
    }


def _progress(it, total, desc, enabled):
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, disable=not enabled)

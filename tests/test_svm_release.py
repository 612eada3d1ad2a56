"""``--protocol release`` against the original release's rules written out plainly here, on the real
VOC2007 label files (ImageSets/Main from ../shared/data/voc2007) with generated features.

The release (lluisgomez/TextTopicNet, experiments/voc_2007_classification.py), as REFERENCE.md
records it: per class, read ``<class>_<split>.txt`` line by line, ``data = line.split(' ')``,
an empty ``data[1]`` means '1', target ``max(0, int(data[1]))``; StandardScaler fitted on train;
for c in 13..18 a LinearSVC(C=0.5**c) on train, decision values on val, sklearn
average_precision_score on val; keep C when AP > best so far (best starts at 0); refit the
scaler on train+val, LinearSVC(best C) on train+val, decision values on test, printed AP =
average_precision_score with the same targets. The official AP (difficult ignored) is checked
against a plain 11-point loop.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from texttopicnet.data.readers import voc
from texttopicnet.evaluation.svm import run_protocol

CLASSES = ("bottle", "chair", "diningtable", "pottedplant")  # the classes with the most difficult-only images
SUBSET = {"train": 300, "val": 300, "test": 400}


def release_read(path):
    """The release's label loop, plainly: {id: 0/1} in file order."""
    out = {}
    with open(path, newline="") as fh:  # Python 2's open() kept the '\r\n'
        for line in fh.readlines():
            data = line.split(" ")
            if data[1] == "":
                data[1] = "1"
            out[data[0]] = max(0, int(data[1]))
    return out


def eleven_point_ap(scores, raw):
    """VOC2007 AP the slow way: drop 0 labels, rank, max precision at recall >= t, t = 0, 0.1, ..., 1."""
    keep = raw != 0
    s, pos = scores[keep], raw[keep] == 1
    order = np.argsort(-s)
    tp = np.cumsum(pos[order])
    prec = tp / np.arange(1, len(tp) + 1)
    rec = tp / pos.sum()
    return sum(max([p for p, r in zip(prec, rec) if r >= t - 1e-12], default=0.0) for t in np.arange(11) / 10) / 11


def release_protocol(files, feats, grid_exponents=range(13, 19), seed=0):
    """files[split][cls] = label file; feats = {id: vector}. Returns {cls: (best C, test scores, test AP)}."""
    out = {}
    for cls in CLASSES:
        tr, va, te = (release_read(files[s][cls]) for s in ("train", "val", "test"))
        X = np.array([feats[i] for i in tr], dtype=np.float32)
        y = np.array(list(tr.values()), dtype=float)
        XX = np.array([feats[i] for i in va], dtype=np.float32)
        yy = np.array(list(va.values()), dtype=float)
        scaler = StandardScaler().fit(X)
        best_ap, best_c = 0, -1
        for c in grid_exponents:
            # dual=True: the release's scikit-learn (2017) default; random_state: the toolkit's --seed
            clf = LinearSVC(C=pow(0.5, c), dual=True, random_state=seed).fit(scaler.transform(X), y)
            ap = average_precision_score(yy, clf.decision_function(scaler.transform(XX)))
            if ap > best_ap:
                best_ap, best_c = ap, pow(0.5, c)
        X_all = np.concatenate((X, XX))
        scaler = StandardScaler().fit(X_all)
        clf = LinearSVC(C=best_c, dual=True, random_state=seed).fit(scaler.transform(X_all), np.concatenate((y, yy)))
        Xt = np.array([feats[i] for i in te], dtype=np.float32)
        yt = np.array(list(te.values()), dtype=float)
        scores = clf.decision_function(scaler.transform(Xt))
        out[cls] = (best_c, dict(zip(te, scores)), average_precision_score(yt, scores))
    return out


@pytest.fixture(scope="module")
def real_subset(shared_data, tmp_path_factory):
    """ImageSets/Main of a few real classes, the first SUBSET[split] ids of each split, lines copied byte for byte."""
    src = shared_data / "voc2007" / "ImageSets" / "Main"
    root = tmp_path_factory.mktemp("voc_release") / "VOC2007"
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, n in SUBSET.items():
        ids_lines = (src / f"{split}.txt").read_bytes().splitlines(keepends=True)[:n]
        (main / f"{split}.txt").write_bytes(b"".join(ids_lines))
        keep = {line.split()[0].decode() for line in ids_lines}
        for cls in CLASSES:
            rows = [line for line in (src / f"{cls}_{split}.txt").read_bytes().splitlines(keepends=True)
                    if line.split()[0].decode() in keep]
            (main / f"{cls}_{split}.txt").write_bytes(b"".join(rows))
    return root


def _features(root, seed=0, dim=40):
    """One vector per image id, shifted along class axes for present (1) and difficult (0) labels."""
    rng = np.random.default_rng(seed)
    feats = {}
    for split in SUBSET:
        s = voc.load_voc_split(root, split)
        for k, i in enumerate(s.ids):
            v = rng.normal(size=dim)
            v[: len(s.classes)] += 1.2 * (s.labels[k] == 1) + 0.6 * (s.labels[k] == 0)
            feats[i] = v.astype(np.float32)
    return feats


def test_real_subset_has_difficult_images(real_subset):
    te = voc.load_voc_split(real_subset, "test")
    assert te.classes == sorted(CLASSES) and (te.labels == 0).sum() >= 10


@pytest.mark.parametrize("workers", [1, 2])
def test_release_protocol_matches_the_release_rules(real_subset, workers):
    feats = _features(real_subset)
    splits = {s: voc.load_voc_split(real_subset, s) for s in SUBSET}
    X = {s: np.stack([feats[i] for i in splits[s].ids]) for s in SUBSET}
    R = {s: voc.load_release_labels(real_subset, splits[s]) for s in SUBSET}
    res = run_protocol(X["train"], splits["train"].labels, X["val"], splits["val"].labels, X["test"],
                       splits["test"].labels, splits["test"].classes, workers=workers, seed=0, progress=False,
                       protocol="release", release_labels=(R["train"], R["val"], R["test"]))
    main = real_subset / "ImageSets" / "Main"
    files = {s: {c: main / f"{c}_{s}.txt" for c in CLASSES} for s in SUBSET}
    ref = release_protocol(files, feats)
    assert res["protocol"] == "release"
    for j, cls in enumerate(splits["test"].classes):
        best_c, scores, ap = ref[cls]
        assert res["chosen_C"][cls] == best_c
        # ours: liblinear's primal solver (reproducible in threads); the release: its dual solver. Same
        # optimum, so the decision values agree to the solvers' tolerance, and the rankings (APs) exactly.
        ref_scores = np.array([scores[i] for i in splits["test"].ids])
        np.testing.assert_allclose(res["test_scores"][:, j], ref_scores, rtol=0, atol=1e-4 * np.abs(ref_scores).max())
        assert res["release_ap"][cls] == pytest.approx(ap, abs=1e-12)
        raw = splits["test"].labels[:, j]
        assert res["ap"][cls] == pytest.approx(eleven_point_ap(res["test_scores"][:, j], raw), abs=1e-12)
    assert res["release_map"] == pytest.approx(np.mean([ref[c][2] for c in CLASSES]), abs=1e-12)
    assert res["c_fallback_classes"] == []


def test_voc_protocol_differs_only_in_training_labels_and_selection(real_subset):
    """``voc``: difficult images out of training, C by 11-point AP on val; same scaler and grid."""
    feats = _features(real_subset, seed=1)
    splits = {s: voc.load_voc_split(real_subset, s) for s in SUBSET}
    X = {s: np.stack([feats[i] for i in splits[s].ids]) for s in SUBSET}
    Y = {s: splits[s].labels for s in SUBSET}
    args = (X["train"], Y["train"], X["val"], Y["val"], X["test"], Y["test"], splits["test"].classes)
    v = run_protocol(*args, progress=False, protocol="voc")
    r = run_protocol(*args, progress=False, protocol="release")
    assert v["protocol"] == "voc" and v["val_ap"] != r["val_ap"]
    j = splits["test"].classes.index("chair")
    keep = Y["train"][:, j] != 0
    sc = StandardScaler().fit(X["train"])
    for C, ap in v["val_ap"]["chair"].items():
        clf = LinearSVC(C=float(C), random_state=0).fit(sc.transform(X["train"])[keep], Y["train"][keep, j] == 1)
        assert ap == pytest.approx(eleven_point_ap(clf.decision_function(sc.transform(X["val"])), Y["val"][:, j]),
                                   abs=1e-6)


def test_release_parsing_makes_every_zero_line_positive(shared_data):
    """All 80 real class files: the release's reading gives 1 exactly for the lines ending in ' 1' or ' 0'."""
    root = shared_data / "voc2007"
    main = root / "ImageSets" / "Main"
    total_zero = 0
    for split in ("train", "val", "trainval", "test"):
        s = voc.load_voc_split(root, split)
        rel = voc.load_release_labels(root, s)
        row = {i: k for k, i in enumerate(s.ids)}
        for j, cls in enumerate(s.classes):
            lines = (main / f"{cls}_{split}.txt").read_bytes().decode().splitlines()
            zero = [ln.split()[0] for ln in lines if ln.endswith(" 0")]
            one = [ln.split()[0] for ln in lines if ln.endswith(" 1")]
            neg = [ln.split()[0] for ln in lines if ln.endswith(" -1")]
            assert len(zero) + len(one) + len(neg) == len(lines) == len(s.ids)
            assert all(rel[row[i], j] == 1 for i in zero + one) and all(rel[row[i], j] == 0 for i in neg)
            assert int(rel[:, j].sum()) == len(zero) + len(one)
            assert int((s.labels[:, j] == 0).sum()) == len(zero)  # the raw matrix keeps the 0s
            total_zero += len(zero)
    assert total_zero > 1000  # difficult-only entries are common in VOC2007, not an edge case


@pytest.mark.parametrize("line,expected", [
    ("000005  1\r\n", ("000005", 1)), ("007367  0\r\n", ("007367", 1)), ("000001 -1\r\n", ("000001", 0)),
    ("000005 1\n", ("000005", 1)), ("000005 0\n", ("000005", 0)),  # one space: 0 is a negative
    ("000005   -1\n", ("000005", 1)),  # extra padding: empty second field -> '1'
    ("000005\t1\n", None), ("000005 x\n", None),  # the release would have crashed
])
def test_release_label_line_rule(line, expected):
    assert voc.release_label(line) == expected


def test_release_falls_back_to_the_first_C_when_no_C_beats_zero():
    rng = np.random.default_rng(5)
    n, d = 60, 6
    X = [rng.normal(size=(n, d)) for _ in range(3)]
    Y = [np.where(rng.random((n, 2)) < 0.4, 1, -1).astype(np.int8) for _ in range(3)]
    for k in range(3):
        X[k][:, 0] += 2.0 * (Y[k][:, 0] == 1)
    Y[1][:, 1] = -1  # class 'b' has no positive val image: AP 0 for every C, the release's C = -1
    res = run_protocol(X[0], Y[0], X[1], Y[1], X[2], Y[2], ["a", "b"], c_grid=[1e-3, 1.0], progress=False)
    assert res["c_fallback_classes"] == ["b"] and res["chosen_C"]["b"] == 1e-3
    assert all(v == 0.0 for v in res["val_ap"]["b"].values())
    assert np.isfinite(res["release_map"]) and np.isfinite(res["map"])

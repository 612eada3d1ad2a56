"""Oxford/Paris AP, revisited E/M/H metrics and the ground-truth readers, against plain re-implementations."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import texttopicnet.instance.protocols as P
import texttopicnet.instance.revisited as R
from texttopicnet.core.errors import DataError
from texttopicnet.core.paths import OUTSIDE


def plain_compute_ap(ranked, pos, junk):
    """compute_ap.cpp read literally: skip junk, then trapezoids from (recall 0, precision 1)."""
    old_recall, old_precision, ap = 0.0, 1.0, 0.0
    intersect, j = 0, 0
    for item in ranked:
        if item in junk:
            continue
        if item in pos:
            intersect += 1
        recall = intersect / len(pos)
        precision = intersect / (j + 1.0)
        ap += (recall - old_recall) * ((old_precision + precision) / 2.0)
        old_recall, old_precision = recall, precision
        j += 1
    return ap


def plain_revisited(ranks_col, ok, junk, kappas):
    """revisitop's compute_map for one query, literally (loops, 0-based ranks)."""
    pos = [i for i, x in enumerate(ranks_col) if x in ok]
    jk = [i for i, x in enumerate(ranks_col) if x in junk]
    k, ij, ip = 0, 0, 0
    pos = list(pos)
    while ip < len(pos):
        while ij < len(jk) and pos[ip] > jk[ij]:
            k += 1
            ij += 1
        pos[ip] -= k
        ip += 1
    ap = 0.0
    for j, rank in enumerate(pos):
        p0 = 1.0 if rank == 0 else j / rank
        p1 = (j + 1) / (rank + 1)
        ap += (p0 + p1) * (1.0 / len(ok)) / 2.0
    pos1 = [p + 1 for p in pos]
    prs = []
    for kap in kappas:
        kq = min(max(pos1), kap)
        prs.append(sum(p <= kq for p in pos1) / kq)
    return ap, prs


@pytest.mark.parametrize("seed", range(60))
def test_official_ap_matches_plain_compute_ap_on_random_rankings_with_junk(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    ids = [f"img{i}" for i in rng.permutation(n)]
    roles = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])  # negative, positive, junk
    pos = {ids[i] for i in range(n) if roles[i] == 1} or {ids[0]}
    junk = {ids[i] for i in range(n) if roles[i] == 2} - pos
    missing = {f"never{i}" for i in range(int(rng.integers(0, 3)))}  # positives never ranked
    ranked = list(rng.permutation(ids)) if seed % 3 else list(rng.permutation(ids))[: n // 2 + 1]
    got = P.oxford_average_precision(ranked, pos | missing, junk)
    assert got == pytest.approx(plain_compute_ap(ranked, pos | missing, junk), abs=1e-12)
    assert 0.0 <= got <= 1.0


def test_official_ap_known_values_and_errors():
    assert P.oxford_average_precision(["a", "b", "c"], {"a"}, set()) == pytest.approx(1.0)
    # positive at rank 2 behind one negative: trapezoid (1 + 1/2)/2 = 0.75... from precision 1 at recall 0
    assert P.oxford_average_precision(["x", "a"], {"a"}, set()) == pytest.approx((0.0 + 0.5) / 2)
    # the junk in front is skipped entirely
    assert P.oxford_average_precision(["j", "a"], {"a"}, {"j"}) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        P.oxford_average_precision(["a"], set(), set())
    with pytest.raises(ValueError):
        P.oxford_average_precision(["a", "a"], {"a"}, set())


@pytest.mark.parametrize("seed", range(30))
def test_revisited_ap_and_precision_match_revisitop_loops(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(8, 60))
    ranked = list(rng.permutation(n))
    roles = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    ok = [i for i in range(n) if roles[i] == 1] or [0]
    junk = [i for i in range(n) if roles[i] == 2 and i not in ok]
    ap, pr = P.revisited_ap_and_precision(ranked, ok, junk, (1, 5, 10))
    ap_ref, pr_ref = plain_revisited(ranked, set(ok), set(junk), (1, 5, 10))
    assert ap == pytest.approx(ap_ref, abs=1e-12)
    assert pr == pytest.approx(pr_ref, abs=1e-12)
    # the same AP as the classic definition: both are the trapezoidal rule from precision 1
    assert ap == pytest.approx(P.oxford_average_precision(ranked, ok, junk), abs=1e-12)


def test_revisited_setups_move_hard_and_easy_between_positives_and_junk():
    ranked = [[5, 0, 1, 2, 3, 4]]
    gnd = [{"easy": [0], "hard": [1, 2], "junk": [5]}]
    res = P.revisited_metrics(ranked, gnd)
    assert res["easy"]["map"] == pytest.approx(plain_revisited(ranked[0], {0}, {5, 1, 2}, (1,))[0])
    assert res["medium"]["map"] == pytest.approx(plain_revisited(ranked[0], {0, 1, 2}, {5}, (1,))[0])
    assert res["hard"]["map"] == pytest.approx(plain_revisited(ranked[0], {1, 2}, {5, 0}, (1,))[0])
    # a query without hard images is left out of the Hard means
    res = P.revisited_metrics([[0, 1], [1, 0]], [{"easy": [0], "hard": [], "junk": []},
                                                 {"easy": [0], "hard": [1], "junk": []}])
    assert res["hard"]["n"] == 1 and res["easy"]["n"] == 2
    assert res["hard"]["map"] == pytest.approx(1.0)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_oxford_layout_reader_counts_refusals_and_strips_prefix(tmp_path):
    root = tmp_path / "Oxford5k"
    for name in ("a_1", "a_2", "b_1", "outside"):
        _write(root / "jpg" / f"{name}.jpg", "x")
    _write(tmp_path / "secret.jpg", "x")
    os.symlink(tmp_path / "secret.jpg", root / "jpg" / "link.jpg")  # a symlink leading out: refused
    gt = root / "gt"
    _write(gt / "land_1_query.txt", "oxc1_a_1 10.5 20 110.2 220\n")
    _write(gt / "land_1_good.txt", "a_1\na_2\n../../secret\n")
    _write(gt / "land_1_ok.txt", "b_1\nnot_there\n")
    _write(gt / "land_1_junk.txt", "two words\n")
    _write(gt / "bad_1_query.txt", "b_1 1 2 3\n")  # 3 numbers: malformed, query dropped
    ds = P.load_oxford_layout(root)
    assert [q.name for q in ds.queries] == ["land_1"]
    q = ds.queries[0]
    assert q.image_id == "a_1" and q.bbox == (10.5, 20.0, 110.2, 220.0)
    assert q.good == ("a_1", "a_2") and q.ok == ("b_1",) and q.junk == ()
    assert ds.counts[OUTSIDE] == 2  # the symlink and the ../../ id
    assert ds.counts[P.MISSING] == 1 and ds.counts[P.MALFORMED] == 2
    assert "link" not in ds.image_ids and sorted(ds.image_ids) == ["a_1", "a_2", "b_1", "outside"]


def test_synthetic_sets_parse_with_both_readers(tmp_path):
    from texttopicnet.instance import synthetic

    cfg = synthetic.SynthConfig(landmarks=2, views=4, queries=2, distractors=2, width=96, height=72)
    counts = synthetic.generate_set(tmp_path / "synth_b", "synth_b", seed=3, cfg=cfg, oxford_prefix=False,
                                    subfolders=True, progress=False)
    ds = P.load_oxford_layout(tmp_path / "synth_b")
    assert len(ds.image_ids) == counts["images"] == 2 * 4 + 2
    assert len(ds.queries) == counts["queries"] >= 2 and not ds.counts
    rev = R.load_revisited(tmp_path / "synth_b" / "gnd_synth_b.pkl", tmp_path / "synth_b" / "jpg")
    assert sorted(q.image_id for q in rev.queries) == sorted(q.image_id for q in ds.queries)
    by_image = {q.image_id: q for q in ds.queries}
    for rq in rev.queries:
        assert set(rq.good) == set(by_image[rq.image_id].good) and set(rq.hard) == set(by_image[rq.image_id].ok)
        assert rq.bbox == pytest.approx(by_image[rq.image_id].bbox, abs=0.051)
    # the same rendering again: byte-identical images (deterministic by seed)
    synthetic.generate_set(tmp_path / "again", "synth_b", seed=3, cfg=cfg, oxford_prefix=False, subfolders=True,
                           progress=False)
    first = sorted(p.relative_to(tmp_path / "synth_b") for p in (tmp_path / "synth_b").rglob("*.jpg"))
    assert all((tmp_path / "synth_b" / p).read_bytes() == (tmp_path / "again" / p).read_bytes() for p in first)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_gnd_pickle_reader_refuses_code_and_checks_structure(tmp_path):
    bad = tmp_path / "gnd_evil.pkl"
    bad.write_bytes(pickle.dumps({"imlist": ["a"], "qimlist": ["a"], "gnd": [_Evil()]}))
    with pytest.raises(DataError, match="refusing"):
        R.read_gnd(bad)
    arr = tmp_path / "gnd_arrays.pkl"  # the real files hold numpy arrays: allowed
    arr.write_bytes(pickle.dumps({"imlist": ["a", "b"], "qimlist": ["q"],
                                  "gnd": [{"bbx": np.array([1.0, 2, 3, 4]), "easy": np.array([0]),
                                           "hard": np.array([], dtype=int), "junk": np.array([1])}]}))
    g = R.read_gnd(arr)
    assert g["gnd"][0] == {"easy": [0], "hard": [], "junk": [1], "bbx": [1.0, 2.0, 3.0, 4.0]}
    out_of_range = tmp_path / "gnd_range.pkl"
    out_of_range.write_bytes(pickle.dumps({"imlist": ["a"], "qimlist": ["q"],
                                           "gnd": [{"bbx": [0, 0, 1, 1], "easy": [3], "hard": [], "junk": []}]}))
    with pytest.raises(DataError, match="indices"):
        R.read_gnd(out_of_range)
    with pytest.raises(DataError, match="not found"):
        R.read_gnd(tmp_path / "missing.pkl")


def test_dataset_evaluate_classic_and_distractors(tmp_path):
    root = tmp_path / "set"
    for name in ("a", "b", "c", "d"):
        _write(root / "jpg" / f"{name}.jpg", "x")
    _write(root / "gt" / "x_1_query.txt", "a 0 0 5 5\n")
    _write(root / "gt" / "x_1_good.txt", "a\nb\n")
    _write(root / "gt" / "x_1_ok.txt", "")
    _write(root / "gt" / "x_1_junk.txt", "c\n")
    ds = P.load_oxford_layout(root)
    res = ds.evaluate({"x_1": ["a", "c", "d", "b"]})
    assert res["map"] == pytest.approx(plain_compute_ap(["a", "c", "d", "b"], {"a", "b"}, {"c"}))
    for name in ("a", "e"):
        _write(tmp_path / "flickr" / "sub" / f"{name}.jpg", "x")
    big = P.with_distractors(ds, tmp_path / "flickr")
    assert len(big.image_ids) == 6 and "distractor/sub/a.jpg" in big.image_ids and "e" in big.image_ids

"""CroW weights, class vectors, CAM normalisation, PCA whitening and aggregation against plain loops / sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from texttopicnet.instance import descriptors as D


def plain_crow(x):
    """Kalantidis et al.'s channel weights, one channel at a time."""
    c, h, w = x.shape
    q = np.array([np.count_nonzero(x[k]) / float(h * w) for k in range(c)])
    total = q.sum()
    return np.array([np.log(total / v) if v > 0 else 0.0 for v in q])


def plain_class_vectors(x, cams):
    """The authors' weighted_cam_pooling: loops over channels and classes, CroW, L2 per class."""
    c = x.shape[0]
    k = cams.shape[0]
    out = np.zeros((k, c))
    cw = plain_crow(x)
    for kk in range(k):
        for cc in range(c):
            out[kk, cc] = (x[cc] * cams[kk]).sum() * cw[cc]
        norm = np.sqrt((out[kk] ** 2).sum())
        if norm > 0:
            out[kk] /= norm
    return out


def _maps(seed, c=7, k=4, h=5, w=6, sparsity=0.4):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(c, h, w)), 0) * (rng.random((c, h, w)) > sparsity)
    x[0] = 0  # an all-zero channel: weight 0
    raw = rng.normal(size=(k, h, w))
    raw[1] = -np.abs(raw[1])  # a CAM without a positive value
    return x, raw


@pytest.mark.parametrize("seed", range(8))
def test_crow_and_class_vectors_match_plain_loops(seed):
    x, raw = _maps(seed)
    paper = D.normalize_cams(torch.from_numpy(raw)).numpy()
    cams = D.normalize_cams(torch.from_numpy(raw), "positive").numpy()
    for k in range(raw.shape[0]):
        # the authors' arithmetic: / max (whatever its sign), clamp at 0; 'positive' empties maps without a positive value
        assert paper[k] == pytest.approx(np.maximum(raw[k] / raw[k].max(), 0))
        expect = np.maximum(raw[k] / raw[k].max(), 0) if raw[k].max() > 0 else np.zeros_like(raw[k])
        assert cams[k] == pytest.approx(expect)
    assert np.all(paper[1] >= 1.0)  # an all-negative map comes out inverted and >= 1 everywhere
    assert D.nonpositive_maps(torch.from_numpy(raw)) == 1
    zero = D.normalize_cams(torch.zeros(1, 2, 3))
    assert torch.equal(zero, torch.zeros(1, 2, 3))  # max 0: empty, not NaN
    assert D.crow_channel_weights(torch.from_numpy(x)).numpy() == pytest.approx(plain_crow(x))
    got = D.class_vectors(torch.from_numpy(x)[None], torch.from_numpy(cams)[None])[0].numpy()
    assert got == pytest.approx(plain_class_vectors(x, cams), abs=1e-6)
    assert np.all(got[1] == 0) and np.isfinite(got).all()
    s = D.sum_pooling(torch.from_numpy(x)[None])[0].numpy()
    ref = x.sum(axis=(1, 2))
    assert s == pytest.approx(ref / np.linalg.norm(ref), abs=1e-6)


def test_pca_whitening_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12)) + 3.0
    y = rng.normal(size=(9, 12))
    ours = D.PCAWhitening.fit(x, dim=8)
    ref = PCA(n_components=8, whiten=True).fit(x)
    a, b = ours.transform(y), ref.transform(y)
    # the sign of each axis is a convention: compare absolute values and dot products
    assert np.abs(a) == pytest.approx(np.abs(b), rel=1e-4, abs=1e-5)
    assert a @ a.T == pytest.approx(b @ b.T, rel=1e-4, abs=1e-4)
    assert ours.variance == pytest.approx(ref.explained_variance_, rel=1e-8)
    # dim is capped at the rank; a round trip through save/load keeps the transform
    low = D.PCAWhitening.fit(x[:, :3] @ rng.normal(size=(3, 12)), dim=10)
    assert low.dim == 3


def test_pca_save_load_and_degenerate_input(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5))
    p = D.PCAWhitening.fit(x, 4)
    p.save(tmp_path / "pca.npz")
    q = D.PCAWhitening.load(tmp_path / "pca.npz")
    assert q.transform(x) == pytest.approx(p.transform(x))
    with pytest.raises(ValueError, match="no variance"):
        D.PCAWhitening.fit(np.ones((5, 3)), 2)


def plain_aggregate(vecs, classes, pca):
    """Per image: PCA each chosen class vector, L2, sum, L2 (the authors' descriptor_aggregation_cl)."""
    out = []
    for i in range(vecs.shape[0]):
        acc = 0
        for k in (classes[i] if classes.ndim == 2 else classes):
            v = vecs[i, k]
            t = pca.transform(v[None])[0] if pca is not None and np.any(v != 0) else (v if pca is None else
                                                                                        np.zeros(pca.dim))
            n = np.linalg.norm(t)
            acc = acc + (t / n if n > 0 else t)
        out.append(acc / np.linalg.norm(acc))
    return np.array(out)


@pytest.mark.parametrize("with_pca", [False, True])
def test_offline_and_online_aggregation_match_plain_loops(with_pca):
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(11, 6, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=-1, keepdims=True)
    vecs[3, 2] = 0  # an empty class vector contributes nothing
    scores = rng.normal(size=(11, 6))
    pca = D.PCAWhitening.fit(rng.normal(size=(50, 8)), 5) if with_pca else None
    own = D.top_classes(scores, 3)
    assert own == pytest.approx(np.argsort(-scores, axis=1)[:, :3])
    offline = D.aggregate(vecs, own, pca, chunk=4)
    assert offline == pytest.approx(plain_aggregate(vecs, own, pca), abs=1e-5)
    online = D.aggregate(vecs, np.array([2, 0]), pca, chunk=5)
    assert online == pytest.approx(plain_aggregate(vecs, np.array([2, 0]), pca), abs=1e-5)
    assert np.linalg.norm(offline, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_pca_training_vectors_take_each_images_top_class_and_skip_empty_ones():
    vecs = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    vecs[2, 1] = 0
    scores = np.array([[0, 5, 1, 2], [9, 0, 0, 0], [0, 7, 1, 1]], dtype=np.float32)
    rows = D.pca_training_vectors(vecs, scores, 1)
    assert rows.tolist() == [vecs[0, 1].tolist(), vecs[1, 0].tolist()]

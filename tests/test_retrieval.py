"""KL matrix and chunked retrieval evaluation against pairwise scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy

from texttopicnet.evaluation.metrics import retrieval_map
from texttopicnet.evaluation.retrieval import (
    EPS,
    evaluate_direction,
    iter_distance_blocks,
    kl_divergence_matrix,
    prepare,
)


def _ref_kl(P, Q):
    out = np.zeros((len(P), len(Q)))
    for i, p in enumerate(P):
        for j, q in enumerate(Q):
            qf = np.maximum(q / q.sum(), EPS)
            out[i, j] = entropy(p, qf)  # entropy normalises both
    return out


def test_kl_matrix_matches_scipy_entropy_with_zeros():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(8) * 0.3, size=9)
    Q = rng.dirichlet(np.ones(8) * 0.3, size=7) * 3.0  # unnormalised on purpose
    P[0, :3] = 0.0  # zeros in P contribute nothing
    Q[1, 2] = 0.0  # zero in Q: large but finite
    D = kl_divergence_matrix(P, Q)
    assert np.all(np.isfinite(D))
    np.testing.assert_allclose(D, _ref_kl(P, Q), rtol=1e-9, atol=1e-9)
    assert D[:, 1].max() > 5  # the Q zero is heavily penalised
    np.testing.assert_allclose(np.diag(kl_divergence_matrix(P, P)), 0.0, atol=1e-8)  # floor: ~EPS per zero


def test_kl_matrix_rejects_unnormalisable_rows():
    with pytest.raises(ValueError, match="sum to 0"):
        kl_divergence_matrix(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="negative"):
        kl_divergence_matrix(-np.ones((1, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        kl_divergence_matrix(np.ones((1, 3)), np.ones((2, 4)))


@pytest.mark.parametrize("score", ["kl", "cosine"])
def test_chunked_evaluation_equals_full_matrix(score):
    rng = np.random.default_rng(1)
    K = 10
    txt_lab, img_lab = rng.integers(0, 5, 50), rng.integers(0, 5, 43)
    # topic vectors that carry label information, so mAP is well above chance
    T = rng.dirichlet(np.ones(K), 50) + np.eye(K)[txt_lab] * 2
    I = rng.dirichlet(np.ones(K), 43) + np.eye(K)[img_lab] * 2
    prep = prepare(T, I, score=score, dtype=np.float64)
    tiny = 9 * 50 * 3  # three rows per block: forces several blocks
    ap_i2t, top = evaluate_direction(prep, txt_lab, img_lab, "image", top_k=5, block_bytes=tiny)
    ap_t2i, _ = evaluate_direction(prep, txt_lab, img_lab, "text", block_bytes=tiny)
    if score == "kl":
        D = kl_divergence_matrix(T, I)  # [text, image]
    else:
        tn = T / np.linalg.norm(T, axis=1, keepdims=True)
        im = I / np.linalg.norm(I, axis=1, keepdims=True)
        D = 1 - tn @ im.T
    assert ap_i2t.mean() == pytest.approx(retrieval_map(D.T, img_lab, txt_lab), abs=1e-9)
    assert ap_t2i.mean() == pytest.approx(retrieval_map(D, txt_lab, img_lab), abs=1e-9)
    np.testing.assert_array_equal(top[:, 0], D.argmin(axis=0))
    assert ap_i2t.mean() > 0.5  # informative vectors: far above the ~0.2 chance of 5 classes


def test_cosine_takes_signed_vectors_and_kl_does_not():
    """Vector spaces (word2vec captions, cosine/triplet-trained networks) have negative entries."""
    rng = np.random.default_rng(2)
    T, I = rng.normal(size=(6, 5)), rng.normal(size=(4, 5))
    prep = prepare(T, I, score="cosine", dtype=np.float64)
    ref = np.array([[1 - t @ i / np.linalg.norm(t) / np.linalg.norm(i) for i in I] for t in T])
    dist = np.vstack([d for _, d in iter_distance_blocks(prep, "text")])
    np.testing.assert_allclose(dist, ref, atol=1e-12)
    with pytest.raises(ValueError, match="negative"):
        prepare(T, I, score="kl")
    with pytest.raises(ValueError, match="all zero"):
        prepare(np.zeros((1, 5)), I, score="cosine")


def test_image_side_follows_the_training_loss():
    from texttopicnet.evaluation.retrieval import default_score, image_layer, to_text_space

    out = np.array([[3.0, -4.0], [0.5, 0.0]], dtype=np.float32)
    assert (image_layer("sigmoid_ce"), default_score("sigmoid_ce")) == ("prob", "kl")  # the paper's
    for name in ("cosine", "triplet"):  # L2-normalised logits, ranked by cosine
        assert (image_layer(name), default_score(name)) == ("logits", "cosine")
        np.testing.assert_allclose(to_text_space(out, name), [[0.6, -0.8], [1.0, 0.0]], rtol=1e-6)
    np.testing.assert_array_equal(to_text_space(out, "mse"), out)  # regression outputs as they are
    np.testing.assert_array_equal(to_text_space(out, "sigmoid_ce"), out)  # prob is already the sigmoid's


def test_recorded_loss_reads_the_training_stage_records(tmp_path):
    import json

    from texttopicnet.core.io import sha256_file
    from texttopicnet.evaluation.retrieval import recorded_loss
    from texttopicnet.training.checkpoint import save_checkpoint

    train = tmp_path / "train"
    train.mkdir()
    w = train / "model.safetensors"
    w.write_bytes(b"weights")
    info = {"source": str(w), "file_sha256": sha256_file(w)}
    assert recorded_loss(w, info) is None  # no summary.json beside it
    (train / "summary.json").write_text(json.dumps({"model_sha256": info["file_sha256"],
                                                    "loss": {"name": "triplet", "margin": 0.1}}))
    assert recorded_loss(w, info) == {"name": "triplet", "margin": 0.1}
    (train / "summary.json").write_text(json.dumps({"model_sha256": info["file_sha256"]}))
    assert recorded_loss(w, info) == {"name": "sigmoid_ce"}  # a summary from before losses were recorded
    assert recorded_loss(w, {**info, "file_sha256": "0" * 64}) is None  # another file's summary
    ck = train / "checkpoint.pt"
    save_checkpoint(ck, {"model": {}, "loss": {"name": "cosine"}})
    assert recorded_loss(ck, {"source": str(ck)}) == {"name": "cosine"}
    save_checkpoint(ck, {"model": {}})
    assert recorded_loss(ck, {"source": str(ck)}) is None
    assert recorded_loss("random", {"source": "random"}) is None

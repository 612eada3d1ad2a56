"""Fine-tuning pieces: sampling, masked loss, lr groups, exact resume, and centre / 10-crop prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texttopicnet.evaluation.finetune import (
    FinetuneConfig,
    batch_indices,
    evaluate,
    finetune,
    lr_at,
    masked_bce,
    new_head,
    param_groups,
    predict,
)
from texttopicnet.weights.loading import load_network


def test_batch_indices_walk_seeded_permutations():
    n, b = 10, 4
    seen = np.concatenate([batch_indices(n, b, it, seed=0) for it in range(5)])  # 20 samples = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    np.testing.assert_array_equal(batch_indices(n, b, 3, 0), batch_indices(n, b, 3, 0))
    assert not np.array_equal(seen[:10], np.concatenate([batch_indices(n, b, it, 1) for it in range(5)])[:10])


def test_masked_bce_ignores_difficult_labels():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    labels = torch.tensor([[1, -1, 0], [0, 1, -1], [-1, -1, 1], [1, 0, 0], [-1, 1, 1], [1, 1, -1]])
    keep = labels != 0
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], (labels[keep] == 1).float())
    assert masked_bce(logits, labels).item() == pytest.approx(ref.item(), rel=1e-6)
    changed = logits.clone()
    changed[labels == 0] += 100.0  # what the net says about difficult entries must not matter
    assert masked_bce(changed, labels).item() == pytest.approx(ref.item(), rel=1e-6)


def test_param_groups_and_schedule():
    net, _ = load_network("random", num_outputs=3)
    cfg = FinetuneConfig(base_lr=0.01, lr_step=100, gamma=0.1, head_lr_mult=10)
    groups = param_groups(net, cfg)
    mults = sorted(g["lr_mult"] for g in groups)
    assert mults == [1.0, 2.0, 10.0, 20.0]
    head_w = [g for g in groups if g["lr_mult"] == 10.0][0]
    assert len(head_w["params"]) == 1 and head_w["params"][0] is net.fc8.weight
    assert all(g["weight_decay"] == 0 for g in groups if g["lr_mult"] in (2.0, 20.0))
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert lr_at(cfg, 99) == pytest.approx(0.01) and lr_at(cfg, 100) == pytest.approx(0.001)


def _toy(n=12, seed=0):
    """Two 'classes': reddish and bluish 256x256 images; labels (N, 2) in {1,-1}, one 0."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    imgs = rng.integers(0, 60, (n, 256, 256, 3)).astype(np.uint8)
    imgs[y == 1, :, :, 0] += 150
    imgs[y == 0, :, :, 2] += 150
    labels = np.stack([np.where(y == 1, 1, -1), np.where(y == 0, 1, -1)], 1).astype(np.int8)
    labels[0, 0] = 0
    return imgs, labels


def _fresh():
    net, _ = load_network("random", num_outputs=40, seed=0)
    return new_head(net, 2, seed=0)


def test_resume_gives_identical_weights(tmp_path):
    imgs, labels = _toy(n=6)
    # CaffeNet steps cost ~1.5 s on a 2-core CPU (58M fc weights): 2 iterations vs 1 + resume + 1
    cfg = dict(batch_size=3, base_lr=0.001, lr_step=1, checkpoint_every=1, seed=3)
    a = _fresh()
    finetune(a, imgs, labels, FinetuneConfig(iterations=2, **{**cfg, "checkpoint_every": 100}), tmp_path / "a.pt", torch.device("cpu"),
             progress=False)
    b = _fresh()
    info1 = finetune(b, imgs, labels, FinetuneConfig(iterations=1, **cfg), tmp_path / "b.pt", torch.device("cpu"),
                     progress=False)
    b2 = _fresh()  # a new process would start from the initial weights and load the checkpoint
    info2 = finetune(b2, imgs, labels, FinetuneConfig(iterations=2, **cfg), tmp_path / "b.pt", torch.device("cpu"),
                     progress=False)
    assert info1["start_iteration"] == 0 and info2["start_iteration"] == 1
    for (k, va), vb in zip(a.state_dict().items(), b2.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.fc8.weight, _fresh().fc8.weight)  # training changed the weights


def test_resume_refuses_a_different_configuration(tmp_path):
    from texttopicnet.core.errors import UserError
    from texttopicnet.training.checkpoint import save_checkpoint

    imgs, labels = _toy(n=4)
    other = dict(vars(FinetuneConfig(batch_size=3)))
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "optimizer": {}, "rng": {}, "iteration": 1, "config": other})
    with pytest.raises(UserError, match="different configuration"):
        finetune(_fresh(), imgs, labels, FinetuneConfig(iterations=2, batch_size=2), tmp_path / "c.pt",
                 torch.device("cpu"), progress=False)


def test_predict_center_and_ten_crop():
    imgs, labels = _toy(n=3)
    net = _fresh()
    c = predict(net, imgs, "center", batch_size=2, progress=False)
    t = predict(net, imgs, "10crop", batch_size=2, progress=False)
    assert c.shape == t.shape == (3, 2) and ((c > 0) & (c < 1)).all()
    assert not np.allclose(c, t)  # the 10 crops see other parts of the image
    ap, m = evaluate(c, labels, ["r", "b"])
    assert set(ap) == {"r", "b"} and 0 <= m <= 1
    with pytest.raises(ValueError):
        predict(net, imgs, "5crop")

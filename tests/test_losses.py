"""The loss registry against plain re-implementations (loops over the batch, NumPy), the triplet
negative rules against a plain implementation with the same random numbers, and every loss
training a registered backbone a few steps on generated data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from texttopicnet.core.errors import UserError
from texttopicnet.networks import backbones, layers
from texttopicnet.training import losses
from texttopicnet.training.losses import build_loss


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny tensors, shared 2-core machine


def batch(n=6, k=8, seed=0, zero_row=False):
    rng = np.random.default_rng(seed)
    outputs = rng.normal(size=(n, k))
    targets = rng.dirichlet(np.full(k, 0.4), n)
    targets[targets < 0.01] = 0.0  # the release's 0.01 cut-off: rows sum to <= 1
    if zero_row:
        targets[1] = 0.0
    return outputs, targets


def t(a):
    return torch.tensor(a, dtype=torch.float32)


# --- plain references --------------------------------------------------------------------------------

def ref_sigmoid_ce(z, y):
    total = 0.0
    for zi, yi in zip(z, y):
        for zj, yj in zip(zi, yi):
            p = 1 / (1 + math.exp(-zj))
            total += -(yj * math.log(p) + (1 - yj) * math.log(1 - p))
    return total / len(z)


def ref_mse(z, y):
    return sum(float(np.sum((zi - yi) ** 2)) for zi, yi in zip(z, y)) / (2 * len(z))


def ref_cosine(z, y):
    out = []
    for zi, yi in zip(z, y):
        nz, ny = np.linalg.norm(zi), np.linalg.norm(yi)
        out.append(1.0 - (float(zi @ yi) / (nz * ny) if nz > 0 and ny > 0 else 0.0))
    return sum(out) / len(out)


def ref_negatives(y, rule, u):
    n = len(y)
    d = [[float(np.sum((y[i] - y[j]) ** 2)) for j in range(n)] for i in range(n)]
    pairs = [d[i][j] for i in range(n) for j in range(n) if i != j]
    mean = sum(pairs) / len(pairs)
    chosen = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        hardest = others[0]
        for j in others:
            if d[i][j] > d[i][hardest]:
                hardest = j
        if rule == "hard":
            chosen.append(hardest)
            continue
        cands = others if rule == "random" else [j for j in others if d[i][j] > mean]
        if not cands:
            chosen.append(hardest)
            continue
        chosen.append(cands[min(math.floor(u[i] * len(cands)), len(cands) - 1)])
    return chosen


def ref_triplet(z, y, neg, margin):
    def unit(v):
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else v

    total = 0.0
    for i in range(len(z)):
        a, p, n = unit(z[i]), unit(y[i]), unit(y[neg[i]])
        total += max(0.0, margin + float(np.sum((a - p) ** 2)) - float(np.sum((a - n) ** 2)))
    return total / (2 * len(z))


# --- values --------------------------------------------------------------------------------------------

def test_default_is_the_papers_sigmoid_cross_entropy_bit_for_bit():
    z, y = batch(zero_row=True)
    loss = build_loss()
    assert loss.name == "sigmoid_ce" and losses.DEFAULT_LOSS == "sigmoid_ce"
    assert torch.equal(loss(t(z), t(y)), losses.sigmoid_cross_entropy(t(z), t(y)))
    assert loss(t(z), t(y)).item() == pytest.approx(ref_sigmoid_ce(z, y), rel=1e-5)
    assert torch.allclose(loss.predict(t(z)), torch.sigmoid(t(z)))
    assert loss.mean_baseline(y) == losses.mean_distribution_loss(y)
    assert loss.min_possible(y) == losses.min_possible_loss(y)


@pytest.mark.parametrize("name,ref", [("mse", ref_mse), ("cosine", ref_cosine)])
def test_regression_losses_against_loops(name, ref):
    z, y = batch(seed=1, zero_row=True)
    loss = build_loss(name)
    zt = t(z).requires_grad_(True)
    value = loss(zt, t(y))
    assert value.item() == pytest.approx(ref(z, y), rel=1e-5)
    value.backward()
    assert torch.isfinite(zt.grad).all()  # a zero target row gives no NaN
    assert loss.min_possible(y[[0, 2, 3]]) == pytest.approx(0.0, abs=1e-12)
    mean = y.mean(0)
    assert loss.mean_baseline(y) == pytest.approx(ref(np.broadcast_to(mean, y.shape), y), rel=1e-9)


def test_vector_targets_min_shift_transforms():
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(5, 16))  # e.g. word-embedding captions
    shifted = raw - raw.min(axis=1, keepdims=True)
    for y in (shifted / np.linalg.norm(shifted, axis=1, keepdims=True), shifted / shifted.max(axis=1, keepdims=True)):
        z = rng.normal(size=y.shape)
        assert build_loss("mse")(t(z), t(y)).item() == pytest.approx(ref_mse(z, y), rel=1e-5)
        assert build_loss("cosine")(t(z), t(y)).item() == pytest.approx(ref_cosine(z, y), rel=1e-5)
        assert np.isfinite(build_loss("sigmoid_ce")(t(z), t(y)).item())


@pytest.mark.parametrize("rule", ["random", "soft", "hard"])
def test_triplet_negatives_and_value_against_plain_implementation(rule):
    z, y = batch(n=9, seed=4, zero_row=True)
    y[5] = y[2]  # a duplicate caption: distance 0, never a soft or hard negative
    u = torch.rand(9, generator=torch.Generator().manual_seed(7), dtype=torch.float64).tolist()
    got = losses.choose_negatives(t(y), rule, torch.Generator().manual_seed(7)).tolist()
    want = ref_negatives(y.astype(np.float32).astype(np.float64), rule, u)
    assert got == want and all(g != i for i, g in enumerate(got))
    loss = build_loss("triplet", margin=0.3, negatives=rule, seed=7)
    value = loss(t(z), t(y))  # no step: the loss's own generator, seeded with 7, first draw
    assert value.item() == pytest.approx(ref_triplet(z, y, want, 0.3), rel=1e-5)


def test_soft_negatives_are_farther_than_the_batch_mean():
    _, y = batch(n=12, seed=5)
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    mean = d[~np.eye(12, dtype=bool)].mean()
    for seed in range(5):
        neg = losses.choose_negatives(t(y), "soft", torch.Generator().manual_seed(seed)).numpy()
        far = d[np.arange(12), neg] > mean - 1e-6
        hard = neg == np.where(np.eye(12, dtype=bool), -1, d).argmax(1)
        assert np.all(far | hard)


def test_triplet_draws_are_a_function_of_seed_and_step():
    z, y = batch(n=10, seed=6)
    a = build_loss("triplet", negatives="random", seed=1)
    b = build_loss("triplet", negatives="random", seed=1)  # e.g. after a resume
    vals = [a(t(z), t(y), step=s).item() for s in range(6)]
    assert vals == [b(t(z), t(y), step=s).item() for s in range(6)]
    assert len(set(vals)) > 1  # different steps, different negatives
    # Inactive hinges give zero loss and zero gradient.
    zt = t(y).requires_grad_(True)
    far = build_loss("triplet", margin=0.0, negatives="hard")
    value = far(zt, t(y))
    value.backward()
    assert value.item() == 0.0 and torch.count_nonzero(zt.grad) == 0


def test_triplet_reference_levels_and_errors():
    _, y = batch(n=40, seed=8)
    loss = build_loss("triplet", margin=0.1, negatives="soft")
    assert 0.0 <= loss.min_possible(y) < loss.mean_baseline(y)
    with pytest.raises(UserError, match="at least 2"):
        loss(t(y[:1]), t(y[:1]))
    with pytest.raises(UserError, match="cosine"):
        build_loss("hinge")
    with pytest.raises(UserError, match="negative rule"):
        build_loss("triplet", negatives="semi-hard")
    with pytest.raises(UserError, match="margin"):
        build_loss("mse", margin=0.2)


# --- every loss trains a backbone -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def alexnet():
    # AlexNet: no BatchNorm, so a fixed batch with fixed dropout masks is a deterministic function of
    # the weights (BatchNorm over a tiny batch of 1x1 maps makes one small step's effect erratic).
    return backbones.build("alexnet", 10, seed=0)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_every_loss_trains_a_backbone(name, alexnet):
    import copy

    m = copy.deepcopy(alexnet)
    layers.freeze_until(m, "fc6")  # fc7 and the head learn: a fast step on a shared CPU
    g = torch.Generator().manual_seed(1)
    x = backbones.preprocess(m, torch.randint(0, 256, (6, 63, 63, 3), dtype=torch.uint8, generator=g))
    y = torch.from_numpy(np.random.default_rng(1).dirichlet(np.full(10, 0.3), 6)).float()
    loss = build_loss(name, **({"negatives": "soft", "margin": 0.5} if name == "triplet" else {}))
    opt = torch.optim.SGD(backbones.param_groups(m, 5e-4, 1e-3), lr=1e-3, momentum=0.9)

    def step_loss():
        torch.manual_seed(0)  # the same dropout masks each time
        return loss(m(x), y, step=0)

    layers.train_mode(m)
    seen = []
    for _ in range(2):
        value = step_loss()
        seen.append(value.item())
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        seen.append(step_loss().item())
        m.eval()
        pred = loss.predict(m(x))
    assert all(np.isfinite(seen)) and seen[-1] < seen[0]
    assert pred.shape == (6, 10) and torch.isfinite(pred).all()
    if name in ("cosine", "triplet"):
        torch.testing.assert_close(pred.norm(dim=1), torch.ones(6))
    if name == "sigmoid_ce":
        assert torch.all((pred > 0) & (pred < 1))

"""The four-direction LSTM language model: scans, causality, ramp weights and maps against plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texttopicnet.vlm import model as vm


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_by_hand(lm: vm.DirectionalLM, seq: np.ndarray) -> np.ndarray:
    """A 2-layer LSTM and the linear output, step by step in numpy (gate order i, f, g, o as torch documents)."""
    p = {k: v.detach().double().numpy() for k, v in lm.state_dict().items()}
    x = seq
    for layer in range(2):
        wi, wh = p[f"lstm.weight_ih_l{layer}"], p[f"lstm.weight_hh_l{layer}"]
        b = p[f"lstm.bias_ih_l{layer}"] + p[f"lstm.bias_hh_l{layer}"]
        hid = wh.shape[1]
        h, c = np.zeros(hid), np.zeros(hid)
        out = []
        for t in range(x.shape[0]):
            a = wi @ x[t] + wh @ h + b
            i, f, g, o = _sig(a[:hid]), _sig(a[hid:2 * hid]), np.tanh(a[2 * hid:3 * hid]), _sig(a[3 * hid:])
            c = f * c + i * g
            h = o * np.tanh(c)
            out.append(h)
        x = np.stack(out)
    return x @ p["out.weight"].T + p["out.bias"]


def _lm(dim=3, seed=0, scale=0.5):
    torch.manual_seed(seed)
    lm = vm.DirectionalLM(dim).double()
    with torch.no_grad():  # larger than the release's 0.01 so that every input visibly matters
        for p in lm.parameters():
            p.normal_(0, scale)
    return lm


def test_every_direction_equals_a_plain_loop_over_rows_and_columns():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 4, 5))
    lm = _lm()
    for d in vm.DIRECTIONS:
        got = vm.scan(lm, torch.from_numpy(z), d).detach().numpy()
        want = np.zeros_like(z)
        for n in range(2):
            if d in ("down", "up"):
                for col in range(5):
                    seq = z[n, :, :, col].T  # rows in order
                    if d == "up":
                        want[n, :, :, col] = lstm_by_hand(lm, seq[::-1])[::-1].T
                    else:
                        want[n, :, :, col] = lstm_by_hand(lm, seq).T
            else:
                for row in range(4):
                    seq = z[n, :, row, :].T
                    if d == "left":
                        want[n, :, row, :] = lstm_by_hand(lm, seq[::-1])[::-1].T
                    else:
                        want[n, :, row, :] = lstm_by_hand(lm, seq).T
        np.testing.assert_allclose(got, want, atol=1e-10, err_msg=d)


@pytest.mark.parametrize("direction,axis,later", [("down", 2, lambda i, r: i < r), ("up", 2, lambda i, r: i > r),
                                                   ("right", 3, lambda i, r: i < r), ("left", 3, lambda i, r: i > r)])
def test_prediction_depends_only_on_positions_already_read(direction, axis, later):
    rng = np.random.default_rng(1)
    z = torch.from_numpy(rng.normal(size=(1, 3, 5, 6)))
    lm = _lm(seed=2)
    base = vm.scan(lm, z, direction).detach()
    r, other = 2, 1  # perturb row/column r at one position of another column/row index
    z2 = z.clone()
    if axis == 2:
        z2[0, :, r, other] += 1.0
    else:
        z2[0, :, other, r] += 1.0
    diff = (vm.scan(lm, z2, direction).detach() - base).abs().sum(dim=1)[0]  # (H, W)
    diff = diff if axis == 2 else diff.T  # index [position along the scan, sequence]
    for i in range(diff.shape[0]):
        for seq in range(diff.shape[1]):
            changed = bool(diff[i, seq] > 1e-12)
            # only the same sequence, and only at or after the perturbed position in scan order
            assert changed == (seq == other and not later(i, r)), (direction, i, seq)


def test_ramp_weighted_errors_and_loss_against_plain_formulas():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 2, 4, 5))
    preds = {d: rng.normal(size=z.shape) for d in vm.DIRECTIONS}
    got = vm.weighted_errors(torch.from_numpy(z), {d: torch.from_numpy(p) for d, p in preds.items()})
    h, w = 4, 5
    for d in vm.DIRECTIONS:
        e = got[d].numpy()
        for n in range(2):
            for c in range(2):
                if d in ("down", "up"):
                    for j in range(h - 1):
                        for x in range(w):
                            if d == "down":  # prediction at row j (after j+1 rows) of row j+1
                                want = (preds[d][n, c, j, x] - z[n, c, j + 1, x]) ** 2 * j / (h - 1)
                            else:  # prediction at row j+1 (after h-1-j rows from the bottom) of row j
                                want = (preds[d][n, c, j + 1, x] - z[n, c, j, x]) ** 2 * (h - 2 - j) / (h - 1)
                            assert e[n, c, j, x] == pytest.approx(want)
                else:
                    for y in range(h):
                        for j in range(w - 1):
                            if d == "right":
                                want = (preds[d][n, c, y, j] - z[n, c, y, j + 1]) ** 2 * j / (w - 1)
                            else:
                                want = (preds[d][n, c, y, j + 1] - z[n, c, y, j]) ** 2 * (w - 2 - j) / (w - 1)
                            assert e[n, c, y, j] == pytest.approx(want)
    # the release's arange(0, 1, 1/L)
    np.testing.assert_allclose(vm.ramp(4).numpy(), np.arange(0, 1, 1 / 4))
    # map: per cell, channel-mean of the four errors, each cropped to (H-1) x (W-1) at the top left
    m = vm.unnaturalness_map(got).numpy()
    assert m.shape == (2, h - 1, w - 1)
    for n in range(2):
        for i in range(h - 1):
            for j in range(w - 1):
                want = sum(got[d].numpy()[n, :, i, j].mean() for d in vm.DIRECTIONS)
                assert m[n, i, j] == pytest.approx(want)


def test_layer_loss_is_the_mean_over_directions_and_layers():
    torch.manual_seed(0)
    v = vm.VLM({"a": 3, "b.c": 2})
    z = {"a": torch.randn(2, 3, 4, 4), "b.c": torch.randn(2, 2, 3, 5)}
    out = v(z)
    for name in ("a", "b.c"):
        lv = v.layer(name)
        errs = vm.weighted_errors(z[name], {d: vm.scan(lm, z[name], d) for d, lm in lv.lms.items()})
        assert out["layers"][name].item() == pytest.approx(np.mean([e.mean().item() for e in errs.values()]), rel=1e-6)
    assert out["loss"].item() == pytest.approx((out["layers"]["a"].item() + out["layers"]["b.c"].item()) / 2, rel=1e-6)
    assert out["maps"]["b.c"].shape == (2, 2, 4)
    weighted = v(z, weights={"a": 1.0, "b.c": 0.1})["loss"].item()
    assert weighted == pytest.approx(out["layers"]["a"].item() + 0.1 * out["layers"]["b.c"].item(), rel=1e-6)


def test_release_initialisation_and_bad_shapes():
    torch.manual_seed(0)
    lm = vm.DirectionalLM(40)
    w = torch.cat([p.flatten() for n, p in lm.named_parameters() if "weight" in n])
    assert abs(w.std().item() - 0.01) < 0.001
    assert all((p == 0).all() for n, p in lm.named_parameters() if "bias" in n)
    with pytest.raises(ValueError, match="nothing to predict"):
        vm.LayerVLM(3)(torch.zeros(1, 3, 1, 5))


def _smooth_maps(rng, n, k=4, size=16):
    """Feature maps made of a few low-frequency waves per channel: what a language model can learn to continue."""
    y, x = np.mgrid[0:size, 0:size] / size
    z = np.zeros((n, k, size, size))
    for i in range(n):
        for c in range(k):
            for _ in range(2):
                fy, fx, ph = rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5), rng.uniform(0, 2 * np.pi)
                z[i, c] += np.sin(2 * np.pi * (fy * y + fx * x) + ph)
    return (z - z.mean()) / z.std()


def _pairwise_auc(scores, mask):
    """The AUC the slow obvious way: over every (inside, outside) pair, wins count 1 and ties 1/2."""
    pos, neg = scores[mask], scores[~mask]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size))


def test_a_trained_layer_model_ranks_a_noise_region_above_the_rest():
    """What the pasted-region check measures, in small: after training on smooth maps, the map of a map with a
    noise square puts the square above everything else; the same model untrained does not."""
    rng = np.random.default_rng(0)
    train = torch.from_numpy(_smooth_maps(rng, 64)).float()
    torch.manual_seed(0)
    layer = vm.LayerVLM(4)
    untrained = vm.LayerVLM(4)
    untrained.load_state_dict(layer.state_dict())
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for step in range(150):
        idx = torch.from_numpy(rng.choice(len(train), 16))
        loss, _ = layer(train[idx], want_map=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = _smooth_maps(rng, 8)
    test[:, :, 5:10, 5:10] = rng.standard_normal((8, 4, 5, 5))
    mask = np.zeros((15, 15), bool)  # map cell (i, j) scores the predictions of z[i, j] and its neighbours
    mask[5:10, 5:10] = True
    with torch.no_grad():
        trained_maps = layer(torch.from_numpy(test).float())[1].numpy()
        untrained_maps = untrained(torch.from_numpy(test).float())[1].numpy()
    trained_auc = np.mean([_pairwise_auc(m, mask) for m in trained_maps])
    untrained_auc = np.mean([_pairwise_auc(m, mask) for m in untrained_maps])
    assert trained_auc > 0.9 and trained_auc > untrained_auc + 0.2, (trained_auc, untrained_auc)

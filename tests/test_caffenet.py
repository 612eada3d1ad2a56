"""CaffeNet as published: layer shapes, parameter count, pooling/LRN order, init, input convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from texttopicnet.networks.caffenet import FEATURE_LAYERS, MEAN_BGR, CaffeNet, param_groups, preprocess_uint8
from texttopicnet.training.losses import sigmoid_cross_entropy

EXPECTED_PARAMS = {
    "conv1.weight": (96, 3, 11, 11), "conv1.bias": (96,),
    "conv2.weight": (256, 48, 5, 5), "conv2.bias": (256,),
    "conv3.weight": (384, 256, 3, 3), "conv3.bias": (384,),
    "conv4.weight": (384, 192, 3, 3), "conv4.bias": (384,),
    "conv5.weight": (256, 192, 3, 3), "conv5.bias": (256,),
    "fc6.weight": (4096, 9216), "fc6.bias": (4096,),
    "fc7.weight": (4096, 4096), "fc7.bias": (4096,),
    "fc8.weight": (40, 4096), "fc8.bias": (40,),
}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return CaffeNet(num_outputs=40).eval()


def test_parameter_names_shapes_and_count(net):
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == EXPECTED_PARAMS  # names map 1:1 to Caffe layer blobs, and nothing else is stored
    assert sum(p.numel() for p in net.parameters()) == 57_032_104


def test_groups_and_layer_hyperparameters(net):
    assert [getattr(net, n).groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert net.conv1.stride == (4, 4) and net.conv2.padding == (2, 2) and net.conv5.padding == (1, 1)
    assert net.drop6.p == 0.5 and net.drop7.p == 0.5


def test_feature_shapes_at_227(net):
    x = torch.randn(2, 3, 227, 227) * 50
    with torch.no_grad():
        feats = net.extract(x, FEATURE_LAYERS)
    shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
    assert shapes == {"conv1": (96, 27, 27), "conv2": (256, 13, 13), "conv3": (384, 13, 13),
                      "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
                      "fc6": (4096,), "fc7": (4096,), "fc8": (40,), "prob": (40,)}
    assert torch.equal(feats["fc8"], net(x))
    assert torch.all((feats["prob"] > 0) & (feats["prob"] < 1))
    assert torch.allclose(feats["prob"], torch.sigmoid(feats["fc8"]))
    with pytest.raises(ValueError, match="unknown layer"):
        net.extract(x, ["conv6"])


def _lrn_reference(x: np.ndarray, size=5, alpha=1e-4, beta=0.75, k=1.0) -> np.ndarray:
    # Caffe ACROSS_CHANNELS: x_c / (k + alpha/size * sum_{c' in window(c)} x_c'^2)^beta
    c = x.shape[1]
    sq = x.astype(np.float64) ** 2
    out = np.empty_like(x, dtype=np.float64)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c, i + size // 2 + 1)
        out[:, i] = x[:, i] / (k + alpha / size * sq[:, lo:hi].sum(1)) ** beta
    return out


def test_conv1_pools_before_lrn_with_caffe_lrn(net):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 227, 227) * 60
    with torch.no_grad():
        got = net.extract(x, ["conv1"])["conv1"].double().numpy()
        r = F.relu(F.conv2d(x, net.conv1.weight, net.conv1.bias, stride=4))
        pooled = F.max_pool2d(r, 3, 2)
        want = _lrn_reference(pooled.numpy())
        lrn_first = F.max_pool2d(torch.from_numpy(_lrn_reference(r.numpy())).float(), 3, 2).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, lrn_first, rtol=1e-5, atol=1e-6)  # the AlexNet order would be caught


def test_published_initialisation():
    torch.manual_seed(2)
    net = CaffeNet(num_outputs=40)
    stds = {"conv1": 0.01, "conv2": 0.01, "conv3": 0.01, "conv4": 0.01, "conv5": 0.01,
            "fc6": 0.005, "fc7": 0.005, "fc8": 0.01}
    bias = {"conv1": 0.0, "conv2": 1.0, "conv3": 0.0, "conv4": 1.0, "conv5": 1.0, "fc6": 1.0, "fc7": 1.0, "fc8": 0.0}
    for name, std in stds.items():
        w = getattr(net, name).weight.detach()
        assert abs(w.mean().item()) < 0.1 * std, name
        assert abs(w.std().item() - std) < 0.05 * std, name
        assert torch.all(getattr(net, name).bias == bias[name]), name


def test_preprocess_uint8_is_bgr_mean_subtracted_0_255():
    rgb = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 200, 255
    x = preprocess_uint8(rgb)
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    expected = [255 - MEAN_BGR[0], 200 - MEAN_BGR[1], 10 - MEAN_BGR[2]]
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected))
    # Channel-first input gives the same result.
    assert torch.equal(preprocess_uint8(rgb.permute(0, 3, 1, 2)), x)


def test_param_groups_bias_lr_x2_no_decay(net):
    groups = param_groups(net, weight_decay=5e-4, base_lr=0.001)
    weights, biases = groups
    assert weights["lr"] == 0.001 and weights["weight_decay"] == 5e-4
    assert biases["lr"] == 0.002 and biases["weight_decay"] == 0.0
    assert len(weights["params"]) == 8 and len(biases["params"]) == 8
    assert all(p.dim() == 1 for p in biases["params"]) and all(p.dim() > 1 for p in weights["params"])


def test_one_sgd_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(3)
    net = CaffeNet(num_outputs=40, dropout=0.5)
    x = preprocess_uint8(torch.randint(0, 256, (4, 227, 227, 3), dtype=torch.uint8))
    y = torch.distributions.Dirichlet(torch.full((40,), 0.3)).sample((4,))
    opt = torch.optim.SGD(param_groups(net, 5e-4, 0.001), lr=0.001, momentum=0.9)

    def eval_loss():
        net.eval()
        with torch.no_grad():
            return sigmoid_cross_entropy(net(x), y).item()

    before = eval_loss()
    net.train()
    opt.zero_grad()
    sigmoid_cross_entropy(net(x), y).backward()
    opt.step()
    after = eval_loss()
    assert np.isfinite(before) and after < before - 1e-3


def test_replace_head_keeps_features(net):
    torch.manual_seed(4)
    other = CaffeNet(num_outputs=40)
    other.load_state_dict(net.state_dict())
    other.replace_head(20)
    assert other.fc8.weight.shape == (20, 4096) and torch.all(other.fc8.bias == 0)
    assert torch.equal(other.fc7.weight, net.fc7.weight)

"""Pre-ReLU taps, standardisation statistics, PCA as a 1x1 convolution; the saliency post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.decomposition import PCA

from texttopicnet.networks import backbones
from texttopicnet.vlm import features, saliency


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_caffenet_taps_are_pre_relu_and_stop_early():
    torch.manual_seed(0)
    net = backbones.build("caffenet", 5, seed=0).eval()
    x = torch.randn(2, 3, 227, 227) * 50
    called = []
    handle = net.fc6.register_forward_hook(lambda *a: called.append(1))
    taps = features.LayerTaps(net, "caffenet", ["data", "conv5"])
    with torch.no_grad():
        got = taps(x)
        post = net.extract(x, ["conv4"])["conv4"]       # CaffeNet's own path: after the ReLU
        want = net.conv5(post)                           # conv5 before its ReLU
    assert not called, "the forward pass went past the deepest tapped layer"
    assert torch.equal(got["data"], x)
    torch.testing.assert_close(got["conv5"], want)
    assert (got["conv5"] < 0).any()
    with torch.no_grad():  # hooks are inactive outside the taps' own calls
        assert net(x).shape == (2, 5)
    handle.remove()


def test_vgg16_taps_survive_the_in_place_relu():
    net = backbones.build("vgg16", 3, seed=0).eval()
    x = torch.randn(1, 3, 32, 32)
    taps = features.LayerTaps(net, "vgg16", ["conv1_1", "conv2_2", "features.3"])
    with torch.no_grad():
        got = taps(x)
        conv1_1 = net.features[0](x)
        h = net.features[4](torch.relu(net.features[2](torch.relu(conv1_1))))  # pool1 of conv1_2
        conv2_2 = net.features[7](torch.relu(net.features[5](h)))
    torch.testing.assert_close(got["conv1_1"], conv1_1)
    torch.testing.assert_close(got["conv2_2"], conv2_2)
    assert (got["conv1_1"] < 0).any() and (got["features.3"] >= 0).all()  # a module path: that module's output


def test_unknown_layer_is_a_clear_error():
    net = backbones.build("caffenet", 5, seed=0)
    with pytest.raises(Exception, match="unknown layer 'conv9'"):
        features.LayerTaps(net, "caffenet", ["conv9"])


def test_projection_equals_sklearn_pca_of_standardised_features():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(7, 7))
    # correlated channels with offsets, as conv features are
    feats = [torch.einsum("nchw,cd->ndhw", torch.from_numpy(rng.normal(size=(2, 7, 5, 6))), torch.from_numpy(mix)) + 2.0
             for _ in range(3)]
    acc = features.StatsAccumulator(samples_per_image=30, rng=np.random.default_rng(1))
    for f in feats:
        acc.add({"l": f}, ["l"])
    proj = acc.projection("l")
    assert proj.out_channels == 4  # ceil(7 / 2)
    allf = torch.cat(feats).permute(0, 2, 3, 1).reshape(-1, 7).numpy()
    mean, std = allf.mean(axis=0), allf.std(axis=0)  # every image has the same size: means of means agree
    np.testing.assert_allclose(proj.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(proj.std.numpy(), std, rtol=1e-4)
    samples = (np.concatenate(acc.samples["l"]).astype(np.float64) - mean) / std
    ref = PCA(n_components=4).fit(samples)
    x = torch.cat(feats).float()
    got = proj(x).permute(0, 2, 3, 1).reshape(-1, 4).numpy()
    want = ref.transform((allf - mean) / std)
    signs = np.sign((got * want).sum(axis=0))  # principal axes are defined up to sign
    np.testing.assert_allclose(got * signs, want, atol=2e-3)


def test_statistics_and_projections_in_one_pass():
    rng = np.random.default_rng(2)
    batches = [torch.from_numpy(rng.normal(size=(2, 3, 8, 8))).float() for _ in range(3)]

    class Tap:
        def __call__(self, x):
            return {"data": x, "fc": x.mean(dim=(2, 3))}

    fit = features.fit_statistics(Tap(), batches, 6, ["data"], num_samples=60, seed=0, progress=False)
    assert set(fit["stats"]) == {"data", "fc"} and fit["stats"]["fc"]["mean"].shape == (3,)
    allx = torch.cat(batches)
    np.testing.assert_allclose(fit["stats"]["fc"]["std"], allx.mean(dim=(2, 3)).std(dim=0, unbiased=False).numpy(),
                               rtol=1e-4)
    assert fit["projections"]["data"].out_channels == 2


def _bilinear_reference(a, factor):
    # sample at the centres of the output pixels, in input coordinates, clamped at the edges
    h, w = a.shape
    ys = np.clip((np.arange(h * factor) + 0.5) / factor - 0.5, 0, h - 1)
    xs = np.clip((np.arange(w * factor) + 0.5) / factor - 0.5, 0, w - 1)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return ndimage.map_coordinates(a, [yy, xx], order=1, mode="nearest")


def test_saliency_postprocessing_matches_a_scipy_reference():
    rng = np.random.default_rng(3)
    m = rng.random((6, 7)) * 4
    shape = (110, 127)
    got = saliency.postprocess(m, shape, stride=16)
    up = _bilinear_reference(np.sqrt(m), 16)                     # (96, 112)
    top, left = (shape[0] - 96) // 2, (shape[1] - 112) // 2
    padded = np.pad(up, ((top, shape[0] - 96 - top), (left, shape[1] - 112 - left)))
    blurred = ndimage.gaussian_filter(padded, (0.03 * shape[0], 0.03 * shape[1]))
    want = (blurred - blurred.min()) / (blurred.max() - blurred.min())
    np.testing.assert_allclose(got, want, atol=1e-10)
    assert saliency.to_uint8(got).max() == 255


def test_layer_strides_and_center_bias():
    assert [saliency.layer_stride(227, n) for n in (227, 55, 27, 13)] == [1, 4, 8, 16]
    assert [saliency.layer_stride(224, n) for n in (224, 112, 56, 28, 14)] == [1, 2, 4, 8, 16]
    cb = saliency.center_bias((9, 11))
    assert np.unravel_index(cb.argmax(), cb.shape) == (4, 5)
    big = saliency.postprocess(np.ones((30, 30)), (100, 100), stride=4)  # larger than the image: cropped
    assert big.shape == (100, 100)

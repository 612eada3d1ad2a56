"""The backbone registry: every architecture built, trained a few steps, its layers extracted and
frozen, saved and loaded back; CaffeNet's defaults bit for bit as before the registry.

References are independent of the code under test: activations are recomputed by chaining the
torchvision modules by hand, frozen sets come from a plain enumeration of ``named_parameters``,
the ImageNet preprocessing from NumPy, and torchvision ``.pth`` files are written by
``torch.save(torchvision_model.state_dict())``. Small inputs (64 px; CaffeNet 227) and one
thread keep the file fast on a shared 2-core machine.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors import safe_open
from safetensors.torch import save_file

from texttopicnet.core.errors import UserError
from texttopicnet.networks import backbones, caffenet, layers
from texttopicnet.training.checkpoint import save_checkpoint
from texttopicnet.training.losses import build_loss
from texttopicnet.weights.loading import load_network

ARCHS = ["caffenet", "alexnet", "vgg16", "resnet50", "densenet161", "googlenet"]
TV = ARCHS[1:]
K = 12
SIDE = {"caffenet": 227}  # the others take 64 px test images
# Expected shapes (C, H, W) of the recommended layers at 64 px, from the published architectures:
# 1/16 and 1/32 of the input after the last two stages; channel counts of each paper.
SHAPES = {
    "alexnet": {"pool5": (256, 1, 1), "fc6": (4096,), "fc7": (4096,), "logits": (K,)},
    "vgg16": {"relu5_1": (512, 4, 4), "relu5_3": (512, 4, 4), "pool5": (512, 2, 2), "fc6": (4096,),
              "fc7": (4096,), "logits": (K,)},
    "resnet50": {"layer3": (1024, 4, 4), "layer4": (2048, 2, 2), "avgpool": (2048, 1, 1), "logits": (K,)},
    "densenet161": {"features.denseblock3": (2112, 4, 4), "norm5": (2208, 2, 2), "relu5": (2208, 2, 2),
                    "avgpool": (2208, 1, 1), "logits": (K,)},
    "googlenet": {"inception4d": (528, 4, 4), "inception4e": (832, 4, 4), "inception5b": (1024, 2, 2),
                  "avgpool": (1024, 1, 1), "logits": (K,)},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny tensors, shared 2-core machine


_BUILT: dict[str, torch.nn.Module] = {}


def built(arch: str) -> torch.nn.Module:
    """One seeded model per architecture for the module (VGG-16 is 134M parameters)."""
    if arch not in _BUILT:
        _BUILT[arch] = backbones.build(arch, K, seed=0).eval()
    return _BUILT[arch]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    _BUILT.clear()


def images(arch: str, n: int = 2, seed: int = 0) -> torch.Tensor:
    side = SIDE.get(arch, 64)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, side, side, 3), dtype=torch.uint8, generator=g)


def same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- registry and CaffeNet defaults ------------------------------------------------------------------

def test_registry_names_and_errors():
    assert backbones.names() == ARCHS
    with pytest.raises(UserError, match="resnet50"):
        backbones.get("resnet18")
    with pytest.raises(UserError, match="transform_input"):
        backbones.build("googlenet", K, nonsense=1)
    for arch in ARCHS:
        spec = backbones.get(arch)
        assert spec.crop == (227 if arch == "caffenet" else 224) and spec.resize == 256
        assert spec.gap_head == (arch in ("resnet50", "densenet161", "googlenet"))


def test_caffenet_build_is_the_old_constructor_bit_for_bit():
    torch.manual_seed(5)
    a = backbones.build("caffenet", 40, dropout=0.3)
    torch.manual_seed(5)
    b = caffenet.CaffeNet(num_outputs=40, dropout=0.3)
    assert type(a) is caffenet.CaffeNet and same_state(a, b) and a.drop6.p == 0.3
    # The random baseline: the old rule (construct, seed, reset) re-implemented here.
    net, info = load_network("random", num_outputs=K, seed=3)
    with torch.random.fork_rng(devices=[]):
        ref = caffenet.CaffeNet(num_outputs=K)
        torch.manual_seed(3)
        ref.reset_parameters()
    assert same_state(net, ref) and info["sha256"] == "random-seed3-k12" and info["arch"] == "caffenet"
    assert backbones.export_metadata(net) == {"num_outputs": "12"}


def test_caffenet_param_groups_unchanged():
    net = built("caffenet")
    old = caffenet.param_groups(net, 5e-4, 0.01)
    new = backbones.param_groups(net, 5e-4, 0.01)
    assert len(old) == len(new) == 2
    for o, n in zip(old, new):
        assert [id(p) for p in o["params"]] == [id(p) for p in n["params"]]
        assert (o["lr"], o["weight_decay"], o["lr_mult"]) == (n["lr"], n["weight_decay"], n["lr_mult"])


def test_param_groups_for_batchnorm_nets_and_fine_tuning_heads():
    net = built("resnet50")
    groups = backbones.param_groups(net, 1e-4, 0.1, head_lr_mult=10.0)
    named = {id(p): n for n, p in net.named_parameters()}
    kinds = {}
    for g in groups:
        for p in g["params"]:
            kinds[named[id(p)]] = (g["lr"], g["weight_decay"])
    assert len(kinds) == len(named)
    # Plain rules: conv weights lr x1 with decay; BN scale/shift lr x1 no decay; head x10, its bias x20.
    assert kinds["conv1.weight"] == (0.1, 1e-4)
    assert kinds["layer1.0.bn1.weight"] == (0.1, 0.0) and kinds["layer1.0.bn1.bias"] == (0.1, 0.0)
    assert kinds["fc.weight"] == pytest.approx((1.0, 1e-4)) and kinds["fc.bias"] == pytest.approx((2.0, 0.0))


# --- preprocessing, features, shapes -----------------------------------------------------------------

def test_imagenet_preprocessing_against_numpy():
    x = images("resnet50", 2)
    got = backbones.preprocess("resnet50", x).numpy()
    arr = x.numpy().astype(np.float64).transpose(0, 3, 1, 2) / 255.0  # RGB kept
    want = (arr - np.array([0.485, 0.456, 0.406])[None, :, None, None]) / np.array([0.229, 0.224, 0.225])[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(backbones.preprocess("caffenet", x), caffenet.preprocess_uint8(x))


def _manual(arch: str, m, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Activations recomputed by chaining torchvision's modules by hand."""
    if arch == "alexnet":
        pool5 = m.features(x)
        fc7 = m.classifier[:6](torch.flatten(m.avgpool(pool5), 1))
        return {"pool5": pool5, "fc7": fc7}
    if arch == "vgg16":  # conv5_3 is pre-ReLU although the net's ReLU runs in place
        return {"conv5_3": m.features[:29](x), "relu5_3": m.features[:30](x), "pool5": m.features(x)}
    if arch == "resnet50":
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        h = m.layer3(m.layer2(m.layer1(h)))
        return {"layer3": h, "layer4": m.layer4(h)}
    if arch == "densenet161":
        f = m.features(x)
        return {"norm5": f, "avgpool": F.adaptive_avg_pool2d(F.relu(f), 1)}
    if arch == "googlenet":
        h = x
        for name in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                     "inception4a", "inception4b", "inception4c", "inception4d"):
            h = getattr(m, name)(h)
        return {"inception4d": h}
    raise AssertionError(arch)


@pytest.mark.parametrize("arch", TV)
def test_feature_layers_shapes_and_values(arch):
    m = built(arch)
    spec = backbones.get(arch)
    x = spec.preprocess(images(arch))
    names = list(spec.feature_layers) + ["prob"]
    with torch.no_grad():
        manual = _manual(arch, m, x)
        extra = [n for n in manual if n not in names]
        feats = layers.FeatureExtractor(m, names + extra)(x)
        out = m(x)
    assert list(feats) == names + extra
    assert {k: tuple(v.shape[1:]) for k, v in feats.items() if k in SHAPES[arch]} == SHAPES[arch]
    assert torch.equal(feats["logits"], out) and torch.allclose(feats["prob"], torch.sigmoid(out))
    for name, want in manual.items():
        torch.testing.assert_close(feats[name], want, rtol=1e-5, atol=1e-5)
    assert set(spec.default_layers) <= set(layers.layer_names(m))
    with pytest.raises(UserError, match="unknown layer"):
        layers.FeatureExtractor(m, ["no_such_layer"])


def test_caffenet_extraction_through_the_registry():
    m = built("caffenet")
    x = backbones.preprocess(m, images("caffenet"))
    with torch.no_grad():
        got = layers.extract(m, x, ["fc7", "logits", "prob"])
        ref = m.extract(x, ["fc7", "fc8", "prob"])
    assert torch.equal(got["fc7"], ref["fc7"]) and torch.equal(got["logits"], ref["fc8"])
    assert torch.equal(got["prob"], ref["prob"])


@pytest.mark.parametrize("arch", TV)
def test_smallest_declared_input_runs(arch):
    m = built(arch)
    side = backbones.get(arch).min_input
    with torch.no_grad():
        assert m(torch.zeros(1, 3, side, side)).shape == (1, K)


def test_random_init_is_seeded_and_body_independent_of_outputs():
    state = torch.get_rng_state()
    a, ia = load_network("random", num_outputs=K, seed=1, arch="googlenet")
    b, _ = load_network("random", num_outputs=40, seed=1, arch="googlenet")
    c, _ = load_network("random", num_outputs=K, seed=2, arch="googlenet")
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert ia["sha256"] == "random-googlenet-seed1-k12" and ia["arch"] == "googlenet" and not a.training
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    body = [k for k in sa if not k.startswith("fc.")]
    assert all(torch.equal(sa[k], sb[k]) for k in body)
    assert not torch.equal(sa["conv1.conv.weight"], sc["conv1.conv.weight"])
    head = a.fc.weight.detach()
    assert torch.all(a.fc.bias == 0) and abs(head.std().item() - 0.01) < 0.002  # N(0, 0.01^2) head
    _, io = load_network("random", num_outputs=K, seed=1, arch="googlenet", options={"transform_input": True})
    assert io["sha256"].startswith("random-googlenet-seed1-k12-o") and io["options"]["transform_input"] is True


# --- training, freezing ------------------------------------------------------------------------------

# (arch, loss, freeze point, module prefixes that must be frozen: a plain enumeration)
TRAIN_CASES = [
    ("caffenet", "sigmoid_ce", "conv4", ("conv1.", "conv2.", "conv3.", "conv4.")),
    ("alexnet", "mse", "conv5", tuple(f"features.{i}." for i in range(12))),
    ("vgg16", "cosine", "fc6", tuple(f"features.{i}." for i in range(31)) + ("classifier.0.",)),
    ("resnet50", "triplet", "layer2", ("conv1.", "bn1.", "layer1.", "layer2.")),
    ("densenet161", "sigmoid_ce", "features.denseblock2",
     tuple(f"features.{n}." for n in ("conv0", "norm0", "denseblock1", "transition1", "denseblock2"))),
    ("googlenet", "triplet", "inception4d",  # the search demo's setting
     tuple(f"{n}." for n in ("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a",
                             "inception4b", "inception4c", "inception4d"))),
]


def _calibrate_batchnorm(m, x):
    """Running statistics = this batch's (as pretrained weights would have them). Straight from init
    they are 0/1, so frozen eval-mode BatchNorms would shrink GoogLeNet's outputs to ~1e-6."""
    norms = [b for b in m.modules() if isinstance(b, torch.nn.modules.batchnorm._BatchNorm)]
    for b in norms:
        b.reset_running_stats()
        b.momentum = None  # cumulative average: one pass gives the batch statistics
    m.train()
    with torch.no_grad():
        m(x)
    for b in norms:
        b.momentum = 0.1


@pytest.mark.parametrize("arch,loss_name,point,prefixes", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_sgd_steps_with_frozen_layers(arch, loss_name, point, prefixes):
    m = copy.deepcopy(built(arch))
    spec = backbones.get(arch)
    n = 2 if arch in ("caffenet", "vgg16") else 4  # the two big ones: smallest batch (BatchNorm nets: 4)
    x = spec.preprocess(images(arch, n=n, seed=1))
    _calibrate_batchnorm(m, x)
    frozen = layers.freeze_until(m, point)
    expected = [n for n, _ in m.named_parameters() if n.startswith(prefixes)]
    assert frozen == expected and layers.frozen_until(m) == point
    assert all(not p.requires_grad for n, p in m.named_parameters() if n in expected)
    assert all(p.requires_grad for n, p in m.named_parameters() if n not in expected)

    opts = {"negatives": "hard", "margin": 1.0} if loss_name == "triplet" else {}  # margin: a non-zero loss
    loss_fn = build_loss(loss_name, **opts)
    y = torch.from_numpy(np.random.default_rng(2).dirichlet(np.full(K, 0.3), n) * 0.9).float()  # sums <= 1
    before = {n: t.clone() for n, t in m.state_dict().items()}
    opt = torch.optim.SGD(backbones.param_groups(m, 5e-4, 1e-5), lr=1e-5, momentum=0.9)

    def loss_now():
        torch.manual_seed(0)  # same dropout masks every time
        return loss_fn(m(x), y, step=0)

    layers.train_mode(m)
    with torch.no_grad():
        first = loss_now().item()
    opt.zero_grad()
    loss_now().backward()
    opt.step()  # one small step on a fixed batch: the loss must go down (first order)
    with torch.no_grad():
        last = loss_now().item()
    assert np.isfinite(first) and last < first
    after = m.state_dict()
    frozen_modules = {n.rpartition(".")[0] for n in expected}
    for name, value in after.items():
        owner = name.rpartition(".")[0]
        if owner in frozen_modules:  # weights and BatchNorm statistics of frozen layers: untouched
            assert torch.equal(value, before[name]), name
    assert not torch.equal(after[f"{spec.head}.weight"], before[f"{spec.head}.weight"])


def test_extractor_follows_train_mode_and_keeps_frozen_norms():
    m = copy.deepcopy(built("resnet50"))
    layers.freeze_until(m, "layer1")
    layers.train_mode(m)
    run = layers.FeatureExtractor(m, ["layer2"])
    x = backbones.preprocess(m, images("resnet50", n=2))
    assert not m.layer1[0].bn1.training and m.layer2[0].bn1.training
    stats = m.layer1[0].bn1.running_mean.clone()
    with torch.no_grad():
        run(x)  # train mode: batch statistics below layer1, frozen running statistics in it
        assert torch.equal(m.layer1[0].bn1.running_mean, stats) and not m.layer1[0].bn1.training
        m.eval()
        torch.testing.assert_close(run(x)["layer2"], m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))


def test_freeze_errors_list_valid_names():
    m = built("googlenet")
    with pytest.raises(UserError, match="inception4d"):
        layers.freeze_until(copy.deepcopy(m), "inception9z")
    with pytest.raises(UserError, match="cannot freeze"):
        layers.freeze_until(copy.deepcopy(m), "fc")


# --- saving and loading ------------------------------------------------------------------------------

def _outputs(m, arch):
    with torch.no_grad():
        return m.eval()(backbones.preprocess(arch, images(arch, seed=7)))


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_and_safetensors_round_trip(arch, tmp_path):
    m = built(arch)
    want = _outputs(m, arch)
    if arch in ("caffenet", "resnet50", "googlenet"):  # torch.load is slow per tensor: three suffice
        ck = tmp_path / "checkpoint.pt"
        save_checkpoint(ck, {"model": m.state_dict(), "arch": backbones.describe(m), "iteration": 1})
        net, info = load_network(ck)
        assert info["arch"] == arch and info["num_outputs"] == K and info["notes"] == []
        assert same_state(net, m) and torch.equal(_outputs(net, arch), want)

    st = tmp_path / "model.safetensors"
    meta = backbones.export_metadata(m)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(st), metadata=meta)
    with safe_open(str(st), framework="pt") as fh:
        assert set(fh.metadata()) == ({"num_outputs"} if arch == "caffenet" else {"arch"})
    net2, info2 = load_network(st)
    assert info2["arch"] == arch and same_state(net2, m) and torch.equal(_outputs(net2, arch), want)
    other = "resnet50" if arch != "resnet50" else "vgg16"
    if arch != "caffenet":
        with pytest.raises(UserError, match="records architecture"):
            load_network(st, arch=other)


@pytest.mark.parametrize("arch", TV)
def test_torchvision_state_dict_pth(arch, tmp_path):
    extra = {"aux_logits": True, "init_weights": True} if arch == "googlenet" else {}
    torch.manual_seed(11)
    ref = getattr(torchvision.models, arch)(weights=None, **extra).eval()  # ImageNet layout, 1000 classes
    sd = ref.state_dict()
    if arch == "densenet161":  # the key style of torchvision's published DenseNet files
        sd = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in sd.items()}
    path = tmp_path / f"{arch}.pth"
    torch.save(sd, path)

    if arch == "resnet50":  # the error paths once (each load of a big file costs seconds)
        with pytest.raises(UserError, match=r"--arch.*\['resnet50'\]"):
            load_network(path)
        with pytest.raises(UserError, match="outputs"):
            load_network(path, arch=arch, num_outputs=K)
    net, info = load_network(path, arch=arch)
    assert info["num_outputs"] == 1000 and info["sha256"] == info["file_sha256"]
    x = backbones.preprocess(arch, images(arch, seed=3))
    if arch == "googlenet":  # torchvision's ImageNet GoogLeNet runs with transform_input=True
        ref.transform_input = True
        assert any("aux" in n for n in info["notes"]) and info["options"]["transform_input"] is True
    if arch == "densenet161":
        assert any("legacy" in n for n in info["notes"])
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)

    if arch not in ("resnet50", "googlenet"):
        return
    head = backbones.get(arch).head  # a new K-way head on ImageNet weights (generic: two nets suffice)
    net2, info2 = load_network(path, arch=arch, num_outputs=K, replace_head=True, seed=4)
    assert net2.get_submodule(head).out_features == K and info2["sha256"] != info2["file_sha256"]
    body = {k: v for k, v in net2.state_dict().items() if not k.startswith(head + ".")}
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in body.items())


def test_bad_state_dicts_are_named(tmp_path):
    m = built("resnet50")
    sd = dict(m.state_dict())
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(1)
    save_checkpoint(tmp_path / "bad.pt", {"model": sd, "arch": backbones.describe(m)})
    with pytest.raises(UserError, match="layer1.0.conv1.weight.*extra.weight"):
        load_network(tmp_path / "bad.pt")
    prefixed = {"module." + k: v for k, v in m.state_dict().items()}
    save_checkpoint(tmp_path / "ddp.pt", {"model": prefixed, "arch": backbones.describe(m)})
    net, info = load_network(tmp_path / "ddp.pt")
    assert same_state(net, m) and any("module." in n for n in info["notes"])
    with pytest.raises(UserError, match="unknown architecture"):
        load_network("random", arch="lenet")

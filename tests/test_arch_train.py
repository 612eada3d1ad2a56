"""cnn/02_train.py for every backbone and loss: trained, evaluated and exported through the real loop.

Tiny packed stores (10 images of 72 px), 32 px crops (64 for AlexNet, the smallest it accepts, and
for ResNet/DenseNet, whose last BatchNorm layers would see 1x1 maps: with two images per batch their
batch statistics degenerate and the gradients explode), two iterations of two images, one torch thread (two OpenMP threads spin against other jobs on a
shared 2-core machine). References are independent of the loop: the end-of-run evaluation is
recomputed from the exported file with the centre crop, the ImageNet convention and the losses
written out in NumPy; baselines likewise; frozen layers are compared with the file they came from.
CaffeNet's default run is tests/test_train.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import load_script
from safetensors import safe_open

from texttopicnet.core.errors import DataError, UserError
from texttopicnet.data.packing import pack_images
from texttopicnet.networks import backbones
from texttopicnet.training.checkpoint import load_checkpoint
from texttopicnet.training.export import load_exported
from texttopicnet.training.toydata import make_labels_run
from texttopicnet.weights.loading import load_network

K = 5
SIZE = 72   # packed side
CROP = {"alexnet": 64, "resnet50": 64, "densenet161": 64}  # the others: 32
TINY = ["--total-images", "4", "--batch-size", "2", "--checkpoint-every", "100", "--log-every", "1",
        "--eval-images", "3", "--deterministic", "--device", "cpu", "--seed", "3", "--no-tensorboard",
        "--loader-threads", "1"]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny tensors, shared 2-core machine


def _store(base: Path, labels_of=lambda y: y) -> Path:
    labels, paths = make_labels_run(base, n=10, k=K, seed=0, size=32)
    res = pack_images(paths, base / "packed" / "images.npy", size=SIZE, progress=False)
    np.save(base / "packed" / "labels.npy", labels_of(labels[res.kept]).astype(np.float32))
    (base / "packed" / "index.txt").write_text("".join(paths[i] + "\n" for i in res.kept))
    return base / "packed"


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    return _store(tmp_path_factory.mktemp("arch_toy"))


@pytest.fixture(scope="module")
def packed_vectors(tmp_path_factory) -> Path:
    """Signed targets (topic rows shifted by -0.1): what a vector space gives the vector losses."""
    return _store(tmp_path_factory.mktemp("arch_vec"), lambda y: y - 0.1)


def _run(tmp_path: Path, packed: Path, name: str = "run") -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "packed").symlink_to(packed, target_is_directory=True)
    return run


def _train(run: Path, *extra: str) -> dict:
    assert load_script("cnn/02_train.py").main(["--out", str(run), *TINY, *extra]) == 0
    return json.loads((run / "train" / "summary.json").read_text())


def _eval_outputs(net: torch.nn.Module, packed: Path, crop: int, count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of the eval rows (evenly spaced) on the centre crop in the ImageNet convention, by hand."""
    images, labels = np.load(packed / "images.npy"), np.load(packed / "labels.npy").astype(np.float64)
    rows = np.unique(np.linspace(0, len(images) - 1, count).round().astype(int))
    off = (SIZE - crop) // 2
    x = (images[rows, off:off + crop, off:off + crop] / 255.0 - MEAN) / STD
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2)).float()).double().numpy()
    return out, labels[rows]


def _bce_sum(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1)


@pytest.mark.parametrize("arch", ["alexnet", "vgg16", "resnet50", "densenet161", "googlenet"])
def test_every_backbone_trains_evaluates_and_exports(arch, packed, tmp_path):
    crop = CROP.get(arch, 32)
    run = _run(tmp_path, packed)
    summary = _train(run, "--arch", arch, "--crop", str(crop))
    ck = torch.load(run / "train" / "checkpoint.pt", weights_only=True, mmap=True)  # VGG's is 1 GB: read lazily
    assert ck["arch"]["arch"] == arch and ck["arch"]["num_outputs"] == K and ck["loss"] == {"name": "sigmoid_ce"}
    assert ck["config"]["crop"] == crop and ck["config"]["arch"] == arch and ck["iteration"] == 2
    assert summary["arch"] == ck["arch"] and summary["iterations"] == 2
    # the export records its architecture: loading needs no flag, and gives the trained weights
    with safe_open(run / "train" / "model.safetensors", "pt") as fh:
        header = fh.metadata()
    assert list(header) == ["arch"] and json.loads(header["arch"]) == ck["arch"]
    net, info = load_network(run / "train" / "model.safetensors")
    assert info["arch"] == arch and info["num_outputs"] == K
    sd = net.state_dict()
    assert sd.keys() == ck["model"].keys() and all(torch.equal(sd[k], ck["model"][k].to(sd[k].dtype)) for k in sd)
    assert backbones.get(arch).head + ".weight" in sd
    # the end-of-run evaluation, recomputed from the file: centre crop, ImageNet convention, Caffe's BCE sum
    logits, y = _eval_outputs(net, run / "packed", crop)
    p = 1 / (1 + np.exp(-logits))
    assert summary["eval_images"] == 3 and summary["eval_loss"] == pytest.approx(_bce_sum(p, y).mean(), rel=1e-4)
    all_y = np.load(run / "packed" / "labels.npy").astype(np.float64)
    assert summary["mean_baseline_loss"] == pytest.approx(_bce_sum(np.broadcast_to(all_y.mean(0), all_y.shape),
                                                                   all_y).mean(), rel=1e-9)


def test_vector_losses_through_the_loop_and_a_changed_loss_retrains(packed_vectors, tmp_path, capsys):
    run = _run(tmp_path, packed_vectors)
    y_all = np.load(packed_vectors / "labels.npy").astype(np.float64)
    m = y_all.mean(0)
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731

    summary = _train(run, "--arch", "googlenet", "--crop", "32", "--loss", "cosine")
    assert summary["loss"] == {"name": "cosine"} and summary["min_possible_loss"] == pytest.approx(0, abs=1e-12)
    assert summary["mean_baseline_loss"] == pytest.approx((1 - cos(np.broadcast_to(m, y_all.shape), y_all)).mean())
    net, _ = load_network(run / "train" / "model.safetensors")
    out, y = _eval_outputs(net, packed_vectors, 32)
    assert summary["eval_loss"] == pytest.approx((1 - cos(out, y)).mean(), rel=1e-4)
    capsys.readouterr()

    summary = _train(run, "--arch", "googlenet", "--crop", "32", "--loss", "mse")
    assert "holds another network (--loss 'cosine' -> 'mse'): retraining from scratch" in capsys.readouterr().out
    assert summary["loss"] == {"name": "mse"} and summary["initial_loss"] is not None
    assert summary["mean_baseline_loss"] == pytest.approx(((m - y_all) ** 2).sum() / (2 * len(y_all)))
    net, _ = load_network(run / "train" / "model.safetensors")
    out, y = _eval_outputs(net, packed_vectors, 32)
    assert summary["eval_loss"] == pytest.approx(((out - y) ** 2).sum() / (2 * len(y)), rel=1e-4)
    assert load_checkpoint(run / "train" / "checkpoint.pt")["loss"] == {"name": "mse"}


def test_triplet_loss_with_hard_negatives_through_the_loop(packed_vectors, tmp_path):
    run = _run(tmp_path, packed_vectors)
    summary = _train(run, "--arch", "googlenet", "--crop", "32", "--loss", "triplet", "--negatives", "hard",
                     "--margin", "0.2")
    assert summary["loss"] == {"name": "triplet", "margin": 0.2, "negatives": "hard", "seed": 3}
    net, _ = load_network(run / "train" / "model.safetensors")
    out, y = _eval_outputs(net, packed_vectors, 32)
    # the demo's ranking loss written out: L2-normalised, the farthest other caption as the negative
    a = out / np.linalg.norm(out, axis=1, keepdims=True)
    t = y / np.linalg.norm(y, axis=1, keepdims=True)
    loss = 0.0
    for i in range(len(y)):
        d = [((y[i] - y[j]) ** 2).sum() if j != i else -1.0 for j in range(len(y))]
        n = int(np.argmax(d))
        loss += max(0.0, 0.2 + ((a[i] - t[i]) ** 2).sum() - ((a[i] - t[n]) ** 2).sum())
    assert summary["eval_loss"] == pytest.approx(loss / (2 * len(y)), rel=1e-4, abs=1e-7)
    assert np.isfinite(summary["mean_baseline_loss"]) and summary["mean_baseline_loss"] >= 0


def _tensors(ckpt: dict) -> dict:
    out = {f"model.{k}": v for k, v in ckpt["model"].items()}
    for idx, st in ckpt["optimizer"]["state"].items():
        out[f"momentum.{idx}"] = st["momentum_buffer"]
    return out


def test_resume_equals_uninterrupted_for_googlenet_and_triplet(packed_vectors, tmp_path, capsys):
    args = ["--arch", "googlenet", "--crop", "32", "--loss", "triplet", "--total-images", "8"]
    ref = _run(tmp_path, packed_vectors, "ref")
    _train(ref, *args)
    run = _run(tmp_path, packed_vectors, "run")
    script = load_script("cnn/02_train.py")
    assert script.main(["--out", str(run), *TINY, *args, "--stop-after", "2"]) == 0
    assert load_checkpoint(run / "train" / "checkpoint.pt")["iteration"] == 2
    with pytest.raises(UserError, match="trains googlenet, not resnet50"):  # a checkpoint resumes its own network
        script.main(["--out", str(run), *TINY, *args[2:], "--arch", "resnet50"])
    capsys.readouterr()
    summary = _train(run, *args)
    out = capsys.readouterr().out
    assert "resuming from" in out and "changed settings" not in out and summary["iterations"] == 4
    a, b = _tensors(load_checkpoint(run / "train" / "checkpoint.pt")), _tensors(load_checkpoint(ref / "train" /
                                                                                              "checkpoint.pt"))
    assert a.keys() == b.keys() and not [k for k in a if not torch.equal(a[k], b[k])]
    assert (run / "train" / "model.sha256").read_text() == (ref / "train" / "model.sha256").read_text()


def test_init_from_a_torchvision_pth_with_frozen_layers(packed, tmp_path, capsys):
    torch.manual_seed(11)
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=1000)
    pth = tmp_path / "googlenet-imagenet.pth"
    torch.save(tv.state_dict(), pth)  # what a user's ImageNet file looks like: a bare state dict, 1000 classes
    run = _run(tmp_path, packed)
    summary = _train(run, "--arch", "googlenet", "--crop", "32", "--init", str(pth), "--freeze-until", "inception4d")
    assert "starting from" in capsys.readouterr().out
    # torchvision's ImageNet GoogLeNet expects transform_input; a new 5-way head replaced the 1000-way one
    assert summary["arch"] == {"arch": "googlenet", "num_outputs": K,
                               "options": {"dropout": 0.2, "transform_input": True}}
    sd, src = load_exported(run / "train" / "model.safetensors"), tv.state_dict()
    frozen = ("conv1.", "conv2.", "conv3.", "inception3a.", "inception3b.", "inception4a.", "inception4b.",
              "inception4c.", "inception4d.")  # GoogLeNet's modules up to inception4d, in forward order
    for k, v in sd.items():
        if k.startswith(frozen):  # weights, and BatchNorm statistics too: a frozen layer is frozen
            assert torch.equal(v, src[k].to(v.dtype)), k
    learnt = [k for k in sd if k.startswith(("inception4e.", "inception5a.", "inception5b."))
              and k.endswith("weight") and not torch.equal(sd[k], src[k])]
    assert learnt  # the layers after the freeze point trained
    assert sd["fc.weight"].shape == (K, 1024)
    ck = load_checkpoint(run / "train" / "checkpoint.pt")
    assert ck["config"]["freeze_until"] == "inception4d" and ck["config"]["init_weights"]["num_outputs"] == K
    net, info = load_network(run / "train" / "model.safetensors")
    assert info["options"]["transform_input"] is True and net.transform_input


def test_user_mistakes_are_clear_errors(packed, packed_vectors, tmp_path):
    script = load_script("cnn/02_train.py")
    run = _run(tmp_path, packed_vectors)
    with pytest.raises(DataError, match=r"targets in \[0, 1\].*--loss cosine"):  # signed vectors, paper's loss
        script.main(["--out", str(run), *TINY, "--arch", "googlenet", "--crop", "32"])
    run = _run(tmp_path, packed, "big")
    with pytest.raises(DataError, match="larger than the packed images"):  # CaffeNet's 227 of a 72 px store
        script.main(["--out", str(run), *TINY])
    for extra, match in ((["--arch", "resnet50", "--dropout", "0.3"], "no dropout"),
                         (["--arch", "alexnet", "--crop", "32"], "smaller than the 63 px"),
                         (["--loss", "triplet", "--batch-size", "1"], "batch-size must be >= 2"),
                         (["--loss", "triplet", "--margin", "-1"], "margin")):
        with pytest.raises(UserError, match=match):
            script.main(["--out", str(run), *TINY, *extra])
    with pytest.raises(UserError, match="cannot freeze resnet50 up to 'fc'"):
        script.main(["--out", str(run), *TINY, "--arch", "resnet50", "--crop", "32", "--freeze-until", "fc"])
    with pytest.raises(UserError, match="not found"):
        script.main(["--out", str(run), *TINY, "--init", str(tmp_path / "none.pth")])

"""Weights loading (checkpoint / safetensors / random) and cached feature extraction on real JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image
from safetensors.torch import save_file

from texttopicnet.core.errors import UserError
from texttopicnet.data.images import load_resized
from texttopicnet.evaluation.features import cache_dir, cached_features, extract
from texttopicnet.networks.caffenet import CaffeNet, preprocess_uint8
from texttopicnet.training.checkpoint import save_checkpoint
from texttopicnet.weights.loading import load_network


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_weights_are_seeded():
    a, ia = load_network("random", num_outputs=12, seed=3)
    b, _ = load_network("random", num_outputs=12, seed=3)
    c, _ = load_network("random", num_outputs=12, seed=4)
    assert _same(a, b) and not _same(a, c)
    assert ia["sha256"] == "random-seed3-k12" and ia["num_outputs"] == 12 and ia["tag_hint"] == "random"
    assert not a.training  # eval mode: no dropout in features


def test_safetensors_and_checkpoint_round_trip(tmp_path):
    net, _ = load_network("random", num_outputs=20, seed=1)
    st = tmp_path / "finetuned.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    loaded, info = load_network(st)
    assert _same(net, loaded) and info["num_outputs"] == 20 and len(info["sha256"]) == 64
    # a training checkpoint whose state dict still carries a DDP prefix
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    ck = train_dir / "checkpoint.pt"
    save_checkpoint(ck, {"model": {"module." + k: v for k, v in net.state_dict().items()}, "iteration": 5})
    loaded2, info2 = load_network(ck)
    assert _same(net, loaded2) and info2["tag_hint"] == "trained"
    with pytest.raises(UserError, match="outputs"):
        load_network(st, num_outputs=40)


def test_bad_weights_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_network(tmp_path / "nope.safetensors")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="unknown weights format"):
        load_network(tmp_path / "w.bin")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 50)
    with pytest.raises(UserError):
        load_network(tmp_path / "broken.safetensors")
    sd = CaffeNet(num_outputs=5).state_dict()
    sd.pop("conv3.bias")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(UserError, match="conv3.bias"):
        load_network(tmp_path / "partial.safetensors")


@pytest.fixture(scope="module")
def image_list(tmp_path_factory, shared_data) -> list[str]:
    """Six real VOC JPEGs (000001 is truncated) + grayscale, palette PNG, CMYK and a corrupt file."""
    src = shared_data / "voc2007" / "mini" / "VOCdevkit" / "VOC2007" / "JPEGImages"
    d = tmp_path_factory.mktemp("imgs")
    paths = [str(p) for p in sorted(src.glob("*.jpg"))[:6]]
    rgb = Image.open(paths[1]).convert("RGB")
    rgb.convert("L").save(d / "gray.jpg")
    rgb.convert("P").save(d / "palette.png")
    rgb.convert("CMYK").save(d / "cmyk.jpg")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    return paths + [str(d / n) for n in ("gray.jpg", "palette.png", "corrupt.jpg", "cmyk.jpg")]


def test_extract_matches_manual_test_time_input(image_list):
    net, _ = load_network("random", num_outputs=12, seed=0)
    fs = extract(net, image_list, ["pool5", "fc7", "prob"], batch_size=4, progress=False)
    assert [Path(p).name for p, _ in fs.skipped] == ["corrupt.jpg"]
    assert len(fs.paths) == len(image_list) - 1 and fs.kept == [0, 1, 2, 3, 4, 5, 6, 7, 9]
    assert fs.features["pool5"].shape == (9, 256 * 6 * 6) and fs.features["prob"].shape == (9, 12)
    assert fs.features["fc7"].dtype == np.float32 and np.isfinite(fs.features["fc7"]).all()
    # the paper's test-time view by hand: 256x256 warp, centre 227 crop (offset 14), BGR mean subtraction
    arr = load_resized(image_list[2], 256)[14:241, 14:241]
    x = preprocess_uint8(torch.from_numpy(np.ascontiguousarray(arr))[None])
    with torch.no_grad():
        ref = net.extract(x, ["prob"])["prob"].numpy()[0]
    np.testing.assert_allclose(fs.features["prob"][2], ref, rtol=1e-4, atol=1e-6)
    # images differ, so their features do too (not a constant output)
    assert np.abs(fs.features["fc7"][0] - fs.features["fc7"][3]).max() > 0


def test_cache_is_reused_and_keyed_on_the_list(image_list, tmp_path):
    net, info = load_network("random", num_outputs=12, seed=0)
    first = cached_features(tmp_path, net, info, "demo", "test", image_list[:4], ["fc6", "prob"], progress=False)
    assert first.from_cache == {"fc6": False, "prob": False}
    folder = cache_dir(tmp_path, info["sha256"])
    assert (folder / "demo_test_fc6.npy").is_file() and (folder / "demo_test_fc6.txt").is_file()
    again = cached_features(tmp_path, net, info, "demo", "test", image_list[:4], ["prob", "fc6"], progress=False)
    assert again.from_cache == {"prob": True, "fc6": True}
    np.testing.assert_array_equal(again.features["prob"], first.features["prob"])
    other = cached_features(tmp_path, net, info, "demo", "test", image_list[:3], ["prob"], progress=False)
    assert other.from_cache == {"prob": False} and len(other.paths) == 3
    # a truncated cache array is detected and recomputed, not trusted
    (folder / "demo_test_fc6.npy").write_bytes(b"garbage")
    fixed = cached_features(tmp_path, net, info, "demo", "test", image_list[:4], ["fc6"], progress=False)
    assert fixed.from_cache == {"fc6": False}


def test_extract_features_script_on_an_image_list(image_list, tmp_path, capsys):
    script = load_script("experiments/extract_features.py")
    # the list lives beside its images and names them relatively (lines may not leave its folder)
    lst = Path(image_list[6]).parent / "imgs.txt"
    lst.write_text("\n".join(Path(p).name for p in image_list[6:]) + "\n")
    argv = ["--out", str(tmp_path / "run"), "--weights", "random", "--num-outputs", "7", "--layer", "fc8",
            "--dataset", "list", "--image-list", str(lst), "--split", "mine", "--device", "cpu", "--workers", "1"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "skipped 1 of 4" in out
    folder = tmp_path / "run" / "features" / "random-seed0-k7"
    arr = np.load(folder / "imgs_mine_fc8.npy")
    assert arr.shape == (3, 7)
    assert script.main(argv) == 0
    assert "reused from cache" in capsys.readouterr().out
    with pytest.raises(UserError, match="not found"):
        script.main(argv[:-4] + ["--image-list", str(tmp_path / "missing.txt")])


def test_interrupted_extraction_resumes_from_saved_parts(image_list, tmp_path):
    """Parts of 2 images are saved as they finish; a rerun loads them and extracts only the rest."""
    net, _ = load_network("random", num_outputs=5, seed=0)
    paths = image_list[:7]  # 6 real JPEGs + a grayscale one
    full = extract(net, paths, ["fc8"], batch_size=2, progress=False)
    calls = {"n": 0}

    class Boom(Exception):
        pass

    real_extract = net.extract

    def flaky(x, layers):  # dies on the third batch, after two parts were saved
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom()
        return real_extract(x, layers)

    net.extract = flaky
    with pytest.raises(Boom):
        extract(net, paths, ["fc8"], batch_size=2, progress=False, resume_dir=tmp_path / "p", part_images=2)
    assert sorted(f.name for f in (tmp_path / "p").glob("*.npz")) == ["part_000001.npz", "part_000002.npz"]
    calls["n"] = -100  # no more failures; count the batches the rerun computes
    resumed = extract(net, paths, ["fc8"], batch_size=2, progress=False, resume_dir=tmp_path / "p", part_images=2)
    assert calls["n"] == -100 + 2  # images 4-6: two batches, not four
    assert resumed.paths == full.paths
    np.testing.assert_allclose(resumed.features["fc8"], full.features["fc8"], rtol=1e-5, atol=1e-6)


def test_image_list_lines_outside_its_folder_are_refused(tmp_path):
    from texttopicnet.evaluation.features import dataset_images

    root = tmp_path / "lists"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "img" / "a.jpg")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "img" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    lst = root / "list.txt"
    lst.write_text(f"img/a.jpg\n../secret.jpg\n{tmp_path / 'secret.jpg'}\nimg/link.jpg\n\n/etc/passwd\n")
    paths, notes = dataset_images("list", "test", image_list=lst)
    assert paths == [str((root / "img" / "a.jpg").resolve())]
    assert "4 line(s)" in notes[0] and "outside_collection" in notes[0]
    # a --data-root the user named is a second allowed root
    paths, _ = dataset_images("list", "test", data_root=tmp_path, image_list=lst)
    # every line except /etc/passwd now resolves inside tmp_path (lines stay relative to the list's folder)
    secret = str((tmp_path / "secret.jpg").resolve())
    assert paths == [str((root / "img" / "a.jpg").resolve()), secret, secret, secret]


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # torchvision nets: two OpenMP threads spin on a shared 2-core machine
    yield
    torch.set_num_threads(before)


def test_extract_with_a_torchvision_network_uses_its_input(image_list, one_thread):
    """AlexNet: the 224 centre crop of the 256 warp, /255, ImageNet mean/std (written out here in NumPy)."""
    net, info = load_network("random", num_outputs=6, seed=0, arch="alexnet")
    assert info["sha256"] == "random-alexnet-seed0-k6" and info["arch"] == "alexnet"
    paths = image_list[:3] + [image_list[8]]  # three JPEGs and the corrupt file
    fs = extract(net, paths, ["pool5", "logits", "prob"], batch_size=2, progress=False)
    assert fs.kept == [0, 1, 2] and fs.features["pool5"].shape == (3, 256 * 6 * 6)
    arr = load_resized(paths[1], 256)[16:240, 16:240] / 255.0
    x = (arr - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        ref = net(torch.from_numpy(x.transpose(2, 0, 1)[None]).float()).numpy()[0]
    np.testing.assert_allclose(fs.features["logits"][1], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fs.features["prob"][1], 1 / (1 + np.exp(-ref)), rtol=1e-4, atol=1e-6)
    with pytest.raises(UserError, match="unknown layer"):
        extract(net, paths, ["layer4"], progress=False)


def test_extract_features_script_with_another_architecture(image_list, tmp_path, capsys, one_thread):
    script = load_script("experiments/extract_features.py")
    lst = Path(image_list[6]).parent / "imgs_r50.txt"
    lst.write_text("\n".join(Path(p).name for p in image_list[6:]) + "\n")
    argv = ["--out", str(tmp_path / "run"), "--weights", "random", "--arch", "resnet50", "--num-outputs", "7",
            "--dataset", "list", "--image-list", str(lst), "--split", "mine", "--device", "cpu", "--workers", "1"]
    assert script.main(argv) == 0
    assert "layers ['avgpool']" in capsys.readouterr().out  # ResNet-50's default: global average pooling
    folder = tmp_path / "run" / "features" / "random-resnet50-seed0-k7"  # never mixed with CaffeNet's cache
    assert np.load(folder / "imgs_r50_mine_avgpool.npy").shape == (3, 2048)
    import json

    assert json.loads((folder / "imgs_r50_mine_avgpool.json").read_text())["arch"] == "resnet50"
    with pytest.raises(UserError, match="unknown layer.*fc7"):
        script.main(argv + ["--layer", "fc7"])


def test_choose_layers_defaults_and_checks():
    from texttopicnet.evaluation.features import choose_layers

    caffe, _ = load_network("random", num_outputs=3)
    assert choose_layers(caffe, None) == ["pool5", "fc6", "fc7"]  # the layers the paper reports
    assert choose_layers(caffe, ["conv5", "logits"]) == ["conv5", "logits"]
    with pytest.raises(UserError, match="avgpool"):
        choose_layers(caffe, ["avgpool"])

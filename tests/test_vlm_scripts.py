"""The experiments/vlm/ scripts end to end on tiny inputs (random CaffeNet, a few images, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image
from test_vlm_datasets import _write, mit_members, toronto_members

from texttopicnet.core.errors import UserError

COMMON = ["--threads", "1", "--no-progress", "--tag", "t"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # the scripts' --threads 1 sets it for the process


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder with packed images and a tiny VLM trained by 01_train_vlm.py."""
    out = tmp_path_factory.mktemp("vlm_run")
    rng = np.random.default_rng(0)
    base = rng.random((6, 8, 8, 3))
    imgs = (np.stack([np.kron(b, np.ones((32, 32, 1))) for b in base]) * 255).astype(np.uint8)
    (out / "packed").mkdir()
    np.save(out / "packed" / "images.npy", imgs)
    args = ["--out", str(out), "--weights", "random", "--layers", "conv5", "--pca-dims", "6", "--iterations", "3",
            "--batch-size", "2", "--pca-samples", "100", "--checkpoint-every", "3", "--log-every", "1", *COMMON]
    assert load_script("experiments/vlm/01_train_vlm.py").main(args) == 0
    return out, args


def test_train_writes_the_run_files_and_is_idempotent(run, capsys):
    out, args = run
    d = out / "vlm" / "t"
    assert {p.name for p in d.iterdir()} >= {"checkpoint.pt", "log.jsonl", "vlm.pt", "summary.json", "meta.json"}
    meta = json.loads((d / "meta.json").read_text())
    assert meta["stage"] == "train_vlm" and meta["settings"]["layers"] == ["conv5"] and meta["args"]["seed"] == 0
    capsys.readouterr()
    assert load_script("experiments/vlm/01_train_vlm.py").main(args) == 0
    assert "already done" in capsys.readouterr().out


def test_train_with_missing_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no network weights"):
        load_script("experiments/vlm/01_train_vlm.py").main(["--out", str(tmp_path), *COMMON])


def test_maps_for_a_folder_with_a_broken_file(run, tmp_path):
    out, _ = run
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (240, 300, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)).save(folder / "sub" / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    script = load_script("experiments/vlm/02_maps.py")
    assert script.main(["--out", str(out), "--images", str(folder), "--figure", "2", *COMMON]) == 0
    d = out / "vlm_maps" / "t"
    assert (d / "index.txt").read_text().split() == ["a", "sub__b"]
    sal = np.load(d / "maps" / "a.npy")
    assert sal.shape == (240, 300) and sal.dtype == np.float32 and 0 <= sal.min() and sal.max() <= 1
    assert np.load(d / "raw" / "sub__b.npy").ndim == 2  # the small image was enlarged to the network's input
    assert Image.open(d / "overlays" / "a.png").size == (300, 240) and (d / "maps.png").is_file()
    assert json.loads((d / "meta.json").read_text())["skipped"] == {"corrupt": 1}


@pytest.mark.parametrize("dataset", ["toronto", "mit1003"])
def test_evaluate_on_the_real_layouts(run, tmp_path, dataset):
    out, _ = run
    if dataset == "toronto":
        _write(tmp_path / "data" / "Toronto", toronto_members())
        names = ["1", "2", "3"]
    else:
        for members in mit_members().values():
            _write(tmp_path / "data" / "MIT1003", members)
        names = ["i1", "i2"]  # lonely.jpeg has no fixation map: skipped
    script = load_script("experiments/vlm/03_evaluate_saliency.py")
    assert script.main(["--out", str(out), "--dataset", dataset, "--data-root", str(tmp_path / "data"),
                        "--others", "1", *COMMON]) == 0
    res = json.loads((out / "vlm_saliency" / dataset / "t" / "results.json").read_text())
    assert res["images"] == len(names) and set(res["summary"]["vlm"]) == {"auc_judd", "sauc", "nss", "cc", "kl", "sim"}
    assert all(np.isfinite(v) for v in res["summary"]["center_bias"].values())
    rows = (out / "vlm_saliency" / dataset / "t" / "per_image.jsonl").read_text().splitlines()
    assert [json.loads(r)["name"] for r in rows] == names


def test_pasted_region_check_and_reconstruction(run):
    out, _ = run
    check = load_script("experiments/vlm/04_pasted_region_check.py")
    assert check.main(["--out", str(out), "--n", "2", "--kinds", "patch", "noise", *COMMON]) == 0
    res = json.loads((out / "vlm_paste" / "t" / "results.json").read_text())
    assert set(res["kinds"]) == {"patch", "noise", "all"}
    assert set(res["kinds"]["all"]) == {"t", "random_init", "center_bias"} and res["kinds"]["all"]["t"]["n"] == 4
    assert (out / "vlm_paste" / "t" / "examples.png").is_file()
    rec = load_script("experiments/vlm/05_reconstruct.py")
    assert rec.main(["--out", str(out), "--topic", "0", "--iterations", "2", "--save-every", "1", *COMMON]) == 0
    d = out / "vlm_reconstruct" / "t"
    assert sorted(p.name for p in (d / "topic_0").glob("frame_*.png")) == [
        "frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert Image.open(d / "topic_0" / "final.png").size == (227, 227) and (d / "reconstructions.png").is_file()
    assert len((d / "topic_0" / "history.jsonl").read_text().splitlines()) == 2
    with pytest.raises(UserError, match="out of range"):
        rec.main(["--out", str(out), "--topic", "99", "--iterations", "1", "--force", *COMMON])


def test_report_section_draws_the_figures(run, tmp_path):
    from texttopicnet.vlm.report import report_section

    assert report_section(tmp_path / "no_run", tmp_path / "report" / "figures") == []
    out, _ = run
    for script, args in (("02_maps.py", ["--figure", "0"]),
                         ("04_pasted_region_check.py", ["--n", "2", "--kinds", "noise"]),
                         ("05_reconstruct.py", ["--topic", "0", "1", "--iterations", "1"])):
        if not (out / {"02_maps.py": "vlm_maps", "04_pasted_region_check.py": "vlm_paste",
                       "05_reconstruct.py": "vlm_reconstruct"}[script] / "t" / "meta.json").is_file():
            assert load_script(f"experiments/vlm/{script}").main(["--out", str(out), *args, *COMMON]) == 0
    figs = tmp_path / "report" / "figures"
    lines = report_section(out, figs)
    text = "\n".join(lines)
    assert lines[0] == "## CNN-VLM: naturalness, saliency and feature inversion"
    for name in ("vlm_maps_t.png", "vlm_reconstructions_t.png", "vlm_paste_t.png"):
        assert f"](figures/{name})" in text and (figs / name).is_file()
    assert "| conv5 | 6 |" in text and "center_bias" in text

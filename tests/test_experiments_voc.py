"""experiments/voc2007_classification.py end to end on the demo corpus (with damaged images and a hostile id added)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import keep_first_voc_ids as _keep_first
from conftest import load_script
from PIL import Image

from texttopicnet.core.errors import UserError
from texttopicnet.data.readers.voc import find_voc_root, load_voc_split
from texttopicnet.evaluation.svm import DEFAULT_C_GRID


@pytest.fixture(scope="module")
def damaged_voc(demo_corpus, tmp_path_factory):
    """A cut-down copy of the demo VOC2007 with one corrupt test JPEG and one CMYK train JPEG."""
    root = tmp_path_factory.mktemp("voc_damaged")
    shutil.copytree(demo_corpus / "VOC2007", root / "VOC2007")
    voc = find_voc_root(root)
    for split, n in (("train", 16), ("val", 16), ("test", 24)):
        _keep_first(voc / "ImageSets" / "Main", split, n)
    test, train = load_voc_split(voc, "test"), load_voc_split(voc, "train")
    test.image_paths[0].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.open(train.image_paths[0]).convert("CMYK").save(train.image_paths[0], "JPEG")
    with (voc / "ImageSets" / "Main" / "test.txt").open("a") as fh:
        fh.write("../../../../outside\n")  # an id leaving JPEGImages/: refused and counted, never read
    return root


def test_svm_experiment_end_to_end(damaged_voc, tmp_path, capsys):
    script = load_script("experiments/voc2007_classification.py")
    run = tmp_path / "run"
    argv = ["--out", str(run), "--weights", "random", "--tag", "random", "--layers", "pool5", "fc7",
            "--data-root", str(damaged_voc), "--device", "cpu", "--workers", "1"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "test: skipped 1 of" in out
    assert "test: refused 1 image id(s) resolving outside" in out and "'../../../../outside'" in out
    voc = find_voc_root(damaged_voc)
    test = load_voc_split(voc, "test")
    for layer in ("pool5", "fc7"):
        res = json.loads((run / "voc_svm" / "random" / f"results_{layer}.json").read_text())
        assert res["classes"] == test.classes  # names from ImageSets/Main, not the 20 VOC classes
        assert res["n_refused_ids"] == 1
        assert res["n_test"] == len(test.ids) - 1 and res["n_train"] == len(load_voc_split(voc, "train").ids)
        assert res["layer"] == layer and res["tag"] == "random" and res["weights_sha256"] == "random-seed0-k40"
        assert set(res["chosen_C"].values()) <= set(DEFAULT_C_GRID)
        assert all(0 <= v <= 1 for v in list(res["ap"].values()) + list(res["release_ap"].values()))
        scored = [c for c in res["classes"] if c not in res["classes_without_test_positives"]]
        assert res["map"] == pytest.approx(sum(res["ap"][c] for c in scored) / len(scored))
        # the release printed the mean over every class
        assert res["release_map"] == pytest.approx(sum(res["release_ap"].values()) / len(res["classes"]))
        assert res["protocol"] == "release" and "split(' ')" in res["protocol_description"]
        md = (run / "voc_svm" / "random" / f"results_{layer}.md").read_text()
        assert "| **mean** |" in md and all(c in md for c in test.classes)
        assert "| class | AP official (VOC07) | AP release (printed) | C |" in md
        assert f"| **{100 * res['map']:.1f}** | **{100 * res['release_map']:.1f}** |" in md
    summary = (run / "voc_svm" / "summary.md").read_text()
    assert "| random | release |" in summary
    meta = json.loads((run / "voc_svm" / "random" / "meta.json").read_text())
    assert meta["protocol"] == "release" and meta["args"]["protocol"] == "release"
    # with 16 train + 16 val images some demo classes may lack positives: reported, never NaN
    assert all(c in test.classes for c in res["untrainable_classes"] + res["classes_without_test_positives"])
    # feature cache written, rerun is a no-op
    assert len(list((run / "features" / "random-seed0-k40").glob("voc2007_test_*.npy"))) == 2
    assert script.main(argv) == 0 and "already done" in capsys.readouterr().out
    # another protocol is not "already done": rerun from the cached features, recorded as such
    assert script.main(argv + ["--protocol", "voc"]) == 0 and "already done" not in capsys.readouterr().out
    res_voc = json.loads((run / "voc_svm" / "random" / "results_fc7.json").read_text())
    assert res_voc["protocol"] == "voc" and res_voc["val_metric"].startswith("VOC2007 11-point")
    assert "| random | voc |" in (run / "voc_svm" / "summary.md").read_text()


def test_svm_experiment_user_errors(tmp_path, demo_corpus):
    script = load_script("experiments/voc2007_classification.py")
    with pytest.raises(UserError, match="not found"):
        script.main(["--out", str(tmp_path), "--weights", str(tmp_path / "none.safetensors"),
                     "--data-root", str(demo_corpus)])
    with pytest.raises(UserError, match="ImageSets"):
        script.main(["--out", str(tmp_path), "--weights", "random", "--data-root", str(tmp_path)])
    with pytest.raises(UserError, match="distinct"):
        script.main(["--out", str(tmp_path), "--weights", "random", "--data-root", str(demo_corpus),
                     "--c-grid", "0.1", "0.1"])
    with pytest.raises(SystemExit):  # argparse: not one of the protocols
        script.main(["--out", str(tmp_path), "--weights", "random", "--protocol", "paper"])


def test_svm_experiment_with_another_architecture(damaged_voc, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # torchvision nets: two OpenMP threads spin on a shared 2-core machine
    try:
        script = load_script("experiments/voc2007_classification.py")
        run = tmp_path / "run"
        argv = ["--out", str(run), "--weights", "random", "--arch", "alexnet", "--tag", "random-alexnet",
                "--data-root", str(damaged_voc), "--device", "cpu", "--workers", "1"]
        with pytest.raises(UserError, match="unknown layer.*layer4"):  # a ResNet name: AlexNet has no layer4
            script.main(argv + ["--layers", "layer4"])
        assert script.main(argv + ["--layers", "fc7"]) == 0
        assert "network: alexnet, layers ['fc7']" in capsys.readouterr().out
        res = json.loads((run / "voc_svm" / "random-alexnet" / "results_fc7.json").read_text())
        assert res["arch"] == "alexnet" and res["weights_sha256"] == "random-alexnet-seed0-k40"
        assert 0 <= res["map"] <= 1 and res["n_refused_ids"] == 1
        import numpy as np

        feats = np.load(run / "features" / "random-alexnet-seed0-k40" / "voc2007_test_fc7.npy")
        assert feats.shape[1] == 4096 and np.isfinite(feats).all()
        assert "| random-alexnet | release |" in (run / "voc_svm" / "summary.md").read_text()
    finally:
        torch.set_num_threads(before)

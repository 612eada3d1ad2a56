"""experiments/voc2007_finetune.py end to end on a cut-down copy of the demo VOC2007 (CPU-sized)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import keep_first_voc_ids as _keep_first
from conftest import load_script

from texttopicnet.data.readers.voc import find_voc_root, voc_classes


@pytest.fixture(scope="module")
def small_voc(demo_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("voc_small")
    shutil.copytree(demo_corpus / "VOC2007", root / "VOC2007")
    main = find_voc_root(root) / "ImageSets" / "Main"
    _keep_first(main, "trainval", 10)
    _keep_first(main, "test", 6)
    return root


def test_finetune_experiment_end_to_end(small_voc, tmp_path, capsys):
    script = load_script("experiments/voc2007_finetune.py")
    run = tmp_path / "run"
    argv = ["--out", str(run), "--weights", "random", "--tag", "random", "--data-root", str(small_voc),
            "--iterations", "2", "--batch-size", "4", "--device", "cpu",
            "--workers", "1", "--eval-batch-size", "3"]
    assert script.main(argv) == 0
    stage = run / "finetune" / "random"
    res = json.loads((stage / "results.json").read_text())
    classes = voc_classes(find_voc_root(small_voc))
    for key in ("tag", "map_center", "map_10crop", "ap_center", "ap_10crop", "iterations"):
        assert key in res
    assert res["iterations"] == 2 and res["n_trainval"] == 10 and res["n_test"] == 6
    assert sorted(res["ap_center"]) == sorted(classes) and 0 <= res["map_10crop"] <= 1
    assert (stage / "checkpoint.pt").is_file() and (stage / "results.md").is_file()
    assert len((stage / "log.jsonl").read_text().splitlines()) == 2
    assert "| random |" in (run / "finetune" / "summary.md").read_text()
    capsys.readouterr()
    assert script.main(argv) == 0 and "already done" in capsys.readouterr().out  # resume itself: test_finetune.py


@pytest.fixture(scope="module")
def hostile_voc(small_voc, tmp_path_factory):
    """small_voc with an id leaving JPEGImages/ in trainval.txt: refused, counted and recorded."""
    root = tmp_path_factory.mktemp("voc_hostile")
    shutil.copytree(small_voc / "VOC2007", root / "VOC2007")
    with (find_voc_root(root) / "ImageSets" / "Main" / "trainval.txt").open("a") as fh:
        fh.write("../../../../outside\n")
    return root


def test_finetune_another_architecture_and_refused_ids(hostile_voc, tmp_path, capsys):
    import torch

    from texttopicnet.training.checkpoint import load_checkpoint
    from texttopicnet.weights.loading import load_network

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # torchvision nets: two OpenMP threads spin on a shared 2-core machine
    try:
        run = tmp_path / "run"
        argv = ["--out", str(run), "--weights", "random", "--arch", "alexnet", "--tag", "alexnet",
                "--data-root", str(hostile_voc), "--iterations", "2", "--batch-size", "4", "--device", "cpu",
                "--workers", "1", "--eval-batch-size", "3"]
        assert load_script("experiments/voc2007_finetune.py").main(argv) == 0
        out = capsys.readouterr().out
        assert "trainval: refused 1 image id(s)" in out and "'../../../../outside'" in out
        stage = run / "finetune" / "alexnet"
        res = json.loads((stage / "results.json").read_text())
        classes = voc_classes(find_voc_root(hostile_voc))
        assert res["arch"] == "alexnet" and res["n_refused_ids"] == 1 and res["n_trainval"] == 10
        assert sorted(res["ap_10crop"]) == sorted(classes) and 0 <= res["map_center"] <= 1
        assert json.loads((stage / "meta.json").read_text())["refused"] == {"trainval": {"outside_collection": 1}}
        assert "outside JPEGImages/ were refused" in (stage / "results.md").read_text()
        # the fine-tuned checkpoint records its architecture: it loads without a flag, with its new head
        ck = load_checkpoint(stage / "checkpoint.pt")
        assert ck["arch"] == {"arch": "alexnet", "num_outputs": len(classes), "options": {"dropout": 0.5}}
        net, info = load_network(stage / "checkpoint.pt")
        assert info["arch"] == "alexnet" and info["num_outputs"] == len(classes)
    finally:
        torch.set_num_threads(before)

"""The four instance-search stages end to end on a tiny generated set (CPU, random CaffeNet + a CAM head)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import load_script

from texttopicnet.core.errors import DataError
from texttopicnet.instance import experiment


def _packed(run, n=6, k=5):
    rng = np.random.default_rng(0)
    d = run / "packed"
    d.mkdir(parents=True)
    np.save(d / "images.npy", rng.integers(0, 255, (n, 256, 256, 3), dtype=np.uint8))
    np.save(d / "labels.npy", rng.dirichlet(np.ones(k), n).astype(np.float32))
    (d / "index.txt").write_text("".join(f"/img/{i}.jpg\n" for i in range(n)))


def test_make_train_extract_evaluate(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    make = load_script("experiments/instance_search/01_make_synthetic.py")
    small = ["--data-root", str(data), "--landmarks", "2", "--views", "3", "--queries", "1", "--distractors", "2",
             "--width", "96", "--height", "72"]
    assert make.main(small) == 0
    assert make.main(small) == 0 and "already done" in capsys.readouterr().out
    _packed(run)
    train = load_script("experiments/instance_search/02_train_cam_head.py")
    net = ["--out", str(run), "--weights", "random", "--device", "cpu"]
    assert train.main(net + ["--channels", "8", "--epochs", "1", "--batch-size", "4"]) == 0
    head = run / "instance" / "cam_head" / "random"
    assert (head / "cam_head.safetensors").is_file() and json.loads((head / "summary.json").read_text())["epochs"] == 1
    extract = load_script("experiments/instance_search/03_extract_descriptors.py")
    sizes = ["--long-side", "128", "--short-side", "96", "--data-root", str(data)]
    assert extract.main(net + sizes) == 0
    for name in ("synth_a", "synth_b"):
        db = run / "instance" / "random" / name / "db"
        assert np.load(db / "class_vectors.npy").shape[1:] == (5, 256)  # K topics x conv5 channels
        assert len(list((db / "maps").glob("*.npz"))) == len((db / "paths.txt").read_text().split())
    capsys.readouterr()
    assert extract.main(net + sizes) == 0 and "already done" in capsys.readouterr().out
    evaluate = load_script("experiments/instance_search/04_evaluate.py")
    args = ["--out", str(run), "--tag", "random", "--data-root", str(data), "--classes", "2", "--qe", "2",
            "--rerank-top", "4", "--min-box", "2"]
    assert evaluate.main(args) == 0
    res = json.loads((run / "instance" / "random" / "results.json").read_text())
    assert res["methods"] == list(experiment.TABLE_ROWS)
    for name in ("synth_a", "synth_b"):
        for m in experiment.TABLE_ROWS:
            e = res["datasets"][name]["methods"][m]
            assert 0.0 <= e["map"] <= 1.0
            assert set(e["revisited"]) == {"easy", "medium", "hard"}
    assert "| offline+rerank+qe |" in (run / "instance" / "summary.md").read_text()
    capsys.readouterr()
    assert evaluate.main(args) == 0 and "already done" in capsys.readouterr().out
    # Oxford105k-style: the same search with distractors appended to every database
    flickr = tmp_path / "flickr" / "x"
    flickr.mkdir(parents=True)
    for i, src in enumerate(sorted((data / "synth_b" / "jpg").rglob("*.jpg"))[:2]):
        shutil.copy(src, flickr / f"d{i}.jpg")
    assert extract.main(net + sizes + ["--distractors", str(tmp_path / "flickr")]) == 0
    assert evaluate.main(args + ["--distractors", "--methods", "offline", "offline+rerank"]) == 0
    res2 = json.loads((run / "instance" / "random" / "results.json").read_text())
    assert res2["datasets"]["synth_a"]["n_db"] == res["datasets"]["synth_a"]["n_db"] + 2
    with pytest.raises(DataError, match="no descriptors for tag"):
        evaluate.main(["--out", str(run), "--tag", "nope", "--data-root", str(data)])

"""Single-process defaults of texttopicnet.core.dist, and a real 2-process torchrun (gloo) training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, load_script

from texttopicnet.core import dist
from texttopicnet.core.errors import UserError
from texttopicnet.data.packing import pack_images
from texttopicnet.networks.caffenet import CaffeNet
from texttopicnet.training.checkpoint import load_checkpoint
from texttopicnet.training.toydata import make_labels_run


def test_plain_python_is_world_one(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = dist.init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.is_main, info.backend) == (0, 1, 0, True, None)
    assert info.device == torch.device("cpu")
    t = torch.tensor([1.0, 3.0])
    assert dist.all_reduce_mean(t) is t and t.tolist() == [1.0, 3.0]
    dist.barrier()
    dist.cleanup()
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}]


def test_bad_environment_and_missing_cuda_are_user_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE"):
        dist.init_distributed("cpu")
    monkeypatch.delenv("WORLD_SIZE")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA"):
            dist.init_distributed("cuda")


# The schedule in images: 8 images, a decay every 4 (iterations = ceil(8 / global batch)).
TINY = ["--total-images", "8", "--decay-images", "4", "--checkpoint-every", "100", "--log-every", "1", "--eval-images", "0",
        "--dropout", "0", "--device", "cpu", "--seed", "4", "--deterministic", "--no-tensorboard"]


@pytest.mark.slow  # two training processes (~20-40 s on 2 cores)
def test_torchrun_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    base = tmp_path / "data"
    labels, paths = make_labels_run(base, n=8, k=4, seed=2, size=32)
    res = pack_images(paths, base / "packed" / "images.npy", progress=False)
    np.save(base / "packed" / "labels.npy", labels[res.kept])
    (base / "packed" / "index.txt").write_text("".join(p + "\n" for p in paths))
    runs = {}
    for name in ("one", "two", "one_b2"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        (runs[name] / "packed").symlink_to(base / "packed", target_is_directory=True)

    # Two processes with 2 images each (gloo, DDP) ...
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "cnn" / "02_train.py"), "--out", str(runs["two"]), "--batch-size", "2", *TINY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # The schedule resolved for 2 processes is printed once (rank 0) at the start.
    assert proc.stdout.count("schedule: 2 iterations (from total_images) of a global batch of 4 (2 x 2 processes)") == 1
    # ... against one process with the same global batch of 4.
    assert load_script("cnn/02_train.py").main(["--out", str(runs["one"]), "--batch-size", "4", *TINY]) == 0
    # One process with the same per-process batch of 2 needs twice the iterations (stop after one: only the
    # resolved schedule in its checkpoint is needed).
    assert load_script("cnn/02_train.py").main(["--out", str(runs["one_b2"]), "--batch-size", "2", *TINY,
                                                "--stop-after", "1"]) == 0
    solo = load_checkpoint(runs["one_b2"] / "train" / "checkpoint.pt")["config"]["schedule"]
    pair = load_checkpoint(runs["two"] / "train" / "checkpoint.pt")["config"]["schedule"]
    assert (solo["iterations"], solo["step_size"], solo["global_batch"]) == (4, 2, 2)
    assert (pair["iterations"], pair["step_size"], pair["global_batch"], pair["world_size"]) == (2, 1, 4, 2)

    two = json.loads((runs["two"] / "train" / "summary.json").read_text())
    one = json.loads((runs["one"] / "train" / "summary.json").read_text())
    assert (two["world_size"], two["global_batch"], one["global_batch"]) == (2, 4, 4)
    assert two["effective_lr"] == one["effective_lr"] == pytest.approx(0.001 * 4 / 64)
    log = [json.loads(x)["iteration"] for x in (runs["two"] / "train" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2]  # rank 0 alone logs
    assert two["iterations"] == 2 and two["schedule"] == pair
    assert two["initial_loss"] == pytest.approx(one["initial_loss"], rel=1e-5)

    w2 = load_checkpoint(runs["two"] / "train" / "checkpoint.pt")["model"]
    w1 = load_checkpoint(runs["one"] / "train" / "checkpoint.pt")["model"]
    torch.manual_seed(4)
    init = CaffeNet(num_outputs=4).state_dict()
    for k in w1:
        moved = (w1[k] - init[k]).abs().max().item()
        gap = (w2[k] - w1[k]).abs().max().item()
        assert gap <= 1e-3 * moved + 1e-7, f"{k}: 2-process result differs by {gap} (training moved it {moved})"
    assert (w1["fc8.bias"] - init["fc8.bias"]).abs().max() > 1e-5  # training really changed the weights

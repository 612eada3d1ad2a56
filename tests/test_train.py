"""cnn/02_train.py end to end on a tiny packed set: outputs, resume (also after kill -9), divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, load_script

from texttopicnet.core.errors import UserError
from texttopicnet.core.io import sha256_file
from texttopicnet.data.packing import pack_images
from texttopicnet.networks.caffenet import CaffeNet
from texttopicnet.training.checkpoint import load_checkpoint
from texttopicnet.training.export import load_exported
from texttopicnet.training.toydata import make_labels_run

ITERS = 6  # the schedule in images: ceil(11 images / batch 2) = 6 iterations
TINY = ["--total-images", "11", "--batch-size", "2", "--checkpoint-every", "3", "--log-every", "1",
        "--eval-images", "4", "--deterministic", "--device", "cpu", "--seed", "3", "--no-tensorboard"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("toy")
    labels, paths = make_labels_run(base, n=10, k=5, seed=0, size=32)
    res = pack_images(paths, base / "packed" / "images.npy", progress=False)
    np.save(base / "packed" / "labels.npy", labels[res.kept])
    (base / "packed" / "index.txt").write_text("".join(paths[i] + "\n" for i in res.kept))
    return base / "packed"


def _run_dir(tmp_path: Path, packed: Path, name: str) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "packed").symlink_to(packed, target_is_directory=True)
    return run


def _tensors(ckpt: dict) -> dict:
    out = {f"model.{k}": v for k, v in ckpt["model"].items()}
    for idx, st in ckpt["optimizer"]["state"].items():
        out[f"momentum.{idx}"] = st["momentum_buffer"]
    return out


def _assert_same_state(a: Path, b: Path) -> None:
    ta, tb = _tensors(load_checkpoint(a)), _tensors(load_checkpoint(b))
    assert ta.keys() == tb.keys()
    diff = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not diff, f"tensors differ: {diff[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, packed) -> Path:
    """An uninterrupted tiny run through the script."""
    run = _run_dir(tmp_path_factory.mktemp("ref"), packed, "run")
    assert load_script("cnn/02_train.py").main(["--out", str(run), *TINY]) == 0
    return run / "train"


def test_outputs_follow_the_contract(reference):
    files = sorted(p.name for p in reference.iterdir())
    assert files == ["checkpoint.pt", "log.jsonl", "meta.json", "model.safetensors", "model.sha256", "summary.json"]
    ck = torch.load(reference / "checkpoint.pt", weights_only=True)
    assert set(ck) == {"model", "optimizer", "scheduler", "scaler", "rng", "iteration", "config", "arch", "loss"}
    # the architecture and loss are recorded, so loading needs no flag
    assert ck["arch"] == {"arch": "caffenet", "num_outputs": 5, "options": {"dropout": 0.5}}
    assert ck["loss"] == {"name": "sigmoid_ce"} and ck["config"]["arch"] == "caffenet"
    assert ck["iteration"] == ITERS and ck["config"]["batch_size"] == 2 and ck["config"]["num_outputs"] == 5
    sched = ck["config"]["schedule"]  # the resolved schedule is recorded with the weights
    assert (sched["iterations"], sched["global_batch"], sched["total_images"], sched["iterations_from"]) == \
        (ITERS, 2, 11, "total_images")
    assert sched["step_size"] == 1_600_000 and ck["config"]["step_size"] == 1_600_000  # round(3.2M / 2)
    assert list(ck["model"]) == list(CaffeNet(num_outputs=5).state_dict())
    log = [json.loads(line) for line in (reference / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(1, ITERS + 1))
    for r in log:
        assert {"iteration", "loss", "lr", "images_per_s", "data_time", "step_time"} <= set(r)
        assert np.isfinite(r["loss"]) and r["images_per_s"] > 0
    assert log[0]["lr"] == pytest.approx(0.001 * 2 / 64)  # linear scaling from the paper's batch of 64
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["iterations"] == ITERS and summary["initial_loss"] == log[0]["loss"]
    assert summary["schedule"] == sched
    assert summary["final_loss"] == log[-1]["loss"]  # last 10% of 6 iterations = the last one
    labels = np.load(reference.parent / "packed" / "labels.npy").astype(np.float64)
    m = labels.mean(0)
    baseline = -(labels * np.log(m) + (1 - labels) * np.log(1 - m)).sum(1).mean()
    assert summary["mean_baseline_loss"] == pytest.approx(baseline, rel=1e-9)
    assert 0 < summary["min_possible_loss"] < summary["mean_baseline_loss"]
    assert summary["eval_images"] == 4 and np.isfinite(summary["eval_loss"])
    assert summary["device"].startswith("cpu")
    # Exported weights: the model's keys exactly, equal to the final checkpoint, with a matching sha256.
    sd = load_exported(reference / "model.safetensors")
    assert sd.keys() == ck["model"].keys() and all(torch.equal(sd[k], ck["model"][k]) for k in sd)
    assert (reference / "model.sha256").read_text().strip() == sha256_file(reference / "model.safetensors")
    from safetensors import safe_open

    with safe_open(reference / "model.safetensors", "pt") as fh:
        assert fh.metadata()["num_outputs"] == "5"


def test_experiments_can_load_the_export(reference):
    weights = pytest.importorskip("texttopicnet.weights.loading")
    net, info = weights.load_network(reference / "model.safetensors")
    assert info["num_outputs"] == 5 and isinstance(net, CaffeNet)


def test_rerun_is_skipped_and_force_retrains(reference, capsys):
    script = load_script("cnn/02_train.py")
    mtime = (reference / "checkpoint.pt").stat().st_mtime_ns
    assert script.main(["--out", str(reference.parent), *TINY]) == 0
    assert "already done" in capsys.readouterr().out
    assert (reference / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_stop_and_resume_equals_uninterrupted(tmp_path, packed, reference, capsys):
    run = _run_dir(tmp_path, packed, "run")
    script = load_script("cnn/02_train.py")
    assert script.main(["--out", str(run), *TINY, "--stop-after", "3"]) == 0
    out = capsys.readouterr().out
    assert "schedule: 6 iterations (from total_images) of a global batch of 2" in out  # printed at the start
    assert "stopped at iteration 3 of 6" in out
    assert load_checkpoint(run / "train" / "checkpoint.pt")["iteration"] == 3
    assert not (run / "train" / "summary.json").exists()
    assert script.main(["--out", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "changed settings" not in out
    _assert_same_state(run / "train" / "checkpoint.pt", reference / "checkpoint.pt")  # bitwise
    log = [json.loads(x)["iteration"] for x in (run / "train" / "log.jsonl").read_text().splitlines()]
    assert log == list(range(1, ITERS + 1))


@pytest.mark.slow  # two training processes (~20-40 s on 2 cores)
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, packed, reference):
    run = _run_dir(tmp_path, packed, "run")
    ckpt = run / "train" / "checkpoint.pt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "cnn" / "02_train.py"), "--out", str(run), *TINY],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "train" / "summary.json").exists(), "the run finished before it could be killed"
    assert load_checkpoint(ckpt)["iteration"] == 3
    assert load_script("cnn/02_train.py").main(["--out", str(run), *TINY]) == 0
    _assert_same_state(ckpt, reference / "checkpoint.pt")
    assert sha256_file(run / "train" / "model.safetensors") == sha256_file(reference / "model.safetensors")


def test_divergence_stops_with_a_clear_error_and_keeps_the_good_checkpoint(tmp_path, packed):
    run = _run_dir(tmp_path, packed, "run")
    args = ["--out", str(run), *TINY, "--base-lr", "1e12", "--checkpoint-every", "1"]
    with pytest.raises(UserError, match=r"diverged: the loss became (nan|inf) at iteration (\d+)") as err:
        load_script("cnn/02_train.py").main(args)
    bad_iteration = int(err.value.args[0].split("at iteration ")[1].split(";")[0])
    assert "--base-lr" in str(err.value)
    ckpt = run / "train" / "checkpoint.pt"
    if bad_iteration > 1:
        state = load_checkpoint(ckpt)
        assert state["iteration"] == bad_iteration - 1
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (run / "train" / "model.safetensors").exists() and not (run / "train" / "meta.json").exists()


def test_missing_packed_data_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="01_pack_images"):
        load_script("cnn/02_train.py").main(["--out", str(tmp_path / "empty"), *TINY])


def test_batch_larger_than_dataset_is_a_clear_error(tmp_path, packed):
    run = _run_dir(tmp_path, packed, "run")
    with pytest.raises(UserError, match="larger than the training set"):
        load_script("cnn/02_train.py").main(["--out", str(run), *TINY, "--batch-size", "64"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_with_amp_channels_last_and_pinned_memory(tmp_path, packed):
    run = _run_dir(tmp_path, packed, "run")
    args = ["--out", str(run), "--iterations", "4", "--batch-size", "4", "--checkpoint-every", "2",
            "--log-every", "1", "--eval-images", "4", "--device", "cuda", "--no-tensorboard"]
    assert load_script("cnn/02_train.py").main(args) == 0
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["amp_bf16"] and summary["channels_last"]
    assert np.isfinite(summary["final_loss"])
    sd = load_exported(run / "train" / "model.safetensors")
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in sd.values())

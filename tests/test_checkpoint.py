"""Checkpoints: atomic, weights_only-loadable, RNG round trip, prefix cleaning, exact key checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from texttopicnet.core.errors import DataError
from texttopicnet.training.checkpoint import (
    capture_rng_state,
    clean_state_dict,
    load_checkpoint,
    load_state_dict_exact,
    restore_rng_state,
    save_checkpoint,
)


def _draws():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_round_trip_is_weights_only_loadable(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": capture_rng_state(),
             "iteration": 7, "config": {"base_lr": 0.001, "name": "x", "flag": None}}
    path = tmp_path / "ck.pt"
    save_checkpoint(path, state)
    raw = torch.load(path, weights_only=True)  # no pickled classes anywhere
    assert raw["iteration"] == 7 and raw["config"] == state["config"]
    loaded = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    assert torch.equal(loaded["optimizer"]["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp files left behind


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"iteration": 1})
    with pytest.raises(Exception):
        save_checkpoint(path, {"iteration": 2, "bad": lambda: None})  # cannot be pickled
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_missing_or_corrupt_checkpoint_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(bad)


def test_rng_state_round_trip(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draws()
    state = capture_rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    first = _draws()
    _draws()
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draws() == first


def test_clean_state_dict_strips_wrapper_prefixes():
    sd = {"module._orig_mod.fc6.weight": 1, "_orig_mod.module.fc6.bias": 2, "conv1.weight": 3}
    assert list(clean_state_dict(sd).items()) == [("fc6.weight", 1), ("fc6.bias", 2), ("conv1.weight", 3)]
    with pytest.raises(ValueError, match="fc6.weight"):
        clean_state_dict({"module.fc6.weight": 1, "fc6.weight": 2})


def test_load_state_dict_exact_names_the_problem():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    sd = {"module.0.weight": torch.ones(2, 2), "module.0.bias": torch.zeros(2)}
    load_state_dict_exact(model, sd)
    assert torch.equal(model[0].weight, torch.ones(2, 2))
    with pytest.raises(DataError, match=r"missing keys \['0.bias'\].*unexpected keys \['0.extra'\]"):
        load_state_dict_exact(model, {"0.weight": torch.ones(2, 2), "0.extra": torch.zeros(1)})
    with pytest.raises(DataError, match=r"0.weight: file \(3, 2\) vs model \(2, 2\)"):
        load_state_dict_exact(model, {"0.weight": torch.ones(3, 2), "0.bias": torch.zeros(2)})

"""Training the CNN-VLM: the loss goes down, a killed run resumes exactly, the schedule is the release's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from texttopicnet.core.errors import UserError
from texttopicnet.training.checkpoint import load_checkpoint
from texttopicnet.vlm import sources, train
from texttopicnet.vlm.naturalness import load_vlm
from texttopicnet.weights.loading import load_network


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Six smooth random images (so the features are predictable) and a random CaffeNet."""
    d = tmp_path_factory.mktemp("vlm_images")
    rng = np.random.default_rng(0)
    base = rng.random((6, 8, 8, 3))
    imgs = np.stack([np.kron(b, np.ones((32, 32, 1))) for b in base]) * 255
    np.save(d / "images.npy", imgs.astype(np.uint8))
    net, info = load_network("random", num_outputs=4, seed=0)
    return sources.open_source(d / "images.npy"), net, info


CFG = train.VLMConfig(layers=("conv5",), batch_size=3, iterations=6, lr=10.0, optimizer="sgd", pca_dims=6,
                      pca_samples=300, log_every=1, checkpoint_every=2, step=3, target_layers=("fc8",))


def test_training_lowers_the_loss_and_writes_a_loadable_vlm(tiny, tmp_path):
    source, net, info = tiny
    cfg = train.VLMConfig(**{**CFG.__dict__, "iterations": 20, "checkpoint_every": 20, "step": 0, "lr": 10.0,
                             "optimizer": "sgd", "layers": ("conv4", "conv5")})  # the release's solver
    summary = train.train_vlm(net, info, "caffenet", source, tmp_path, cfg, progress=False, log=lambda *a: None)
    rows = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and {"iteration", "loss", "lr", "layers", "data_s", "step_s"} <= set(rows[0])
    assert np.mean([r["loss"] for r in rows[-5:]]) < 0.95 * np.mean([r["loss"] for r in rows[:5]])
    model = load_vlm(tmp_path / "vlm.pt", extra_layers=["fc8"])
    assert model.layers == ["conv4", "conv5"] and model.projections["conv5"].out_channels == 6
    assert set(model.stats) >= {"conv5", "fc8", "data"}
    batch = source.batch([0, 1], 227)
    maps = model.maps(model.preprocess(batch))["conv5"]
    assert maps.shape == (2, 12, 12) and np.isfinite(maps).all()
    _, s4 = model.saliency(batch, "conv4")
    _, s5 = model.saliency(batch, "conv5")
    _, both = model.saliency(batch, "all")
    np.testing.assert_allclose(both[1], (s4[1] + s5[1]) / 2)
    assert summary["eval_loss"] < summary["initial_loss"]


def _state(path):
    return load_checkpoint(path)["vlm"]


def test_resume_after_a_kill_equals_not_stopping(tiny, tmp_path):
    source, net, info = tiny
    straight = tmp_path / "straight"
    train.train_vlm(net, info, "caffenet", source, straight, CFG, progress=False, log=lambda *a: None)

    class Killed(Exception):
        pass

    def kill_at_4(it):
        if it == 4:  # after update 5; the last checkpoint was after update 4
            raise Killed

    stopped = tmp_path / "stopped"
    with pytest.raises(Killed):
        train.train_vlm(net, info, "caffenet", source, stopped, CFG, progress=False, log=lambda *a: None,
                        on_step=kill_at_4)
    assert load_checkpoint(stopped / "checkpoint.pt")["iteration"] == 4
    assert not (stopped / "vlm.pt").exists()
    train.train_vlm(net, info, "caffenet", source, stopped, CFG, progress=False, log=lambda *a: None)
    a, b = _state(straight / "vlm.pt"), _state(stopped / "vlm.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in json.loads(x).items() if not k.endswith("_s")}
             for x in (straight / "log.jsonl").read_text().splitlines()]
    again = [{k: v for k, v in json.loads(x).items() if not k.endswith("_s")}
             for x in (stopped / "log.jsonl").read_text().splitlines()]
    assert strip == again  # the rows of the redone step are not duplicated


def test_resume_refuses_other_settings(tiny, tmp_path):
    source, net, info = tiny
    cfg = train.VLMConfig(**{**CFG.__dict__, "iterations": 2})
    train.train_vlm(net, info, "caffenet", source, tmp_path, cfg, progress=False, log=lambda *a: None)
    with pytest.raises(UserError, match="other settings"):
        train.train_vlm(net, info, "caffenet", source, tmp_path, train.VLMConfig(**{**cfg.__dict__, "lr": 1.0}),
                        progress=False, log=lambda *a: None)


def test_release_schedule_decays_after_every_step_updates():
    cfg = train.PRESETS["paper_caffenet"]
    assert cfg.iterations == 20_001 and cfg.batch_size == 16 and cfg.lr == 10.0 and cfg.step == 5_000
    assert cfg.layers == ("data", "conv1", "conv2", "conv3", "conv4", "conv5")
    # train_vlm.py: the update of iteration 5000 still uses lr 10; the decay happens after it
    assert train.lr_at(cfg, 0) == (10.0, 0) and train.lr_at(cfg, 5000) == (10.0, 0)
    assert train.lr_at(cfg, 5001)[0] == pytest.approx(1.0) and train.lr_at(cfg, 20000)[0] == pytest.approx(1e-2)
    assert train.PRESETS["paper_vgg16"].batch_size == 1 and train.PRESETS["paper_vgg16"].lr == 20.0


def test_step_zero_means_a_constant_learning_rate():
    # demo_long trains with Adam at one lr for all its updates: no decay at any iteration
    cfg = train.PRESETS["demo_long"]
    assert cfg.step == 0 and cfg.optimizer == "adam" and cfg.layers == ("conv1", "conv3")
    assert {train.lr_at(cfg, i) for i in (0, 1, 999, cfg.iterations - 1)} == {(cfg.lr, 0)}

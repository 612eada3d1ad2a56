"""Presets, the batch plan (shuffling, sharding, crops), losses and log summaries: fast unit tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from texttopicnet.core.errors import DataError, UserError
from texttopicnet.training.config import PRESETS, make_config, resolve_schedule, resolved
from texttopicnet.training.data import BatchPlan
from texttopicnet.training.logging import loss_summary, read_log, truncate_log
from texttopicnet.training.losses import mean_distribution_loss, min_possible_loss, sigmoid_cross_entropy


def test_paper_preset_is_the_published_solver():
    cfg, sched = resolved(make_config("paper"), world_size=1)
    # solver.prototxt: max_iter 160000, batch 64, base_lr 0.001, stepsize 50000, gamma 0.1, ...
    assert (cfg.iterations, cfg.batch_size, cfg.base_lr, cfg.step_size, cfg.gamma, cfg.momentum,
            cfg.weight_decay, cfg.crop, cfg.mirror, cfg.dropout) == (160_000, 64, 0.001, 50_000, 0.1, 0.9,
                                                                     5e-4, 227, True, 0.5)
    assert (sched.global_batch, sched.images_seen, sched.effective_lr) == (64, 160_000 * 64, 0.001)
    assert cfg.effective_lr(1) == 0.001
    assert cfg.effective_lr(8) == pytest.approx(0.008)  # linear scaling with the global batch
    assert make_config("paper", lr_scaling="none").effective_lr(8) == 0.001


def _plain_schedule(total_images, decay_images, global_batch):
    """The rule written out with floats: ceil for the run length, nearest (halves up) for the step."""
    import math

    return math.ceil(total_images / global_batch), max(1, math.floor(decay_images / global_batch + 0.5))


@pytest.mark.parametrize("batch,world", [(64, 1), (64, 2), (64, 8), (48, 3), (256, 1), (100, 7), (1, 1)])
def test_schedule_is_the_papers_images_whatever_the_world_size(batch, world):
    sched = resolve_schedule(make_config("paper", batch_size=batch), world)
    gb = batch * world
    assert sched.global_batch == gb
    assert (sched.iterations, sched.step_size) == _plain_schedule(160_000 * 64, 50_000 * 64, gb)
    # The run sees at least the paper's 10.24M images and less than one global batch more.
    assert 160_000 * 64 <= sched.images_seen < 160_000 * 64 + gb
    assert abs(sched.step_size * gb - 50_000 * 64) <= gb / 2
    assert sched.effective_lr == pytest.approx(0.001 * gb / 64)


def test_schedule_halves_with_twice_the_processes_and_explicit_iterations_stay():
    one, two = (resolve_schedule(make_config("paper"), w) for w in (1, 2))
    assert (one.iterations, one.step_size) == (160_000, 50_000)
    assert (two.iterations, two.step_size) == (80_000, 25_000)
    assert (resolve_schedule(make_config("paper"), 8).iterations, resolve_schedule(make_config("paper"), 8).step_size) \
        == (20_000, 6_250)
    fixed = make_config("paper", iterations=1000, step_size=300)
    for world in (1, 2, 8):  # --iterations / --step-size are iterations, not rescaled
        s = resolve_schedule(fixed, world)
        assert (s.iterations, s.step_size, s.iterations_from, s.step_from) == (1000, 300, "--iterations", "--step-size")
    mixed = resolve_schedule(make_config("paper", iterations=10), 2)
    assert (mixed.iterations, mixed.step_size, mixed.step_from) == (10, 25_000, "decay_images")
    assert "80,000 iterations" in two.describe() and "25,000 iterations" in two.describe()
    assert "global batch of 128" in two.describe() and "lr 0.002" in two.describe()
    with pytest.raises(UserError, match="total-images"):
        make_config("paper", total_images=0)


def test_demo_preset_and_overrides():
    demo, sched = resolved(make_config("demo"), world_size=1)
    # The demo: 480 iterations of 16, decay at 432 (9/10 of the run).
    assert (demo.iterations, demo.batch_size, demo.step_size, demo.base_lr) == (480, 16, 432, 0.016)
    assert sched.effective_lr == pytest.approx(0.016 * 16 / 64)
    assert demo.iterations * demo.batch_size <= 7680  # ~6 minutes at ~22 img/s on 2 cores (pipeline < 10 min)
    assert demo.crop == 227 and demo.dropout == 0.5  # the architecture and input are the paper's
    assert make_config("demo", iterations=7, amp=None).iterations == 7
    with pytest.raises(UserError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(UserError, match="batch-size"):
        make_config("paper", batch_size=0)
    assert set(PRESETS) >= {"paper", "demo"}


def test_plan_shuffles_every_epoch_and_covers_each_image_once():
    plan = BatchPlan(num_images=10, batch_size=3, seed=1)
    assert plan.iters_per_epoch == 3
    epoch0 = np.concatenate([plan.rows(i) for i in range(3)])
    epoch1 = np.concatenate([plan.rows(i) for i in range(3, 6)])
    assert len(set(epoch0)) == 9 and len(set(epoch1)) == 9  # no repeats inside an epoch
    assert not np.array_equal(epoch0, epoch1)
    again = BatchPlan(num_images=10, batch_size=3, seed=1)
    assert np.array_equal(again.rows(4), plan.rows(4))  # a pure function of (seed, iteration)
    assert not np.array_equal(BatchPlan(10, 3, seed=2).rows(0), plan.rows(0))


def test_ranks_split_the_same_global_batch_and_crops():
    one = BatchPlan(num_images=20, batch_size=4, world_size=1, rank=0, seed=5)
    r0 = BatchPlan(num_images=20, batch_size=2, world_size=2, rank=0, seed=5)
    r1 = BatchPlan(num_images=20, batch_size=2, world_size=2, rank=1, seed=5)
    for it in (0, 3, 7):
        assert np.array_equal(np.concatenate([r0.rows(it), r1.rows(it)]), one.rows(it))
        for a, b, c in zip(r0.crops(it), r1.crops(it), one.crops(it)):
            assert torch.equal(torch.cat([a, b]), c)


def test_global_batch_larger_than_data_is_refused():
    with pytest.raises(DataError, match="larger than the training set"):
        BatchPlan(num_images=5, batch_size=4, world_size=2)


def test_losses_match_their_definitions():
    rng = np.random.default_rng(0)
    y = rng.dirichlet(np.full(6, 0.5), size=50)
    m = y.mean(0)
    logits = torch.logit(torch.tensor(np.broadcast_to(m, y.shape).copy()))
    torch_value = sigmoid_cross_entropy(logits, torch.tensor(y)).item()
    assert mean_distribution_loss(y) == pytest.approx(torch_value, rel=1e-5)
    # Caffe normalisation: summed over outputs, averaged over images.
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(y), reduction="mean").item()
    assert torch_value == pytest.approx(per * 6, rel=1e-6)
    assert 0 < min_possible_loss(y) < mean_distribution_loss(y)


def test_loss_summary_and_log_truncation(tmp_path):
    path = tmp_path / "log.jsonl"
    recs = [{"iteration": 1, "loss": 9.0, "n": 1, "images_per_s": 10.0},
            {"iteration": 50, "loss": 5.0, "n": 49, "images_per_s": 20.0},
            {"iteration": 95, "loss": 3.0, "n": 45, "images_per_s": 20.0},
            {"iteration": 100, "loss": 2.0, "n": 5, "images_per_s": 20.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"iteration": 10')  # torn last line
    assert [r["iteration"] for r in read_log(path)] == [1, 50, 95, 100]
    s = loss_summary(read_log(path), total_iterations=100, global_batch=8)
    assert s["initial_loss"] == 9.0
    assert s["final_loss"] == pytest.approx((3.0 * 45 + 2.0 * 5) / 50)  # records ending after iteration 90
    assert s["images_per_s"] == pytest.approx(20.0)
    kept = truncate_log(path, 50)
    assert [r["iteration"] for r in kept] == [1, 50] and len(read_log(path)) == 2


def test_fast_cpu_input_conversion_equals_preprocess_uint8():
    from texttopicnet.networks.caffenet import preprocess_uint8
    from texttopicnet.training.data import network_input

    x = torch.randint(0, 256, (3, 3, 9, 7), dtype=torch.uint8)
    ref = preprocess_uint8(x)
    assert torch.equal(network_input(x), ref)
    cl = network_input(x, torch.channels_last)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, ref)


def test_cpu_fast_path_equals_the_device_path(tmp_path):
    from texttopicnet.training.data import PackedData, cpu_batch, device_batch

    rng = np.random.default_rng(0)
    packed = tmp_path / "packed"
    packed.mkdir()
    np.save(packed / "images.npy", rng.integers(0, 256, (9, 240, 240, 3), dtype=np.uint8))
    np.save(packed / "labels.npy", rng.dirichlet(np.ones(4), size=9).astype(np.float32))
    (packed / "index.txt").write_text("".join(f"/x/{i}.jpg\n" for i in range(9)))
    data = PackedData(packed)
    plan = BatchPlan(len(data), 4, seed=3, image_hw=data.image_size)
    for it in range(4):
        x_fast, y_fast = cpu_batch(plan, data, it)
        x_ref, y_ref = device_batch(plan.batch_at(data, it), torch.device("cpu"))
        assert torch.equal(x_fast, x_ref) and torch.equal(y_fast, y_ref)
    assert x_fast.shape == (4, 3, 227, 227)


def test_architecture_settings_resolve_from_the_registry():
    # CaffeNet (the default) keeps the paper's 227 crop and 0.5 dropout; the others take their own
    assert resolved(make_config("paper"))[0].crop == 227 and resolved(make_config("paper"))[0].dropout == 0.5
    cfg, _ = resolved(make_config("demo", arch="resnet50"))
    assert (cfg.crop, cfg.dropout, cfg.loss) == (224, None, "sigmoid_ce")  # ResNet-50 has no dropout layer
    cfg, _ = resolved(make_config("demo", arch="googlenet", crop=96, loss="triplet"))
    assert (cfg.crop, cfg.dropout) == (96, 0.2)  # torchvision's GoogLeNet dropout
    assert make_config("paper", loss="triplet", seed=4).loss_options() == {"margin": 0.1, "negatives": "soft",
                                                                          "seed": 4}
    assert make_config("paper", loss="mse").loss_options() == {}
    for kw, match in (({"arch": "lenet"}, "unknown architecture"), ({"loss": "hinge"}, "unknown loss"),
                      ({"negatives": "hardest"}, "negative rule"), ({"arch": "densenet161", "dropout": 0.1},
                                                                     "no dropout")):
        with pytest.raises(UserError, match=match):
            make_config("paper", **kw)


def test_imagenet_input_conversion_equals_the_registry_preprocess(tmp_path):
    """The loop's cached ImageNet conversion is torchvision_nets.imagenet_preprocess_uint8 bit for bit,
    and both equal the convention written out in NumPy; the CPU fast path equals the device path."""
    from texttopicnet.networks import backbones
    from texttopicnet.training.data import PackedData, cpu_batch, device_batch, network_input

    pre = backbones.get("resnet50").preprocess
    x = torch.randint(0, 256, (3, 3, 9, 7), dtype=torch.uint8)
    ref = (x.numpy() / 255.0 - np.array([0.485, 0.456, 0.406])[:, None, None]) / \
        np.array([0.229, 0.224, 0.225])[:, None, None]
    assert torch.equal(network_input(x, preprocess=pre), pre(x))
    np.testing.assert_allclose(network_input(x, preprocess=pre).numpy(), ref, rtol=1e-5, atol=1e-6)
    cl = network_input(x, torch.channels_last, pre)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, pre(x))
    rng = np.random.default_rng(1)
    packed = tmp_path / "packed"
    packed.mkdir()
    np.save(packed / "images.npy", rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8))
    np.save(packed / "labels.npy", rng.normal(size=(6, 3)).astype(np.float32))  # vectors: any finite float32
    (packed / "index.txt").write_text("".join(f"/x/{i}.jpg\n" for i in range(6)))
    data = PackedData(packed)
    plan = BatchPlan(len(data), 3, seed=2, image_hw=data.image_size, crop=32)
    for it in range(2):
        x_fast, y_fast = cpu_batch(plan, data, it, preprocess=pre)
        x_ref, y_ref = device_batch(plan.batch_at(data, it), torch.device("cpu"), 32, preprocess=pre)
        assert torch.equal(x_fast, x_ref) and torch.equal(y_fast, y_ref)
    assert x_fast.shape == (3, 3, 32, 32)


def test_caffe_mean_is_built_once_per_device():
    from texttopicnet.networks.caffenet import MEAN_BGR, mean_bgr_tensor

    a = mean_bgr_tensor("cpu")
    assert a is mean_bgr_tensor(torch.device("cpu")) and a is mean_bgr_tensor(None)  # no copy per step
    assert a.shape == (1, 3, 1, 1) and a.flatten().tolist() == [float(np.float32(v)) for v in MEAN_BGR]
    assert mean_bgr_tensor("cpu", torch.float64).dtype == torch.float64


def test_demo_preset_keeps_its_minutes_for_costlier_networks():
    from texttopicnet.training.config import DEMO_STEP_COST

    caffe, _ = resolved(make_config("demo"))
    r50, _ = resolved(make_config("demo", arch="resnet50"))
    cost = DEMO_STEP_COST["resnet50"]
    assert (r50.iterations, r50.batch_size, r50.base_lr) == (round(480 / cost), 16, 0.016)
    assert r50.step_size == round(0.75 * r50.iterations) and r50.eval_images == round(128 / cost)
    assert r50.iterations * cost == pytest.approx(caffe.iterations, rel=0.05)  # the same CPU minutes
    assert resolved(make_config("demo", arch="alexnet"))[0].iterations == 480  # as costly as CaffeNet
    assert resolved(make_config("demo", arch="resnet50", iterations=9))[0].iterations == 9  # given: kept
    assert resolved(make_config("paper", arch="resnet50"))[0].iterations == 160_000  # the paper's is the paper's

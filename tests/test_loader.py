"""The multi-threaded loader: batches equal plain numpy slicing whatever the thread count, and
(on CUDA) a training step's input path makes no host synchronisation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from texttopicnet.networks.caffenet import MEAN_BGR
from texttopicnet.training.data import (
    BatchPlan,
    PackedData,
    Prefetcher,
    SlicePool,
    cpu_batch,
    device_batch,
    gather_rows,
)

N, SIZE, BATCH, K = 13, 240, 5, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> PackedData:
    rng = np.random.default_rng(0)
    packed = tmp_path_factory.mktemp("loader") / "packed"
    packed.mkdir()
    np.save(packed / "images.npy", rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8))
    np.save(packed / "labels.npy", rng.dirichlet(np.ones(K), size=N).astype(np.float32))
    (packed / "index.txt").write_text("".join(f"/x/{i}.jpg\n" for i in range(N)))
    return PackedData(packed)


def _plain(data: PackedData, plan: BatchPlan, it: int):
    """The batch written out with plain numpy: sorted rows, slice, mirror with [:, ::-1], BGR - mean."""
    rows = plan.rows(it)
    order = np.argsort(rows, kind="stable")
    top, left, flip = (t.numpy()[order] for t in plan.crops(it))
    rows = rows[order]
    images = np.load(data.dir / "images.npy")  # not the memory map the loader reads
    crops = []
    for r, t, l, f in zip(rows, top, left, flip):
        c = images[r, t:t + 227, l:l + 227]
        crops.append(c[:, ::-1] if f else c)
    crops = np.stack(crops)
    bgr = crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    x = bgr - np.asarray(MEAN_BGR, dtype=np.float32)[None, :, None, None]
    return images[rows], crops, x, np.load(data.dir / "labels.npy")[rows]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batches_equal_plain_slicing_with_any_number_of_threads(data, threads):
    plan = BatchPlan(len(data), BATCH, seed=7, image_hw=data.image_size)
    with SlicePool(threads) as pool:
        for it in range(5):  # 2 batches per epoch: crosses two reshuffles
            full, crops, x_ref, y_ref = _plain(data, plan, it)
            batch = plan.batch_at(data, it, pool=pool)
            assert np.array_equal(batch.images.numpy(), full) and np.array_equal(batch.labels.numpy(), y_ref)
            x, y = device_batch(batch, torch.device("cpu"))
            assert np.array_equal(x.numpy(), x_ref) and np.array_equal(y.numpy(), y_ref)
            x_cpu, y_cpu = cpu_batch(plan, data, it, pool=pool)
            assert np.array_equal(x_cpu.numpy(), x_ref) and np.array_equal(y_cpu.numpy(), y_ref)
    assert crops.shape == (BATCH, 227, 227, 3)


def test_prefetcher_with_a_pool_yields_the_single_thread_batches(data):
    plan = BatchPlan(len(data), BATCH, seed=1, image_hw=data.image_size)
    with SlicePool(2) as pool:
        pf = Prefetcher(plan, data, 3, 8, depth=2, pool=pool)
        try:
            got = list(pf)
        finally:
            pf.close()
    assert [b.iteration for b in got] == list(range(3, 8))
    for b in got:
        ref = plan.batch_at(data, b.iteration)
        assert torch.equal(b.images, ref.images) and torch.equal(b.params, ref.params)
        assert torch.equal(b.labels, ref.labels)


def test_slice_pool_runs_every_index_once_on_several_threads_and_raises_worker_errors():
    seen, slices = [], []
    lock = threading.Lock()

    def work(a, b):
        with lock:
            seen.extend(range(a, b))
            slices.append((a, b))

    with SlicePool(3) as pool:
        pool.map_slices(work, 10)
        assert sorted(seen) == list(range(10)) and sorted(slices) == [(0, 3), (3, 6), (6, 10)]
        seen.clear()
        pool.map_slices(work, 2)  # fewer items than threads
        assert sorted(seen) == [0, 1]

        def boom(a, b):
            if a == 0:
                raise ValueError("worker failed")

        with pytest.raises(ValueError, match="worker failed"):
            pool.map_slices(boom, 9)


def test_gather_rows_refuses_rows_outside_the_store():
    src = np.arange(24, dtype=np.uint8).reshape(6, 4)
    out = np.empty((2, 4), np.uint8)
    assert np.array_equal(gather_rows(src, np.array([5, 0]), out), src[[5, 0]])
    with pytest.raises(IndexError, match="out of range"):
        gather_rows(src, np.array([1, 6]), out)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_step_makes_no_host_synchronisation(data):
    from texttopicnet.networks.caffenet import CaffeNet, param_groups
    from texttopicnet.training.augment import crop_flip
    from texttopicnet.training.losses import sigmoid_cross_entropy

    dev = torch.device("cuda")
    plan = BatchPlan(len(data), BATCH, seed=2, image_hw=data.image_size)
    model = CaffeNet(num_outputs=K).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(param_groups(model, 5e-4, 1e-3), lr=1e-3, momentum=0.9, fused=True)

    def step(it):
        x, y = device_batch(plan.batch_at(data, it, pin=True), dev, channels_last=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = sigmoid_cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return x, loss

    step(0)  # warm-up: cached mean tensor, pinned-memory blocks, cuDNN plans, optimizer state
    torch.cuda.synchronize()
    batches = [plan.batch_at(data, it, pin=True) for it in (1, 2)]
    gen = torch.Generator().manual_seed(0)
    top, left, flip = torch.randint(0, 13, (BATCH,), generator=gen), torch.randint(0, 13, (BATCH,), generator=gen), \
        torch.rand(BATCH, generator=gen) < 0.5
    images = batches[0].images.to(dev, non_blocking=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        _, loss = step(1)
        x2, _ = device_batch(batches[1], dev)
        crops = crop_flip(images, top, left, flip, 227)  # CPU parameters, CUDA images
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
    x_cpu, _ = device_batch(plan.batch_at(data, 2), torch.device("cpu"))
    assert torch.equal(x2.cpu(), x_cpu)
    assert torch.equal(crops.cpu(), crop_flip(batches[0].images, top, left, flip, 227))

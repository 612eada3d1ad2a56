"""CNN-stage benchmarks: the packed-store loader and CaffeNet training throughput.

Rows (each ours vs a naive baseline measured in the same run, median of repeats):
- ``loader``: batches of 64 random 227 crops (+ flips, BGR, mean subtracted, float) from
  the packed uint8 store, vs the original's per-image PIL decode + resize to 256 + crop.
  Target >= 20x.
- ``train_cpu``: CaffeNet training images/s on this CPU (batch 32), our pipeline (packed
  store, prefetch thread, on-tensor crops) vs the same steps fed by per-image PIL decoding.
- ``train_gpu_*`` (only with CUDA): images/s at batch 64 and 256, with bf16 autocast,
  channels-last and torch.compile, vs plain fp32 eager at the same batch. Target on one
  H100: >= 10,000 images/s (the paper's 160k x 64 schedule in < 20 min).

    python benchmarks/bench_cnn.py            # prints the rows as JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import median_time, row  # noqa: E402
from texttopicnet.data.images import load_rgb  # noqa: E402
from texttopicnet.data.packing import pack_images  # noqa: E402
from texttopicnet.networks.caffenet import CaffeNet, param_groups  # noqa: E402
from texttopicnet.training.data import BatchPlan, PackedData, Prefetcher, cpu_batch, crop_rows, network_input  # noqa: E402
from texttopicnet.training.losses import sigmoid_cross_entropy  # noqa: E402
from texttopicnet.training.toydata import make_labels, make_sample, topic_colours  # noqa: E402

BATCH = 64


def _corpus(workdir: Path, n: int) -> Path:
    """``n`` photo-sized JPEGs (500x375, like VOC / Wikipedia images) packed into a store."""
    folder = workdir / "bench_cnn"
    packed = folder / "packed"
    if (packed / "images.npy").is_file() and len(np.load(packed / "images.npy", mmap_mode="r")) == n:
        return folder
    rng = np.random.default_rng(0)
    labels = make_labels(n, 8, rng)
    colours = topic_colours(8)
    paths = []
    (folder / "jpg").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = make_sample(labels[i], colours, 375, rng)
        p = folder / "jpg" / f"{i}.jpg"
        Image.fromarray(arr).resize((500, 375)).save(p, quality=90)
        paths.append(str(p))
    pack_images(paths, packed / "images.npy", workers=1, resume=False, progress=False)
    np.save(packed / "labels.npy", labels)
    (packed / "index.txt").write_text("".join(p + "\n" for p in paths))
    return folder


def _pil_crops(paths: list[str], rng: np.random.Generator) -> torch.Tensor:
    """The original's input path, per image: decode, resize to 256, random 227 crop, mirror (uint8 NCHW)."""
    out = np.empty((len(paths), 3, 227, 227), dtype=np.uint8)
    for i, p in enumerate(paths):
        im = load_rgb(p).resize((256, 256), Image.BILINEAR)
        t, l = rng.integers(0, 30, 2)
        arr = np.asarray(im)[t:t + 227, l:l + 227]
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        out[i] = arr.transpose(2, 0, 1)
    return torch.from_numpy(out)


def _pil_batch(paths: list[str], rng: np.random.Generator) -> torch.Tensor:
    """:func:`_pil_crops` then the network's input convention (float BGR minus the mean)."""
    return network_input(_pil_crops(paths, rng))


def bench_loader(workdir: Path, quick: bool) -> dict:
    # 8 batches in a full run: 4 (256 images, ~40 ms for ours) left the ratio at the mercy of timer noise.
    folder = _corpus(workdir, BATCH * (2 if quick else 8))
    data = PackedData(folder / "packed")
    paths = data.index
    plan = BatchPlan(len(data), BATCH, seed=0)
    batches = plan.iters_per_epoch

    # Both sides stop at uint8 (N, 3, 227, 227) crops: the float conversion that follows is the same code.
    def ours():
        for it in range(batches):
            rows = plan.rows(it)
            top, left, flip = plan.crops(it)
            x = crop_rows(data.images, np.sort(rows), top, left, flip)
        return x

    def baseline():
        rng = np.random.default_rng(0)
        for it in range(batches):
            x = _pil_crops([paths[i] for i in plan.rows(it)], rng)
        return x

    repeat = 3 if quick else 5
    t_ours = median_time(ours, repeat=repeat, warmup=1)
    t_base = median_time(baseline, repeat=max(1, repeat - 2), warmup=0)
    return row("cnn_loader", f"{batches} batches of {BATCH} random 227 crops (500x375 JPEG sources)", t_ours, t_base,
               items=batches * BATCH, unit="images", target=">= 20x", target_ratio=20.0,
               notes="ours: crops copied straight from the packed uint8 memmap; "
               "baseline: PIL decode + resize + crop per image; both end at uint8 crops")


def _steps(model, opt, batches, device, amp=False, channels_last=False):
    for x, y in batches():
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = sigmoid_cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train_cpu(workdir: Path, quick: bool) -> dict:
    batch, iters = 32, (2 if quick else 4)
    folder = _corpus(workdir, BATCH * (2 if quick else 4))
    data = PackedData(folder / "packed")
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = CaffeNet(num_outputs=data.num_outputs).train()
    opt = torch.optim.SGD(param_groups(model, 5e-4, 1e-4), lr=1e-4, momentum=0.9)
    plan = BatchPlan(len(data), batch, seed=0)

    def ours_batches():
        pf = Prefetcher(plan, data, 0, iters, depth=2, prepare=lambda it: cpu_batch(plan, data, it))
        try:
            for _, xy in pf:
                yield xy
        finally:
            pf.close()

    def base_batches():
        rng = np.random.default_rng(0)
        for it in range(iters):
            rows = plan.rows(it)
            yield _pil_batch([data.index[i] for i in rows], rng), torch.from_numpy(data.labels[rows])

    _steps(model, opt, lambda: iter([next(ours_batches())]), cpu)  # warm-up (first-call allocations)
    t_ours = median_time(lambda: _steps(model, opt, ours_batches, cpu), repeat=1 if quick else 2)
    t_base = median_time(lambda: _steps(model, opt, base_batches, cpu), repeat=1 if quick else 2)
    return row("cnn_train_cpu", f"CaffeNet training, batch {batch}, {iters} iterations, "
               f"{torch.get_num_threads()} CPU threads", t_ours, t_base, items=iters * batch, unit="images",
               notes="compute-bound on CPU: the loader is hidden behind the step, so the gain is small here")


def bench_train_gpu(quick: bool) -> list[dict]:
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rows = []
    iters = 20 if quick else 50
    for batch in (64, 256):
        x = torch.randn(batch, 3, 227, 227, device=device)
        y = torch.rand(batch, 40, device=device)
        y = y / y.sum(1, keepdim=True)
        batches = lambda: ((x, y) for _ in range(iters))  # noqa: E731

        def timed(amp, cl, compile_):
            torch.manual_seed(0)
            model = CaffeNet(40).to(device)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(param_groups(model, 5e-4, 1e-4), lr=1e-4, momentum=0.9, fused=True)
            net = torch.compile(model) if compile_ else model
            _steps(net, opt, lambda: ((x, y) for _ in range(5)), device, amp, cl)  # warm-up / compile
            return median_time(lambda: _steps(net, opt, batches, device, amp, cl), repeat=3)

        base = timed(False, False, False)
        for amp, cl, comp in ((True, False, False), (True, True, False), (True, True, True)):
            t = timed(amp, cl, comp)
            what = f"batch {batch}: bf16 autocast{' + channels-last' if cl else ''}{' + compile' if comp else ''}"
            rows.append(row("cnn_train_gpu", what, t, base, items=iters * batch, unit="images",
                            target=">= 10,000 img/s on one H100", device=torch.cuda.get_device_name(0),
                            notes="baseline: fp32 eager, same batch (synthetic on-device inputs)"))
    return rows


def run(workdir: Path, quick: bool) -> list[dict]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = [bench_loader(workdir, quick), bench_train_cpu(workdir, quick)]
    if torch.cuda.is_available():
        rows += bench_train_gpu(quick)
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(json.dumps(run(ROOT / "benchmarks" / "_work", quick), indent=2))

"""Feeding packed images to the trainer: batch plan, background prefetch, on-device crop/flip.

- :class:`PackedData` opens ``RUN/packed`` (memory-mapped ``images.npy``, ``labels.npy``,
  ``index.txt``) and checks that they are aligned.
- :class:`BatchPlan` decides, from the iteration number alone, which images and which
  crops every process trains on: the data is reshuffled every epoch with a permutation
  seeded by ``(seed, epoch)`` (the original streamed a fixed order), global batch ``i``
  of the epoch is a contiguous slice of it, and process ``r`` takes sub-slice ``r``
  (a distributed sampler with per-epoch seeding). Crop offsets and flips are drawn for
  the whole global batch from a generator seeded by ``(seed, iteration)``. So a resumed
  run, or the same global batch split over more processes, sees exactly the same data.
- :class:`SlicePool` splits the rows of one batch over a few threads: numpy's copies
  (``np.take`` with ``mode="clip"``, slice assignment) release the GIL, so the memory-map
  reads and copies run in parallel. Which thread copies which rows never changes what
  lands where, so a batch is the same with 1 or N threads.
- :class:`Prefetcher` reads the next batches from the store in a background thread
  (into pinned memory when training on CUDA) while the current one trains.
- :func:`device_batch` moves a uint8 batch to the device, crops/flips it there and
  applies the network's input convention (:func:`network_input`: CaffeNet's BGR minus the
  mean, 0..255, by default; ``preprocess=spec.preprocess`` for another backbone). On CUDA
  it makes no host synchronisation: images, labels and the crop parameters (one int64
  tensor) are pinned and copied with ``non_blocking``; means and scales are cached device
  tensors.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError
from ..core.io import read_lines
from ..networks import torchvision_nets
from ..networks.caffenet import MEAN_BGR, mean_bgr_tensor, preprocess_uint8
from .augment import crop_flip, random_crop_params


class PackedData:
    """The packed training set: ``images`` (memmap, N x S x S x 3 uint8), ``labels`` (N x K float32)."""

    def __init__(self, packed_dir: str | Path):
        packed_dir = Path(packed_dir)
        files = {name: packed_dir / name for name in ("images.npy", "labels.npy", "index.txt")}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise DataError(f"packed training data not found ({', '.join(missing)}); "
                            f"run cnn/01_pack_images.py --out {packed_dir.parent} first")
        try:
            self.images = np.load(files["images.npy"], mmap_mode="r")
            self.labels = np.load(files["labels.npy"]).astype(np.float32, copy=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{packed_dir}: cannot read the packed arrays ({exc})") from None
        self.index = read_lines(files["index.txt"])
        self.dir = packed_dir
        imgs, labs = self.images, self.labels
        if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[3] != 3:
            raise DataError(f"{files['images.npy']}: expected uint8 (N, H, W, 3), got {imgs.dtype} {imgs.shape}")
        if labs.ndim != 2 or labs.shape[0] != imgs.shape[0] or len(self.index) != imgs.shape[0]:
            raise DataError(f"{packed_dir}: images ({imgs.shape[0]}), labels ({labs.shape[0] if labs.ndim else '?'})"
                            f" and index.txt ({len(self.index)}) are not aligned; re-run cnn/01_pack_images.py --force")
        if not np.isfinite(labs).all():
            raise DataError(f"{files['labels.npy']}: labels contain NaN or infinite values")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_outputs(self) -> int:
        return int(self.labels.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence hashing: nearby inputs give unrelated seeds)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) | (int(state[1]) << 32)) & ((1 << 63) - 1)


class SlicePool:
    """Run ``fn(start, stop)`` over contiguous slices of ``range(n)`` on ``threads`` threads.

    The calling thread takes the last slice itself, so ``threads=2`` needs one pool thread.
    ``threads=1`` runs inline. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, threads: int = 1):
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="loader") if self.threads > 1 else None

    def map_slices(self, fn, n: int) -> None:
        parts = min(self.threads, n)
        if parts <= 1 or self._pool is None:
            fn(0, n)
            return
        bounds = [n * k // parts for k in range(parts + 1)]
        futures = [self._pool.submit(fn, bounds[k], bounds[k + 1]) for k in range(parts - 1)]
        try:
            fn(bounds[-2], bounds[-1])
        finally:
            for f in futures:
                f.result()  # re-raises a worker's exception here

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> SlicePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_INLINE = SlicePool(1)


def gather_rows(src: np.ndarray, rows: np.ndarray, out: np.ndarray, pool: SlicePool | None = None) -> np.ndarray:
    """``out[i] = src[rows[i]]`` for every i, the rows split over ``pool``'s threads.

    ``mode="clip"`` lets ``np.take`` write straight into ``out`` (``mode="raise"``, the
    default, goes through a temporary buffer: half the speed). Rows are checked first.
    """
    if len(rows) and (rows.min() < 0 or rows.max() >= len(src)):
        raise IndexError(f"row index out of range 0..{len(src) - 1}")
    (pool or _INLINE).map_slices(lambda a, b: np.take(src, rows[a:b], axis=0, out=out[a:b], mode="clip"), len(rows))
    return out


@dataclass
class Batch:
    iteration: int
    images: torch.Tensor   # uint8 (B, S, S, 3), pinned when feeding CUDA
    labels: torch.Tensor   # float32 (B, K), pinned likewise
    params: torch.Tensor   # int64 (3, B): top, left, flip (0/1); one tensor, so one non_blocking copy

    @property
    def top(self) -> torch.Tensor:
        return self.params[0]

    @property
    def left(self) -> torch.Tensor:
        return self.params[1]

    @property
    def flip(self) -> torch.Tensor:
        return self.params[2].bool()


class BatchPlan:
    """Which rows and crops process ``rank`` uses at each iteration (a pure function of the iteration)."""

    def __init__(self, num_images: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 image_hw: tuple[int, int] = (256, 256), crop: int = 227, mirror: bool = True):
        self.n, self.batch, self.world, self.rank, self.seed = num_images, batch_size, world_size, rank, seed
        self.global_batch = batch_size * world_size
        self.hw, self.crop, self.mirror = image_hw, crop, mirror
        if self.global_batch > num_images:
            raise DataError(f"the global batch ({batch_size} x {world_size} processes = {self.global_batch}) is "
                            f"larger than the training set ({num_images} images); lower --batch-size")
        # The last incomplete global batch of an epoch is dropped so every batch is full.
        self.iters_per_epoch = num_images // self.global_batch
        self._perm_epoch, self._perm = -1, None

    def epoch_of(self, iteration: int) -> int:
        return iteration // self.iters_per_epoch

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng(_mix(self.seed, 1, epoch)).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def rows(self, iteration: int) -> np.ndarray:
        epoch, pos = divmod(iteration, self.iters_per_epoch)
        g = self.permutation(epoch)[pos * self.global_batch:(pos + 1) * self.global_batch]
        return g[self.rank * self.batch:(self.rank + 1) * self.batch]

    def crops(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(_mix(self.seed, 2, iteration))
        top, left, flip = random_crop_params(self.global_batch, self.hw[0], self.hw[1], self.crop, gen)
        if not self.mirror:
            flip = torch.zeros_like(flip)
        sl = slice(self.rank * self.batch, (self.rank + 1) * self.batch)
        return top[sl], left[sl], flip[sl]

    def batch_at(self, data: PackedData, iteration: int, pin: bool = False, pool: SlicePool | None = None) -> Batch:
        """The uint8 images, labels and crop parameters of ``iteration`` (in file order).

        ``pin``: page-locked tensors (needs CUDA), so the copies to the GPU can be
        ``non_blocking``. Fresh tensors every batch: PyTorch's pinned-memory cache does not
        hand a block out again until the copies reading it have finished.
        """
        rows = self.rows(iteration)
        order = np.argsort(rows, kind="stable")  # read the store in file order (sequential I/O)
        rows = rows[order]
        sel = torch.from_numpy(order)
        params = torch.empty((3, len(rows)), dtype=torch.int64, pin_memory=pin)
        for k, p in enumerate(self.crops(iteration)):
            params[k] = p[sel]
        images = torch.empty((len(rows),) + data.images.shape[1:], dtype=torch.uint8, pin_memory=pin)
        gather_rows(data.images, rows, images.numpy(), pool)
        labels = torch.empty((len(rows), data.labels.shape[1]), dtype=torch.float32, pin_memory=pin)
        np.take(data.labels, rows, axis=0, out=labels.numpy(), mode="clip")
        return Batch(iteration, images, labels, params)


def crop_rows(images: np.ndarray, rows: np.ndarray, top, left, flip, crop: int = 227,
              pool: SlicePool | None = None) -> torch.Tensor:
    """Crops (mirrored where ``flip``) read straight from the packed store: uint8 ``(B, 3, crop, crop)``.

    The CPU fast path: one copy per image from the memory map (no full-image copy first);
    a mirrored crop copies whole 3-byte pixels in reverse (a ``V3`` view), ~2x faster than
    numpy's per-byte reversed copy. Returned as a channels-last view (no transpose).
    Identical to ``augment.crop_flip`` of the full images. ``pool`` splits the images
    over its threads (each image is written by exactly one of them).
    """
    out = np.empty((len(rows), crop, crop, 3), dtype=np.uint8)
    pixels = out.view("V3")[..., 0]
    jobs = list(zip(np.asarray(rows).tolist(), _as_list(top), _as_list(left), _as_list(flip)))

    def work(a: int, b: int) -> None:
        for i in range(a, b):
            r, t, l, f = jobs[i]
            win = images[r, t:t + crop, l:l + crop]
            if f:
                pixels[i] = win.view("V3")[:, ::-1, 0]
            else:
                out[i] = win

    (pool or _INLINE).map_slices(work, len(jobs))
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def cpu_batch(plan: BatchPlan, data: PackedData, iteration: int, channels_last: bool = False,
              pool: SlicePool | None = None, preprocess=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Network-ready (x, y) for CPU training, cropping straight from the store (same result as
    :func:`device_batch` of :meth:`BatchPlan.batch_at`). ``preprocess``: see :func:`network_input`."""
    rows = plan.rows(iteration)
    order = np.argsort(rows, kind="stable")
    top, left, flip = plan.crops(iteration)
    sel = torch.from_numpy(order)
    x = crop_rows(data.images, rows[order], top[sel], left[sel], flip[sel], plan.crop, pool)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return network_input(x, fmt, preprocess), torch.from_numpy(data.labels[rows[order]])


class Prefetcher:
    """Iterate batches ``start .. stop-1`` while a background thread reads ahead ``depth`` batches."""

    _END = object()

    def __init__(self, plan: BatchPlan, data: PackedData, start: int, stop: int, depth: int = 3, pin: bool = False,
                 prepare=None, pool: SlicePool | None = None):
        # ``prepare(iteration)`` replaces reading a Batch: it runs in the thread and its result is
        # yielded as (iteration, result) (CPU training: crops + float conversion there).
        # ``pool``: threads that fill each batch (the caller owns and closes it).
        self.plan, self.data, self.start, self.stop, self.pin = plan, data, start, stop, pin
        self.prepare, self.pool = prepare, pool
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.wait_time = 0.0  # seconds the consumer spent blocked on the loader
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for it in range(self.start, self.stop):
                if self._stop.is_set():
                    return
                if self.prepare is not None:
                    item = (it, self.prepare(it))
                else:
                    item = self.plan.batch_at(self.data, it, self.pin, self.pool)
                while not self._stop.is_set():
                    try:
                        self.q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # surfaced in the consumer thread
            self.q.put(exc)
            return
        self.q.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        item = self.q.get()
        self.wait_time += time.perf_counter() - t0
        if item is self._END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _mean_on(device: torch.device) -> torch.Tensor:
    return mean_bgr_tensor(device)  # cached per device: no synchronising copy per training step


def _caffe_input(x: torch.Tensor, memory_format) -> torch.Tensor:
    """CaffeNet: ``preprocess_uint8``, bit for bit. On CPU one converting copy per channel straight
    into the output layout (about 2x faster than flip + convert + subtract)."""
    if x.device.type != "cpu":
        return (x.flip(1).to(torch.float32) - _mean_on(x.device)).contiguous(memory_format=memory_format)
    out = torch.empty(x.shape, dtype=torch.float32, memory_format=memory_format)
    for ch in range(3):
        out[:, ch].copy_(x[:, 2 - ch])
        out[:, ch].sub_(MEAN_BGR[ch])
    return out


_IMAGENET: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _imagenet_input(x: torch.Tensor, memory_format) -> torch.Tensor:
    """torchvision nets: ``imagenet_preprocess_uint8``'s arithmetic, bit for bit, with the mean and
    std cached per device (that function builds them from tuples: a synchronising copy per call)."""
    stats = _IMAGENET.get(x.device)
    if stats is None:
        stats = _IMAGENET[x.device] = tuple(
            torch.tensor(v, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
            for v in (torchvision_nets.IMAGENET_MEAN, torchvision_nets.IMAGENET_STD))
    mean, std = stats
    return ((x.to(torch.float32) / 255.0 - mean) / std).contiguous(memory_format=memory_format)


# Fast equivalents of the registry's input conventions (keyed by the backbone's ``preprocess``);
# a backbone with another convention goes through its own function.
_FAST_INPUT = {preprocess_uint8: _caffe_input, torchvision_nets.imagenet_preprocess_uint8: _imagenet_input}


def network_input(x: torch.Tensor, memory_format=torch.contiguous_format, preprocess=None) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> the network's float input, ``preprocess(x)`` bit for bit.

    ``preprocess`` is the backbone's (``backbones.get(arch).preprocess``); None means
    CaffeNet's ``preprocess_uint8`` (BGR minus the mean, 0..255). The registry's conventions
    run a faster equivalent (CPU: a converting copy per channel; CUDA: cached constants, no
    host synchronisation); any other function is called as it is.
    """
    preprocess = preprocess or preprocess_uint8
    fast = _FAST_INPUT.get(preprocess)
    if fast is not None:
        return fast(x, memory_format)
    return preprocess(x).contiguous(memory_format=memory_format)


def device_batch(batch: Batch, device: torch.device, crop: int = 227, channels_last: bool = False,
                 preprocess=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch on ``device``: cropped/flipped there, converted by :func:`network_input`; and its labels.

    The crop happens on the device (uint8 crosses the bus, not float). On CUDA, with the
    batch pinned (``BatchPlan.batch_at(pin=True)``), every copy is ``non_blocking`` and
    nothing waits for the GPU: the host runs ahead to the next step.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    non_blocking = device.type == "cuda"
    images = batch.images.to(device, non_blocking=non_blocking)
    labels = batch.labels.to(device, non_blocking=non_blocking)
    params = batch.params.to(device, non_blocking=non_blocking)
    x = crop_flip(images, params[0], params[1], params[2].bool(), crop, memory_format=fmt)
    return network_input(x, fmt, preprocess), labels


def center_batches(data: PackedData, rows: np.ndarray, batch_size: int, device: torch.device, crop: int = 227,
                   channels_last: bool = False, preprocess=None):
    """(x, y) batches of centre crops of ``rows`` (the paper's test-time input), for evaluation.
    ``preprocess``: the backbone's input convention (None: CaffeNet's)."""
    from .augment import center_crop

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for start in range(0, len(rows), batch_size):
        r = np.sort(rows[start:start + batch_size])
        images = torch.from_numpy(np.take(data.images, r, axis=0)).to(device)
        x = (preprocess or preprocess_uint8)(center_crop(images, crop)).contiguous(memory_format=fmt)
        yield x, torch.from_numpy(data.labels[r]).to(device)

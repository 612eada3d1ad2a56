"""Crops and flips of packed uint8 image batches, done on the tensor (on the GPU when there is one).

The paper trains on random 227x227 crops of 256x256 images with random horizontal
flips (Caffe's ``crop_size: 227, mirror: true``), and tests on the centre crop.
Doing this on a whole uint8 batch with one gather is far cheaper than the
original's per-image PIL pipeline, so data loading never limits training.

All functions accept ``(N, H, W, 3)`` (the packed store's layout) or ``(N, 3, H, W)``
uint8 batches and return ``(N, 3, crop, crop)`` uint8 (still RGB: convert with
``models.caffenet.preprocess_uint8``).

Example::

    g = torch.Generator().manual_seed(0)
    x = random_crop_flip(batch_nhwc.cuda(), crop=227, generator=g)   # (N, 3, 227, 227) on the GPU
"""

from __future__ import annotations

import numpy as np
import torch

CROP = 227


def _as_nchw(batch: torch.Tensor) -> torch.Tensor:
    """A (N, 3, H, W) view of the batch (no copy: NHWC input becomes a channels-last view)."""
    if batch.dim() != 4:
        raise ValueError(f"expected a 4-D image batch, got shape {tuple(batch.shape)}")
    if batch.shape[1] == 3:
        return batch
    if batch.shape[-1] == 3:
        return batch.permute(0, 3, 1, 2)
    raise ValueError(f"expected (N, H, W, 3) or (N, 3, H, W), got shape {tuple(batch.shape)}")


def _check_crop(h: int, w: int, crop: int) -> None:
    if crop > h or crop > w:
        raise ValueError(f"crop {crop} is larger than the images ({h}x{w})")


def random_crop_params(n: int, height: int, width: int, crop: int = CROP,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample top offsets, left offsets and flip flags (int64, int64, bool), each of length ``n``.

    Drawn on the generator's device (CPU for ``None``), so the same seed gives the same
    crops whatever device the images live on.
    """
    _check_crop(height, width, crop)
    dev = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, height - crop + 1, (n,), generator=generator, device=dev)
    left = torch.randint(0, width - crop + 1, (n,), generator=generator, device=dev)
    flip = torch.randint(0, 2, (n,), generator=generator, device=dev).bool()
    return top, left, flip


def _params_to(dev: torch.device, top: torch.Tensor, left: torch.Tensor,
               flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The crop parameters on ``dev``. CPU parameters bound for CUDA travel as one pinned int64
    tensor with a ``non_blocking`` copy: a plain ``.to(dev)`` of a pageable tensor would make the
    host wait for every kernel queued before it, once per batch."""
    if dev.type == "cuda" and any(t.device != dev for t in (top, left, flip)):
        packed = torch.stack([top.cpu().long(), left.cpu().long(), flip.cpu().long()])
        if not packed.is_pinned():
            packed = packed.pin_memory()
        packed = packed.to(dev, non_blocking=True)
        return packed[0], packed[1], packed[2].bool()
    return top.to(dev), left.to(dev), flip.to(dev).bool()


def crop_flip(batch: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
              crop: int = CROP, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Crop sample i at (top[i], left[i]) to ``crop`` x ``crop``, mirrored where ``flip[i]``.

    On a GPU: one advanced-indexing gather for the whole batch (one kernel), with no host
    synchronisation (parameters already on the device are used as they are; CPU ones are
    copied ``non_blocking`` from pinned memory). On CPU (NHWC input, the packed layout):
    one numpy slice copy per sample. Both give identical results.
    """
    x = _as_nchw(batch)
    n, _, h, w = x.shape
    _check_crop(h, w, crop)
    dev = x.device
    top, left, flip = _params_to(dev, top, left, flip)
    ar = torch.arange(crop, device=dev)
    rows = top[:, None] + ar[None, :]                                    # (N, crop)
    # A mirrored crop reads its columns right-to-left.
    cols = torch.where(flip[:, None], left[:, None] + (crop - 1) - ar[None, :], left[:, None] + ar[None, :])
    if dev.type == "cpu" and batch.shape[-1] == 3 and batch.shape[1] != 3:
        # On CPU, numpy slice copies of whole pixel rows beat a per-pixel gather by ~10x.
        src = batch.numpy()
        out = np.empty((n, crop, crop, 3), dtype=src.dtype)
        for i, (t, l, f) in enumerate(zip(top.tolist(), left.tolist(), flip.tolist())):
            win = src[i, t:t + crop, l:l + crop]
            out[i] = win[:, ::-1] if f else win
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
    nidx = torch.arange(n, device=dev)[:, None, None]
    if batch.shape[-1] == 3 and batch.shape[1] != 3:
        # Gather from NHWC directly: (N, crop, crop, 3), viewed as NCHW channels-last.
        out = batch[nidx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    else:
        out = x[nidx[:, :, :, None], torch.arange(3, device=dev)[None, :, None, None],
                rows[:, None, :, None], cols[:, None, None, :]]
    return out.contiguous(memory_format=memory_format)


def random_crop_flip(batch: torch.Tensor, crop: int = CROP, generator: torch.Generator | None = None,
                     memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Random ``crop`` x ``crop`` crops with random horizontal flips, independently per sample.

    The paper's training augmentation. Returns uint8 ``(N, 3, crop, crop)`` on the batch's device.
    """
    x = _as_nchw(batch)
    top, left, flip = random_crop_params(x.shape[0], x.shape[2], x.shape[3], crop, generator)
    return crop_flip(batch, top, left, flip, crop, memory_format)


def center_crop(batch: torch.Tensor, crop: int = CROP) -> torch.Tensor:
    """The centre ``crop`` x ``crop`` of every image (the paper's test-time input), ``(N, 3, crop, crop)``."""
    x = _as_nchw(batch)
    h, w = x.shape[2], x.shape[3]
    _check_crop(h, w, crop)
    t, l = (h - crop) // 2, (w - crop) // 2
    return x[:, :, t:t + crop, l:l + crop].contiguous()


def ten_crop(batch: torch.Tensor, crop: int = CROP) -> torch.Tensor:
    """Caffe-style oversampling: ``(10, N, 3, crop, crop)``.

    Order: top-left, top-right, bottom-left, bottom-right, centre, then the same five
    mirrored horizontally. Average a network's outputs over the first axis.
    """
    x = _as_nchw(batch)
    h, w = x.shape[2], x.shape[3]
    _check_crop(h, w, crop)
    ct, cl = (h - crop) // 2, (w - crop) // 2
    corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (ct, cl)]
    crops = [x[:, :, t:t + crop, l:l + crop] for t, l in corners]
    crops += [c.flip(-1) for c in crops]
    return torch.stack(crops, 0).contiguous()

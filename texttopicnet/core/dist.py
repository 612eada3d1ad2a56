"""Single-process and ``torchrun`` multi-process setup, behind one call.

``init_distributed()`` works for a plain ``python cnn/02_train.py`` (world size 1,
no process group) and under ``torchrun`` / ``python -m torch.distributed.run``, which
set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``:
then it joins the ``env://`` process group with NCCL when the process drives a CUDA
device and Gloo on CPU. Each process uses ``cuda:LOCAL_RANK`` when CUDA is used.

Example::

    info = init_distributed()            # DistInfo(rank=0, world_size=1, ..., device=cpu)
    ...
    loss = all_reduce_mean(loss.detach())
    cleanup()

    torchrun --nproc_per_node 8 cnn/02_train.py --out runs/full     # 8 GPUs
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    is_main: bool
    device: torch.device
    backend: str | None = None  # None when no process group was created (world size 1)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def _pick_device(device: str | torch.device, local_rank: int) -> torch.device:
    want = str(device)
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(want)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} asked for CUDA, but torch.cuda.is_available() is False here")
        if dev.index is None:  # one GPU per process: LOCAL_RANK picks it
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise UserError(f"LOCAL_RANK {local_rank} but only {count} CUDA device(s) are visible; "
                                f"use --nproc_per_node <= {count}")
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str | torch.device = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Read the torchrun environment, join the process group if there is one, pick the device."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _pick_device(device, local_rank)
    backend = None
    if world > 1:
        if not dist.is_available():
            raise UserError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            kwargs = {"device_id": dev} if dev.type == "cuda" else {}
            dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank,
                                    timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, is_main=rank == 0,
                    device=dev, backend=backend)


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over all processes, in place; returns it (unchanged at world size 1)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(dist.get_world_size())
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s Python object on every process (identity without a process group)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every process's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out

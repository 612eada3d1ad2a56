"""The training loop: SGD on packed images, resumable, single- or multi-process.

:func:`train` runs the solver of a :class:`~texttopicnet.training.config.TrainConfig`
from ``RUN/packed`` into ``RUN/train``, for any backbone of
:mod:`texttopicnet.networks.backbones` (``cfg.arch``, default the paper's CaffeNet) and any
loss of :mod:`texttopicnet.training.losses` (``cfg.loss``, default the paper's sigmoid
cross-entropy):

- CPU, one CUDA GPU (bf16 autocast, channels-last, pinned memory, optional
  ``torch.compile``), or many processes under ``torchrun`` (DistributedDataParallel;
  rank 0 alone logs and checkpoints).
- The schedule is resolved for the world size (``config.resolve_schedule``: the paper's
  10.24M images and a decay every 3.2M images, whatever the number of processes),
  printed at the start and recorded in the checkpoint's config and the summary.
- On CUDA a step makes no host synchronisation: pinned uint8 batch, labels and crop
  parameters go over with ``non_blocking`` copies and are cropped on the device; the
  loss reaches the host only at logging/checkpoint iterations.
- Resumes from ``checkpoint.pt`` when there is one. Data order and crops are functions
  of (seed, iteration) and the checkpoint restores model, optimizer, scheduler and every
  RNG, so a stopped-and-resumed run reaches bitwise the same weights on CPU.
- A NaN or infinite loss stops the run with a clear error before any checkpoint of the
  broken weights is written; the last good checkpoint stays.
- At the end: the loss in eval mode on centre crops, the export (``model.safetensors`` +
  ``model.sha256``) and ``summary.json``.
- The checkpoint records the architecture (``arch``: ``backbones.describe``) and the loss
  (``loss``: its config), so loading needs no flag and retrieval knows how outputs map
  into the text space. ``cfg.freeze_until`` stops learning up to a layer (frozen BatchNorm
  layers keep their statistics); ``cfg.init`` starts from a weights file (its head replaced
  when its size differs).

Optimiser: PyTorch SGD, which applies the learning rate after the momentum sum (Caffe
before it); the two are identical while the rate is constant and differ only briefly after
each step decay. Parameter groups: ``backbones.param_groups`` (biases lr x2 without decay,
as the paper's solver; normalisation scales lr x1 without decay).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..core import dist
from ..core.errors import DataError, UserError
from ..core.io import write_json
from ..networks import backbones, layers
from .checkpoint import (
    capture_rng_state,
    clean_state_dict,
    load_checkpoint,
    load_state_dict_exact,
    restore_rng_state,
    save_checkpoint,
)
from .config import Schedule, TrainConfig, resolved
from .data import BatchPlan, PackedData, Prefetcher, SlicePool, _mix, center_batches, cpu_batch, device_batch
from .export import export_weights
from .logging import RunLogger, loss_summary, read_log, truncate_log
from .losses import build_loss

CHECKPOINT = "checkpoint.pt"
# Settings that change the training trajectory: a resume with different values is allowed
# (Caffe allows it too) but announced. (A different architecture or frozen set cannot resume.)
_TRAJECTORY_KEYS = ("batch_size", "base_lr", "lr_scaling", "gamma", "step_size", "momentum", "weight_decay",
                    "crop", "mirror", "dropout", "seed", "world_size", "arch", "loss", "margin", "negatives",
                    "freeze_until")
# What a checkpoint written before a setting existed was trained with.
_LEGACY = {"arch": "caffenet", "loss": "sigmoid_ce", "margin": 0.1, "negatives": "soft", "freeze_until": None}


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def _setup_backends(cfg: TrainConfig, device: torch.device) -> dict:
    """Set the kernel-selection flags for this run; returns the previous values (restored at the end)."""
    previous = {"deterministic": torch.are_deterministic_algorithms_enabled(),
                "benchmark": torch.backends.cudnn.benchmark}
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return previous


def _restore_backends(previous: dict) -> None:
    torch.use_deterministic_algorithms(previous["deterministic"])
    torch.backends.cudnn.benchmark = previous["benchmark"]


def _schedule_lr(cfg: TrainConfig, lr_eff: float, mult: float, iteration: int) -> float:
    # Caffe "step" policy: base_lr * gamma ^ floor(iter / stepsize).
    return lr_eff * mult * cfg.gamma ** (iteration // cfg.step_size)


def _sync_schedule(optimizer, scheduler, cfg: TrainConfig, lr_eff: float, iteration: int) -> None:
    """Make optimizer/scheduler follow ``cfg`` from ``iteration`` (after loading a checkpoint)."""
    scheduler.step_size, scheduler.gamma = cfg.step_size, cfg.gamma
    scheduler.base_lrs = []
    for group in optimizer.param_groups:
        mult = group.get("lr_mult", 1.0)
        group["initial_lr"] = lr_eff * mult
        group["lr"] = _schedule_lr(cfg, lr_eff, mult, iteration)
        group["momentum"] = cfg.momentum
        # decay_mult: 1 for weights, 0 for biases and norm scales (absent from pre-registry checkpoints,
        # whose groups were CaffeNet's weights (lr x1, decayed) and biases (lr x2, not decayed)).
        group["weight_decay"] = cfg.weight_decay * group.get("decay_mult", 1.0 if mult == 1.0 else 0.0)
        scheduler.base_lrs.append(group["initial_lr"])
    scheduler.last_epoch = iteration
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def _run_config(cfg: TrainConfig, sched: Schedule, info, data: PackedData) -> dict:
    return {**cfg.to_dict(), "world_size": info.world_size, "global_batch": sched.global_batch,
            "effective_lr": sched.effective_lr, "num_images": len(data), "num_outputs": data.num_outputs,
            "schedule": sched.to_dict()}


def _describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _evaluate(model, data: PackedData, cfg: TrainConfig, device, amp: bool, channels_last: bool, loss_fn,
              preprocess) -> dict:
    """Loss in eval mode (no dropout) on centre crops of evenly spaced training images."""
    count = min(cfg.eval_images, len(data))
    if count <= 0:
        return {}
    rows = np.unique(np.linspace(0, len(data) - 1, count).round().astype(np.int64))
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        batches = center_batches(data, rows, max(1, cfg.batch_size), device, cfg.crop, channels_last, preprocess)
        value = loss_fn.evaluate((model(x), y) for x, y in batches)
    layers.train_mode(model, was_training)
    # The baseline on the same images, predicting the whole training set's mean target.
    base = loss_fn.mean_baseline(data.labels[rows], mean=data.labels.mean(axis=0, dtype=np.float64))
    out = {"eval_images": int(len(rows)), "eval_loss": value, "eval_mean_baseline_loss": base}
    if not math.isfinite(value):
        # Never a NaN in the summary. Seen with BatchNorm nets after a few steps on tiny batches, whose
        # running statistics are still far from the activations.
        out["eval_loss"] = None
        out["eval_note"] = (f"the eval-mode loss is {value} (BatchNorm running statistics not settled after "
                            f"{cfg.iterations} iterations?); training-mode losses are in log.jsonl")
    return out


def _build_model(cfg: TrainConfig, num_outputs: int, state: dict | None, ckpt_path: Path, is_main: bool):
    """The network to train: seeded random init (CaffeNet: exactly ``CaffeNet(K, dropout)`` after
    ``manual_seed(seed)``), or ``cfg.init``'s weights on a fresh start; on a resume, the checkpoint's
    architecture options. Returns (model, description of the init file or None)."""
    spec = backbones.get(cfg.arch)
    opts: dict = {}
    if state is not None:
        record = state.get("arch") or {"arch": "caffenet", "options": {}}  # pre-registry checkpoints: CaffeNet
        if record.get("arch") != cfg.arch:
            raise UserError(f"{ckpt_path} trains {record.get('arch')}, not {cfg.arch}: pass --arch "
                            f"{record.get('arch')} to resume it, or --force to start over with {cfg.arch}")
        opts = dict(record.get("options") or {})
    if "dropout" in spec.options:
        opts["dropout"] = cfg.dropout
    torch.manual_seed(cfg.seed)
    model = backbones.build(cfg.arch, num_outputs, **opts)
    init = None
    if state is None and cfg.init:
        from ..weights.loading import load_network

        model, info = load_network(cfg.init, num_outputs=num_outputs, seed=cfg.seed, arch=cfg.arch,
                                   replace_head=True, options=({"dropout": cfg.dropout} if "dropout" in opts else None))
        init = {k: info[k] for k in ("source", "file_sha256", "num_outputs", "options", "notes")}
        if is_main:
            print(f"starting from {info['source']} ({info['arch']})"
                  + "".join(f"; {n}" for n in info["notes"]), flush=True)
    if cfg.freeze_until:
        frozen = layers.freeze_until(model, cfg.freeze_until)
        if is_main:
            total = sum(1 for _ in model.parameters())
            print(f"frozen up to {cfg.freeze_until}: {len(frozen)} of {total} parameter tensors do not learn",
                  flush=True)
    return model, init


def train(cfg: TrainConfig, packed_dir: str | Path, out_dir: str | Path, info=None, fresh: bool = False,
          stop_after: int | None = None, tensorboard: bool = True) -> dict:
    """Train (or resume) and return a status dict; on completion it is the run summary.

    ``fresh`` discards an existing checkpoint. ``stop_after`` trains at most that many
    iterations in this call, then checkpoints and returns ``{"finished": False, ...}``
    (rerun to continue: for time-limited job slots).
    """
    info = info or dist.init_distributed("auto")
    device = info.device
    out_dir = Path(out_dir)
    # Iterations and decay step for this world size (the paper's schedule is in images seen); crop and
    # dropout from the architecture unless given.
    cfg, sched = resolved(cfg, info.world_size)
    data = PackedData(packed_dir)
    if cfg.crop > min(data.image_size):
        raise DataError(f"the {cfg.crop} px training crop is larger than the packed images {data.image_size} in "
                        f"{packed_dir}: repack with cnn/01_pack_images.py --size, or lower --crop")
    plan = BatchPlan(len(data), cfg.batch_size, info.world_size, info.rank, cfg.seed, data.image_size,
                     cfg.crop, cfg.mirror)
    # Automatic: bf16 autocast and channels-last on CUDA; off on CPU, where bf16 is slow without AMX.
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    channels_last = (device.type == "cuda") if cfg.channels_last is None else bool(cfg.channels_last)
    previous_backends = _setup_backends(cfg, device)
    try:
        return _train(cfg, sched, data, plan, out_dir, info, amp, channels_last, fresh, stop_after, tensorboard)
    finally:
        _restore_backends(previous_backends)


def _train(cfg, sched, data, plan, out_dir, info, amp, channels_last, fresh, stop_after, tensorboard) -> dict:
    device = info.device
    lr_eff = sched.effective_lr
    ckpt_path = out_dir / CHECKPOINT
    run_cfg = _run_config(cfg, sched, info, data)
    if info.is_main:
        print(sched.describe(), flush=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        if fresh:
            for name in (CHECKPOINT, "log.jsonl", "summary.json"):
                (out_dir / name).unlink(missing_ok=True)
    dist.barrier()

    loss_fn = build_loss(cfg.loss, **cfg.loss_options())
    problem = loss_fn.check_targets(data.labels)
    if problem:
        raise DataError(f"{data.dir / 'labels.npy'}: {problem}")
    preprocess = backbones.get(cfg.arch).preprocess
    # Same initial weights on every rank (DDP broadcasts rank 0's anyway); dropout streams per rank.
    state = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    model, init = _build_model(cfg, data.num_outputs, state, ckpt_path, info.is_main)
    if init is not None:
        run_cfg["init_weights"] = init
    start = 0
    if state is not None:
        old = state.get("config", {})
        if old.get("freeze_until", _LEGACY["freeze_until"]) != cfg.freeze_until:
            raise UserError(f"{ckpt_path} was trained with --freeze-until {old.get('freeze_until')}, not "
                            f"{cfg.freeze_until}: the solver state cannot be resumed with other layers learning; "
                            "use the same setting, or --force to start over")
        load_state_dict_exact(model, state["model"])
        start = int(state["iteration"])
        if "init_weights" in old:
            run_cfg["init_weights"] = old["init_weights"]
        changed = [f"{k}: {old.get(k, _LEGACY.get(k))} -> {run_cfg[k]}" for k in _TRAJECTORY_KEYS
                   if old.get(k, _LEGACY.get(k)) != run_cfg[k]]
        if info.is_main:
            print(f"resuming from {ckpt_path} at iteration {start}"
                  + (f" with changed settings ({'; '.join(changed)})" if changed else ""), flush=True)
    torch.manual_seed(_mix(cfg.seed, 3, info.rank))
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.SGD(backbones.param_groups(model, cfg.weight_decay, lr_eff), lr=lr_eff,
                                momentum=cfg.momentum,
                                **({"fused": True} if device.type == "cuda" else {}))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 autocast needs no loss scaling
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _sync_schedule(optimizer, scheduler, cfg, lr_eff, start)
        rng = state.get("rng") or {}
        per_rank = rng.get("per_rank") or []
        if len(per_rank) == info.world_size:
            restore_rng_state(per_rank[info.rank])
        elif info.is_main:
            print("note: the checkpoint's RNG states are for another number of processes; dropout "
                  "masks after the resume are freshly seeded", flush=True)
        del state

    net = model
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    logger = RunLogger(out_dir, info.is_main, cfg.iterations, start, tensorboard=tensorboard)
    if info.is_main:
        truncate_log(out_dir / "log.jsonl", start)

    def save(done: int) -> None:
        rng_all = dist.all_gather_object(capture_rng_state())
        if info.is_main:
            save_checkpoint(ckpt_path, {
                "model": clean_state_dict(model.state_dict()), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": {**rng_all[0], "per_rank": rng_all}, "iteration": done, "config": run_cfg,
                "arch": backbones.describe(model), "loss": loss_fn.config()})
        dist.barrier()

    stop = cfg.iterations if stop_after is None else min(cfg.iterations, start + max(1, stop_after))
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    done, last_ckpt = start, (start if start > 0 else None)
    on_gpu = device.type == "cuda"
    # CPU: crops and float conversion in the loader thread; GPU: uint8 to the GPU, cropped there.
    # Threads filling each batch; the batches, crops and flips do not depend on their number.
    pool = SlicePool(cfg.loader_threads)
    prepare = None if on_gpu else (lambda it: cpu_batch(plan, data, it, channels_last, pool, preprocess))
    prefetch = Prefetcher(plan, data, start, stop, cfg.prefetch, pin=on_gpu, prepare=prepare, pool=pool)
    pending: list[torch.Tensor] = []
    interval: list[float] = []
    t_mark, wait_mark = time.perf_counter(), 0.0
    net.train()
    layers.train_mode(model)  # frozen BatchNorm layers keep their statistics
    try:
        for item in prefetch:
            if on_gpu:
                iteration, (x, y) = item.iteration, device_batch(item, device, cfg.crop, channels_last, preprocess)
            else:
                iteration, (x, y) = item
            with autocast():
                logits = net(x)
            loss = loss_fn(logits, y, step=iteration)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr_used = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            pending.append(loss.detach())
            done = iteration + 1
            logger.advance()
            want_log = done == 1 or done % cfg.log_every == 0 or done == stop
            want_ckpt = done % cfg.checkpoint_every == 0 or done == stop
            if want_log or want_ckpt or device.type == "cpu":
                # One host sync for all pending losses (averaged over processes: a NaN anywhere is seen everywhere).
                values = dist.all_reduce_mean(torch.stack(pending).float()).tolist()
                first = done - len(values) + 1
                pending = []
                for k, v in enumerate(values):
                    if not math.isfinite(v):
                        kept = f"the last good checkpoint (iteration {last_ckpt}) is kept in {ckpt_path}" \
                            if last_ckpt else "no checkpoint had been written yet"
                        raise TrainingDiverged(
                            f"training diverged: the loss became {v} at iteration {first + k}; {kept}. "
                            f"Lower --base-lr (now {cfg.base_lr}) and rerun (add --force to restart from scratch)")
                interval.extend(values)
            if want_log:
                now = time.perf_counter()
                n, elapsed = len(interval), max(now - t_mark, 1e-9)
                data_time = (prefetch.wait_time - wait_mark) / n
                logger.record({"iteration": done, "loss": sum(interval) / n, "lr": lr_used,
                               "images_per_s": n * plan.global_batch / elapsed, "data_time": data_time,
                               "step_time": elapsed / n - data_time, "n": n, "epoch": plan.epoch_of(done - 1)})
                interval, t_mark, wait_mark = [], time.perf_counter(), prefetch.wait_time
            if want_ckpt:
                save(done)
                last_ckpt = done
    finally:
        prefetch.close()
        pool.close()
        logger.close()

    status = {"finished": done >= cfg.iterations, "iteration": done, "total_iterations": cfg.iterations}
    if not status["finished"] or not info.is_main:
        return status
    summary = {"iterations": done, **loss_summary(read_log(out_dir / "log.jsonl"), cfg.iterations,
                                                  plan.global_batch),
               "mean_baseline_loss": loss_fn.mean_baseline(data.labels),
               "min_possible_loss": loss_fn.min_possible(data.labels),
               "arch": backbones.describe(model), "loss": loss_fn.config(), "freeze_until": cfg.freeze_until}
    summary.update(_evaluate(model, data, cfg, device, amp, channels_last, loss_fn, preprocess))
    digest = export_weights(model, out_dir / "model.safetensors")
    summary.update({"device": _describe_device(device), "world_size": info.world_size,
                    "global_batch": plan.global_batch, "effective_lr": lr_eff, "amp_bf16": amp,
                    "channels_last": channels_last, "compile": cfg.compile, "num_images": len(data),
                    "num_outputs": data.num_outputs, "epochs": done / plan.iters_per_epoch,
                    "model_sha256": digest, "preset": cfg.preset, "schedule": sched.to_dict()})
    write_json(out_dir / "summary.json", summary)
    return {**status, **summary}

"""Fine-tune a whole network on VOC2007 trainval (multi-label), evaluate with centre and 10-crop.

Any registered backbone (``networks.backbones``: CaffeNet, the paper's, or a torchvision net):
the head, the crop and the pixel convention are the backbone's (CaffeNet: fc8, 227, BGR minus
the Caffe mean; ResNet-50: fc, 224, ImageNet mean/std ...).

The paper fine-tunes its network on VOC2007 trainval and reports test mAP but does not
publish the schedule. Ours (:class:`FinetuneConfig`, all overridable):

- new 20-way head (published fc8 init: Gaussian std 0.01, zero bias), learning rate x10 on it
  (Caffe's fine-tuning convention, e.g. its ``finetune_flickr_style`` example), x2 on biases, no
  decay on biases (the paper's solver) nor on normalisation scales; SGD momentum 0.9, weight
  decay 5e-4, base lr 0.001 (the paper's training lr);
- batch 64, 12,500 iterations (~160 epochs of the 5,011 trainval images: the same number of
  image presentations as the widely used VOC07 fine-tuning protocol of Kraehenbuehl et al.,
  ICLR 2016, 80k iterations x batch 10), lr x0.1 every 5,000 iterations;
- loss: per-class sigmoid cross-entropy against label == 1; labels 0 ("difficult only")
  are masked out of the loss, as they are ignored by the official AP;
- input: random crops (CaffeNet 227) of the 256x256 warp plus random horizontal flips
  (training), the centre crop or the 10 Caffe crops averaged (test).

Determinism and resume: sample order and crops are functions of (seed, iteration), and the
checkpoint (plain dict: model, optimizer, scheduler, scaler, rng, iteration, config, arch; atomic) is
written every ``checkpoint_every`` iterations, so a killed run continues where it stopped and
ends with the same weights.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..core.errors import UserError
from ..networks import backbones, layers
from ..training.augment import center_crop, random_crop_flip, ten_crop
from ..training.checkpoint import (
    capture_rng_state,
    clean_state_dict,
    load_checkpoint,
    load_state_dict_exact,
    restore_rng_state,
    save_checkpoint,
)
from .metrics import voc07_ap


@dataclass
class FinetuneConfig:
    iterations: int = 12500
    batch_size: int = 64
    base_lr: float = 0.001
    lr_step: int = 5000
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 10.0
    checkpoint_every: int = 500
    seed: int = 0
    init: str = ""  # sha256 of the starting weights: a checkpoint only resumes the same start

    def check(self) -> None:
        for name in ("iterations", "batch_size", "lr_step", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.base_lr > 0:
            raise UserError(f"base_lr must be positive, got {self.base_lr}")


def new_head(net: nn.Module, num_classes: int, seed: int) -> nn.Module:
    """Replace the head (CaffeNet's fc8, ResNet's fc ...) by a ``num_classes``-way layer drawn from
    ``seed`` (without touching the global RNG)."""
    return backbones.replace_head(net, num_classes, seed=seed)


def param_groups(net: nn.Module, cfg: FinetuneConfig) -> list[dict]:
    """Body weights, body biases (x2, no decay), normalisation scales (no decay), head weights
    (x mult), head biases (x 2 mult): ``backbones.param_groups`` (CaffeNet: the four groups)."""
    return backbones.param_groups(net, cfg.weight_decay, cfg.base_lr, head_lr_mult=cfg.head_lr_mult)


def lr_at(cfg: FinetuneConfig, iteration: int) -> float:
    return cfg.base_lr * cfg.gamma ** (iteration // cfg.lr_step)


def batch_indices(n: int, batch_size: int, iteration: int, seed: int) -> np.ndarray:
    """Samples of one iteration: walk through a fresh seeded permutation per epoch (deterministic)."""
    start = iteration * batch_size
    pos = np.arange(start, start + batch_size)
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(pos // n):
        perm = np.random.default_rng([seed, int(epoch)]).permutation(n)
        sel = pos // n == epoch
        out[sel] = perm[pos[sel] % n]
    return out


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid cross-entropy over the (image, class) entries whose label is not 0."""
    mask = (labels != 0).to(logits.dtype)
    target = (labels == 1).to(logits.dtype)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def finetune(net: nn.Module, images: np.ndarray, labels: np.ndarray, cfg: FinetuneConfig, ckpt_path: Path,
             device: torch.device, log: Callable[[dict], None] | None = None, progress: bool = True) -> dict:
    """Train ``net`` (head already replaced) on uint8 ``images`` (N, 256, 256, 3) with labels (N, C) in {1,-1,0}.

    Resumes from ``ckpt_path`` when it holds a checkpoint of the same config. Returns a summary.
    """
    from tqdm import tqdm

    cfg.check()
    spec = backbones.spec_of(net)
    if len(images) != len(labels) or len(images) == 0:
        raise UserError(f"fine-tuning needs aligned, non-empty images and labels ({len(images)} vs {len(labels)})")
    net.to(device)
    opt = torch.optim.SGD(param_groups(net, cfg), lr=cfg.base_lr, momentum=cfg.momentum)
    start = 0
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location="cpu")
        saved = state.get("config") or {}
        if {k: saved.get(k) for k in dataclasses.asdict(cfg) if k != "iterations"} != \
                {k: v for k, v in dataclasses.asdict(cfg).items() if k != "iterations"}:
            raise UserError(f"{ckpt_path}: checkpoint was made with a different configuration ({saved}); "
                            "use --force to start over")
        load_state_dict_exact(net, state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        start = int(state["iteration"])
    else:
        torch.manual_seed(cfg.seed)  # dropout masks: a fresh run is as repeatable as a resumed one
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int8))

    def save(it):
        save_checkpoint(ckpt_path, {"model": clean_state_dict(net.state_dict()), "optimizer": opt.state_dict(),
                                    "scheduler": None, "scaler": None, "rng": capture_rng_state(),
                                    "iteration": it, "config": dataclasses.asdict(cfg),
                                    "arch": backbones.describe(net)})

    layers.train_mode(net)
    losses = []
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.iterations, initial=min(start, cfg.iterations), desc="fine-tune", unit="it",
               disable=not progress)
    for it in range(start, cfg.iterations):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, it) * g["lr_mult"]
        idx = batch_indices(len(images), cfg.batch_size, it, cfg.seed)
        idx = np.sort(idx)  # order inside a batch is irrelevant to SGD; sorted memory-map reads are faster
        batch = torch.from_numpy(np.ascontiguousarray(images[idx])).to(device)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
        x = spec.preprocess(random_crop_flip(batch, spec.crop, generator=gen))
        loss = masked_bce(net(x), labels_t[idx].to(device))
        if not torch.isfinite(loss):
            raise UserError(f"fine-tuning diverged at iteration {it} (loss {loss.item()}); lower --base-lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if log is not None:
            log({"iteration": it + 1, "loss": losses[-1], "lr": lr_at(cfg, it)})
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
            save(it + 1)
    bar.close()
    net.eval()
    tail = losses[-max(1, len(losses) // 10):] if losses else []
    return {"start_iteration": start, "iterations": cfg.iterations, "seconds": time.perf_counter() - t0,
            "final_loss": float(np.mean(tail)) if tail else None, "first_loss": losses[0] if losses else None}


@torch.inference_mode()
def predict(net: nn.Module, images: np.ndarray, mode: str = "center", batch_size: int = 64,
            device: torch.device = torch.device("cpu"), progress: bool = True) -> np.ndarray:
    """Sigmoid scores (N, C): the centre crop, or the mean over Caffe's 10 crops ("10crop")."""
    from tqdm import tqdm

    if mode not in ("center", "10crop"):
        raise ValueError("mode must be 'center' or '10crop'")
    spec = backbones.spec_of(net)
    net.eval().to(device)
    out = []
    for s in tqdm(range(0, len(images), batch_size), desc=f"test {mode}", disable=not progress):
        b = torch.from_numpy(np.array(images[s:s + batch_size])).to(device)  # copy: memory maps are read-only
        if mode == "center":
            p = torch.sigmoid(net(spec.preprocess(center_crop(b, spec.crop))))
        else:
            crops = ten_crop(b, spec.crop)  # (10, n, 3, crop, crop)
            logits = net(spec.preprocess(crops.flatten(0, 1)))
            p = torch.sigmoid(logits).view(10, len(b), -1).mean(0)
        out.append(p.float().cpu().numpy())
    return np.concatenate(out)


def evaluate(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> tuple[dict, float]:
    """Official VOC07 AP per class and the mean over classes with a positive test image."""
    ap = {c: voc07_ap(scores[:, j], labels[:, j]) for j, c in enumerate(classes)}
    scored = [c for j, c in enumerate(classes) if (labels[:, j] == 1).any()] or classes
    return ap, float(np.mean([ap[c] for c in scored]))


def epochs(cfg: FinetuneConfig, n_images: int) -> float:
    return cfg.iterations * cfg.batch_size / max(1, n_images)


__all__ = ["FinetuneConfig", "new_head", "finetune", "predict", "evaluate", "masked_bce", "batch_indices", "lr_at",
           "param_groups", "epochs"]

"""Training configuration: the paper's solver as the default preset, plus a small demo preset.

``paper`` is the published ``solver.prototxt`` (REFERENCE.md, Stage 3): SGD momentum
0.9, weight decay 5e-4 (weights only), base lr 0.001 (biases x2), step decay x0.1
every 50,000 iterations, 160,000 iterations of batch 64, random 227 crops + mirror.

``demo`` trains the same, exact CaffeNet on the embedded demo corpus (~600 images)
on 2 CPU cores in about three minutes; it trades the schedule (few iterations,
smaller batch, larger learning rate) for speed, never the architecture.

Learning-rate scaling rule (many processes): ``base_lr`` is the rate for a global
batch of 64 images (the paper's); the rate actually used is
``base_lr * global_batch / 64`` where ``global_batch = batch_size * world_size``
(linear scaling, Goyal et al. 2017). ``lr_scaling="none"`` uses ``base_lr`` as is.
``batch_size`` is per process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..core.errors import UserError

PAPER_BATCH = 64


@dataclass
class TrainConfig:
    preset: str = "paper"
    iterations: int = 160_000       # paper: 160k iterations (~100 epochs of 100k images)
    batch_size: int = 64            # per process; paper: 64
    base_lr: float = 0.001          # at a global batch of 64; paper: 0.001 (biases x2)
    lr_scaling: str = "linear"      # "linear" (lr x global_batch/64) or "none"
    gamma: float = 0.1              # paper: step policy, gamma 0.1 ...
    step_size: int = 50_000         # ... every 50k iterations
    momentum: float = 0.9
    weight_decay: float = 5e-4      # on weights only (Caffe decay_mult 0 on biases)
    crop: int = 227
    mirror: bool = True
    dropout: float = 0.5            # paper: 0.5 on fc6 and fc7 (tests may set 0 to compare runs exactly)
    checkpoint_every: int = 5_000
    log_every: int = 20
    seed: int = 0
    amp: bool | None = None         # None: bf16 autocast on CUDA, off on CPU
    channels_last: bool | None = None  # None: on for CUDA, off on CPU
    compile: bool = False
    deterministic: bool = False
    prefetch: int = 3               # batches read ahead by the loader thread
    eval_images: int = 512          # end-of-run loss in eval mode (centre crops) on this many training images

    def effective_lr(self, world_size: int = 1) -> float:
        if self.lr_scaling == "none":
            return self.base_lr
        return self.base_lr * self.batch_size * world_size / PAPER_BATCH

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        if self.iterations < 1:
            raise UserError(f"--iterations must be >= 1 (got {self.iterations})")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if not self.base_lr > 0:
            raise UserError(f"--base-lr must be > 0 (got {self.base_lr})")
        if self.step_size < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise UserError("--step-size, --checkpoint-every and --log-every must be >= 1")
        if self.lr_scaling not in ("linear", "none"):
            raise UserError(f"--lr-scaling must be 'linear' or 'none' (got {self.lr_scaling!r})")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1) (got {self.dropout})")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # ~640 demo images, 2 CPU cores at ~16 img/s: 320 x 16 = 5,120 images (8 epochs) in ~5 min.
    # Small batches give more updates per second of CPU; the rate per update (0.008 x 16/64 = 0.002)
    # is 2x the paper's because the run is ~500x shorter (0.0015 stalled at the baseline, 0.02
    # overshot); one x0.1 decay for the last quarter, as the paper's step schedule. 160 iterations
    # already beat the mean-distribution loss, but the random-init network's SVM features were still
    # better; at 320 the trained pool5/fc6 features overtake them. Tuned on the demo corpus (seed 0).
    "demo": {"iterations": 320, "batch_size": 16, "base_lr": 0.008, "step_size": 240,
             "checkpoint_every": 80, "log_every": 10, "eval_images": 128},
}


def make_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """The preset's config with ``overrides`` applied (``None`` values leave the preset's)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
    for key, value in overrides.items():
        if key not in fields:
            raise UserError(f"unknown training setting {key!r}")
        if value is not None:
            values[key] = value
    return TrainConfig(**values).validate()

"""Training configuration: the paper's solver as the default preset, plus a small demo preset.

``paper`` is the published ``solver.prototxt`` (REFERENCE.md, Stage 3): SGD momentum
0.9, weight decay 5e-4 (weights only), base lr 0.001 (biases x2), step decay x0.1
every 50,000 iterations, 160,000 iterations of batch 64, random 227 crops + mirror.

Network and loss (any preset): ``arch`` names a backbone of :mod:`texttopicnet.networks.backbones`
(default ``caffenet``, the paper's), ``loss`` one of :mod:`texttopicnet.training.losses` (default
``sigmoid_ce``, the paper's; ``margin`` and ``negatives`` configure ``triplet``); ``crop`` and
``dropout`` default to the architecture's (CaffeNet: 227 and 0.5, the paper's values), filled in
by :func:`resolved`. ``freeze_until`` stops learning up to a layer; ``init`` starts from a
weights file instead of the random initialisation.

``demo`` trains the same, exact CaffeNet on the embedded demo corpus (~600 images)
on 2 CPU cores in about three minutes; it trades the schedule (few iterations,
smaller batch, larger learning rate) for speed, never the architecture.

Schedule in images seen (many processes): the paper's schedule is 160,000 x 64 =
10,240,000 images with a x0.1 decay every 50,000 x 64 = 3,200,000 images. Presets
state it in images (``total_images``, ``decay_images``) and :func:`resolve_schedule`
turns it into iterations for the actual global batch: ``iterations =
ceil(total_images / global_batch)`` and ``step_size = round(decay_images /
global_batch)`` (halves up, at least 1). So 8 processes of 64 run 20,000 iterations
decaying every 6,250, the same 10.24M images as one GPU. ``iterations`` /
``step_size`` given explicitly (``--iterations``, ``--step-size``) are iterations
and are used as they are, whatever the world size.

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
PAPER_TOTAL_IMAGES = 160_000 * PAPER_BATCH   # 10,240,000 images seen
PAPER_DECAY_IMAGES = 50_000 * PAPER_BATCH    # 3,200,000 images between x0.1 decays


@dataclass
class TrainConfig:
    preset: str = "paper"
    iterations: int | None = None   # None: ceil(total_images / global batch); given: iterations as they are
    batch_size: int = 64            # per process; paper: 64
    total_images: int = PAPER_TOTAL_IMAGES  # paper: 160k iterations x 64 (~100 epochs of 100k images)
    decay_images: int = PAPER_DECAY_IMAGES  # paper: x0.1 every 50k iterations x 64
    base_lr: float = 0.001          # at a global batch of 64; paper: 0.001 (biases x2)
    lr_scaling: str = "linear"      # "linear" (lr x global_batch/64) or "none"
    gamma: float = 0.1              # paper: step policy, gamma 0.1 ...
    step_size: int | None = None    # ... every 50k iterations of 64 (None: round(decay_images / global batch))
    momentum: float = 0.9
    weight_decay: float = 5e-4      # on weights only (Caffe decay_mult 0 on biases)
    crop: int | None = None         # None: the architecture's (CaffeNet 227, the paper's; torchvision 224)
    mirror: bool = True
    dropout: float | None = None    # None: the architecture's (CaffeNet 0.5 on fc6/fc7, the paper's; AlexNet/VGG
                                    # 0.5, GoogLeNet 0.2; ResNet/DenseNet have none); tests may set 0
    arch: str = "caffenet"          # networks.backbones name; the paper's CaffeNet
    loss: str = "sigmoid_ce"        # training.losses name; the paper's sigmoid cross-entropy
    margin: float = 0.1             # triplet loss only: the search demo's prototxt margin
    negatives: str = "soft"         # triplet loss only: the search demo's negative rule
    freeze_until: str | None = None  # layer up to which the network does not learn (None: all learn)
    init: str | None = None         # weights file to start from (None: the architecture's random init)
    checkpoint_every: int = 5_000
    log_every: int = 20
    seed: int = 0
    amp: bool | None = None         # None: bf16 autocast on CUDA, off on CPU
    channels_last: bool | None = None  # None: on for CUDA, off on CPU
    compile: bool = False
    deterministic: bool = False
    prefetch: int = 3               # batches read ahead by the loader thread
    loader_threads: int = 2         # threads filling each batch (numpy copies release the GIL); 2 cores here
    eval_images: int = 512          # end-of-run loss in eval mode (centre crops) on this many training images

    def effective_lr(self, world_size: int = 1) -> float:
        if self.lr_scaling == "none":
            return self.base_lr
        return self.base_lr * self.batch_size * world_size / PAPER_BATCH

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"--iterations must be >= 1 (got {self.iterations})")
        if self.step_size is not None and self.step_size < 1:
            raise UserError(f"--step-size must be >= 1 (got {self.step_size})")
        if self.total_images < 1 or self.decay_images < 1:
            raise UserError(f"--total-images and --decay-images must be >= 1 "
                            f"(got {self.total_images}, {self.decay_images})")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1 (got {self.batch_size})")
        if not self.base_lr > 0:
            raise UserError(f"--base-lr must be > 0 (got {self.base_lr})")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise UserError("--checkpoint-every and --log-every must be >= 1")
        if self.loader_threads < 1:
            raise UserError(f"--loader-threads must be >= 1 (got {self.loader_threads})")
        if self.lr_scaling not in ("linear", "none"):
            raise UserError(f"--lr-scaling must be 'linear' or 'none' (got {self.lr_scaling!r})")
        from ..networks import backbones
        from .losses import LOSSES, NEGATIVES

        spec = backbones.get(self.arch)  # an unknown name is a UserError listing the registered ones
        if self.dropout is not None:
            if "dropout" not in spec.options:
                raise UserError(f"--dropout: {self.arch} has no dropout layer")
            if not 0.0 <= self.dropout < 1.0:
                raise UserError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.crop is not None and self.crop < spec.min_input:
            raise UserError(f"--crop {self.crop} is smaller than the {spec.min_input} px {self.arch} accepts")
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r}; choose from {list(LOSSES)}")
        if self.negatives not in NEGATIVES:
            raise UserError(f"unknown negative rule {self.negatives!r}; choose from {list(NEGATIVES)}")
        if not self.margin >= 0:
            raise UserError(f"--margin must be >= 0 (got {self.margin})")
        if self.loss == "triplet" and self.batch_size < 2:
            raise UserError("the triplet loss takes its negatives from the batch: --batch-size must be >= 2")
        return self

    def loss_options(self) -> dict[str, Any]:
        """Keyword arguments of ``losses.build_loss`` for this run (the triplet's margin, rule and seed)."""
        if self.loss == "triplet":
            return {"margin": self.margin, "negatives": self.negatives, "seed": self.seed}
        return {}


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # ~640 demo images, 2 CPU cores at ~22 img/s: 480 x 16 = 7,680 images (12 epochs) in ~6 min.
    # Small batches give more updates per second of CPU. On the shape/texture/layout demo corpus
    # (colours random per picture) the loss sits at the mean-distribution plateau for ~200 updates;
    # a rate per update of 0.016 x 16/64 = 0.004 (4x the paper's: the run is ~300x shorter) with one
    # x0.1 decay for the last tenth. Measured on the demo corpus (seed 0), VOC-layout mAP pool5/fc6/fc7
    # against random init 46.7/45.5/44.5: 320 updates 54.1/48.9/45.8, 400 updates 52.2/52.1/46.7,
    # 480 updates 61.1/60.4/52.0 (this preset: >= 5 points at every layer). 0.008 with the decay at
    # 3/4 left trained = random at 320; 0.024 diverged; batch 8 and dropout 0 were worse.
    # In images, like the paper: one process of 16 resolves to exactly 480 iterations, decay at 432.
    "demo": {"total_images": 480 * 16, "decay_images": 432 * 16, "batch_size": 16, "base_lr": 0.016,
             "checkpoint_every": 80, "log_every": 10, "eval_images": 128},
}


# The demo's time budget for every architecture: its training step costs this many CaffeNet steps
# (forward + backward + SGD, batch 8 at the registry's crop, 2 CPU threads, measured on this project's
# 2-core machines), so the demo preset sees 1/cost of the images (decay at 3/4 of the run) and its
# training stage takes about as long as CaffeNet's.
DEMO_STEP_COST = {"caffenet": 1.0, "alexnet": 1.0, "googlenet": 4.0, "resnet50": 7.0, "vgg16": 7.0,
                  "densenet161": 15.0}


def _demo_schedule(arch: str, values: dict[str, Any], given: set[str]) -> None:
    cost = DEMO_STEP_COST.get(arch, 1.0)
    if cost == 1.0:
        return
    batch = values["batch_size"]
    iterations = max(16, round(values["total_images"] / batch / cost))
    values["total_images"] = iterations * batch
    values["decay_images"] = round(iterations * 0.75) * batch
    if "eval_images" not in given:
        values["eval_images"] = max(16, round(values["eval_images"] / cost))


def make_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """The preset's config with ``overrides`` applied (``None`` values leave the preset's).

    ``demo`` with another architecture than CaffeNet shortens its run and its evaluation by
    :data:`DEMO_STEP_COST` (unless ``iterations``, ``total_images`` or ``decay_images`` are given),
    to fit the same minutes."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {"preset": preset, **PRESETS[preset]}
    for key, value in overrides.items():
        if key not in fields:
            raise UserError(f"unknown training setting {key!r}")
        if value is not None:
            values[key] = value
    given = {k for k, v in overrides.items() if v is not None}
    if preset == "demo" and not given & {"iterations", "total_images", "decay_images"}:
        _demo_schedule(values.get("arch", TrainConfig.arch), values, given)
    return TrainConfig(**values).validate()


@dataclass(frozen=True)
class Schedule:
    """The solver schedule resolved for one world size (see the module docstring)."""

    iterations: int
    step_size: int
    global_batch: int
    world_size: int
    batch_size: int
    effective_lr: float
    gamma: float
    total_images: int
    decay_images: int
    iterations_from: str   # "total_images" or "--iterations"
    step_from: str         # "decay_images" or "--step-size"

    @property
    def images_seen(self) -> int:
        return self.iterations * self.global_batch

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "images_seen": self.images_seen}

    def describe(self) -> str:
        procs = f"{self.world_size} process{'es' if self.world_size != 1 else ''}"
        return (f"schedule: {self.iterations:,} iterations (from {self.iterations_from}) of a global batch of "
                f"{self.global_batch} ({self.batch_size} x {procs}) = {self.images_seen:,} images; "
                f"lr {self.effective_lr:g} x{self.gamma:g} every {self.step_size:,} iterations (from {self.step_from}, "
                f"{self.step_size * self.global_batch:,} images)")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def resolve_schedule(cfg: TrainConfig, world_size: int = 1) -> Schedule:
    """Iterations and decay step for ``world_size`` processes of ``cfg.batch_size`` images each.

    ``iterations = ceil(total_images / global_batch)``; ``step_size = round(decay_images /
    global_batch)`` with halves rounded up and at least 1. Explicit ``iterations`` /
    ``step_size`` win and are not rescaled.
    """
    if world_size < 1:
        raise UserError(f"world size must be >= 1 (got {world_size})")
    gb = cfg.batch_size * world_size
    if cfg.iterations is not None:
        iterations, it_from = int(cfg.iterations), "--iterations"
    else:
        iterations, it_from = _ceil_div(cfg.total_images, gb), "total_images"
    if cfg.step_size is not None:
        step, step_from = int(cfg.step_size), "--step-size"
    else:
        step, step_from = max(1, (2 * cfg.decay_images + gb) // (2 * gb)), "decay_images"
    return Schedule(iterations=iterations, step_size=step, global_batch=gb, world_size=world_size,
                    batch_size=cfg.batch_size, effective_lr=cfg.effective_lr(world_size),
                    gamma=cfg.gamma, total_images=cfg.total_images, decay_images=cfg.decay_images,
                    iterations_from=it_from, step_from=step_from)


def resolved(cfg: TrainConfig, world_size: int = 1) -> tuple[TrainConfig, Schedule]:
    """``cfg`` with ``iterations`` and ``step_size`` filled in for ``world_size``, ``crop`` and ``dropout``
    from the architecture when not given, and the schedule."""
    from ..networks import backbones

    sched = resolve_schedule(cfg, world_size)
    spec = backbones.get(cfg.arch)
    crop = spec.crop if cfg.crop is None else cfg.crop
    dropout = spec.options.get("dropout") if cfg.dropout is None else cfg.dropout
    return dataclasses.replace(cfg, iterations=sched.iterations, step_size=sched.step_size, crop=crop,
                               dropout=dropout), sched

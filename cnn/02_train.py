"""Train a CNN to predict each image's text vector (TextTopicNet, stage 3): CaffeNet + sigmoid CE by default.

Reads RUN/packed (cnn/01_pack_images.py) and writes RUN/train/{checkpoint.pt, log.jsonl,
model.safetensors, model.sha256, summary.json, meta.json}. The default preset is the
paper's solver; `--preset demo` is a few-minute CPU configuration for the demo corpus.
Rerunning the same command resumes from checkpoint.pt (even after kill -9).

    python cnn/02_train.py --out runs/demo --preset demo --device auto --seed 0
    torchrun --nproc_per_node 8 cnn/02_train.py --out runs/full   # 8 GPUs, DDP: 20,000 iterations of 8 x 64
    python cnn/02_train.py --out runs/w2v --arch googlenet --loss triplet --init googlenet-imagenet.pth \
        --freeze-until inception4d                               # the search demo's setting

Network and loss: --arch is any backbone of texttopicnet.networks.backbones (CaffeNet, the
paper's, by default; torchvision's alexnet, vgg16, resnet50, densenet161, googlenet); --loss
sigmoid_ce (the paper's), cosine, mse or triplet (--margin, --negatives). The checkpoint and
model.safetensors record the architecture, so the experiments load them without a flag.
Changing any of these on a finished run retrains from scratch.

Many processes: --batch-size is per process and --base-lr is the rate for a global batch
of 64 (the paper's); the rate used is base_lr * batch_size * world_size / 64 (linear
scaling rule) unless --lr-scaling none. The schedule is in images seen, as the paper's
(160,000 x 64 = 10,240,000 images, x0.1 every 3,200,000): iterations = ceil(total images /
global batch) and the decay step = round(decay images / global batch), so 8 processes of
64 run 20,000 iterations, not 160,000. --iterations / --step-size, when given, are
iterations and are not rescaled. The resolved schedule is printed at the start and
recorded in checkpoint.pt and summary.json. Rank 0 alone logs and checkpoints.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, dist, provenance  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402
from texttopicnet.training.config import PRESETS, TrainConfig, make_config, resolved  # noqa: E402
from texttopicnet.training.losses import LOSSES, NEGATIVES  # noqa: E402

STAGE = "train"
# Settings that make a finished run a different network: changing one retrains from scratch.
_NETWORK_KEYS = ("arch", "loss", "margin", "negatives", "freeze_until", "crop", "init")
_D = TrainConfig()


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser(),
                                          cli.arch_parser(default=_D.arch,
                                                          help_extra="the network trained (default: the paper's)")])
    n = p.add_argument_group("loss and starting point")
    n.add_argument("--loss", default=_D.loss, choices=list(LOSSES),
                   help="'sigmoid_ce': the paper's (Caffe's SigmoidCrossEntropyLoss, targets in [0, 1]); 'cosine' and "
                        "'mse': regression onto the target vector; 'triplet': the search demo's ranking loss on "
                        "L2-normalised outputs with in-batch negatives")
    n.add_argument("--margin", type=float, default=_D.margin,
                   help="triplet loss margin (0.1: the search demo's prototxt)")
    n.add_argument("--negatives", default=_D.negatives, choices=list(NEGATIVES),
                   help="triplet negatives from the batch: 'soft' (the search demo's: random among captions farther "
                        "than the batch mean), 'hard' (the farthest) or 'random'")
    n.add_argument("--freeze-until", default=None, metavar="LAYER",
                   help="do not train LAYER and every layer before it (e.g. inception4d for googlenet, as the search "
                        "demo; layer3 for resnet50; conv5 for caffenet); default: every layer learns, as the paper")
    n.add_argument("--init", type=Path, default=None, metavar="WEIGHTS",
                   help="start from this weights file instead of the random initialisation: our .safetensors / "
                        "checkpoint, a torchvision state-dict .pth of --arch (e.g. ImageNet weights you have) or a "
                        ".caffemodel; its head is replaced when its size differs from the labels'")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                   help="'paper': the published solver (160k iterations of 64 = 10.24M images, lr 0.001, x0.1 every "
                        "50k iterations = 3.2M images); "
                        "'demo': a few minutes on 2 CPU cores for the embedded demo corpus")
    g = p.add_argument_group("overrides of the preset (default: the preset's value)")
    g.add_argument("--total-images", type=int,
                   help="images seen in the whole run (paper: 160,000 iterations x 64 = 10,240,000, ~100 epochs of "
                        "100k images); iterations = ceil(this / global batch)")
    g.add_argument("--decay-images", type=int,
                   help="images seen between x0.1 learning-rate decays (paper: 50,000 x 64 = 3,200,000); "
                        "decay step = round(this / global batch)")
    g.add_argument("--iterations", type=int,
                   help="SGD iterations, used as given whatever the number of processes (overrides "
                        "--total-images; paper: 160,000 at a global batch of 64)")
    g.add_argument("--batch-size", type=int, help="images per process per iteration (paper: 64)")
    g.add_argument("--base-lr", type=float, help="learning rate at a global batch of 64 (paper: 0.001; biases x2)")
    g.add_argument("--lr-scaling", choices=("linear", "none"),
                   help="'linear' multiplies --base-lr by global_batch/64 (Goyal et al. 2017); 'none' uses it as is")
    g.add_argument("--step-size", type=int,
                   help="iterations between learning-rate decays, used as given whatever the number of processes "
                        "(overrides --decay-images; paper: 50,000 at a global batch of 64)")
    g.add_argument("--gamma", type=float, help="learning-rate decay factor (paper: 0.1)")
    g.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.9)")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay on weights, none on biases (paper: 5e-4)")
    g.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints (always one at the end)")
    g.add_argument("--log-every", type=int, help="iterations between log.jsonl lines")
    g.add_argument("--eval-images", type=int,
                   help="training images scored at the end in eval mode (centre crops); 0 skips it")
    g.add_argument("--dropout", type=float,
                   help="dropout rate (CaffeNet: fc6/fc7, paper 0.5; default: the architecture's; ResNet and "
                        "DenseNet have none)")
    g.add_argument("--crop", type=int,
                   help="square training crop in pixels (default: the architecture's: CaffeNet 227 as the paper, "
                        "torchvision nets 224); the evaluation uses the same centre crop")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, off for CPU where bf16 is slow without AMX)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on for CUDA, where cuDNN is fastest with it)")
    g.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the network (faster steps on GPU after a compile of a minute or so)")
    g.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels only (bitwise-reproducible on CPU; slower on GPU)")
    g.add_argument("--loader-threads", type=int,
                   help="threads filling each batch from the packed store (default 2: this project's 2-core "
                        "machines; batches do not depend on it)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="train at most this many iterations in this invocation, checkpoint and exit "
                        "(for time-limited job slots); rerun to continue")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard events even if installed")
    return p


_OVERRIDES = ("iterations", "total_images", "decay_images", "batch_size", "base_lr", "lr_scaling", "step_size",
              "gamma", "momentum", "weight_decay", "checkpoint_every", "log_every", "eval_images", "dropout", "amp",
              "channels_last", "compile", "deterministic", "loader_threads", "arch", "loss", "margin", "negatives",
              "freeze_until", "crop")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.init is not None and not args.init.is_file():
        raise UserError(f"--init {args.init}: weights file not found")
    cfg = make_config(args.preset, seed=args.seed, init=str(args.init.absolute()) if args.init else None,
                      **{k: getattr(args, k) for k in _OVERRIDES})
    if cfg.deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # required by deterministic cuBLAS; before CUDA starts
    info = dist.init_distributed(args.device)
    try:
        return _run(args, cfg, info)
    finally:
        dist.cleanup()


def _run(args, cfg, info) -> int:
    from texttopicnet.training.loop import train

    packed_dir, out_dir = args.out / "packed", args.out / "train"
    full, sched = resolved(cfg, info.world_size)
    if info.is_main:
        cli.print_config(STAGE, {**vars(args), "resolved": full.to_dict(), "world_size": info.world_size,
                                 "device_resolved": str(info.device), "effective_lr": sched.effective_lr,
                                 "schedule": sched.to_dict()})
    done = provenance.stage_is_done(out_dir, STAGE, verify_checksums=False)
    fresh = args.force
    if done and not args.force:
        # Runs from before these options existed were trained with their defaults.
        changed = provenance.args_changed(out_dir, args, _NETWORK_KEYS,
                                          defaults={k: getattr(_D, k) for k in _NETWORK_KEYS})
        if not changed:
            if info.is_main:
                cli.log(f"already done: {out_dir} (use --force to retrain)")
            return 0
        fresh = True
        if info.is_main:
            cli.log(f"{out_dir} holds another network ({provenance.format_changes(changed)}): retraining from scratch")
    if info.is_main:
        provenance.invalidate(out_dir)
    dist.barrier()
    result = train(cfg, packed_dir, out_dir, info, fresh=fresh, stop_after=args.stop_after,
                   tensorboard=not args.no_tensorboard)
    if not result["finished"]:
        if info.is_main:
            cli.log(f"stopped at iteration {result['iteration']} of {sched.iterations}; rerun the same command "
                    f"to continue")
        return 0
    if info.is_main:
        cli.log(f"{result['arch']['arch']}, {result['loss']['name']} loss: final {result['final_loss']:.4f} "
                f"(initial {result['initial_loss']:.4f}, mean-target baseline {result['mean_baseline_loss']:.4f}, "
                f"floor {result['min_possible_loss']:.4f})")
        if result.get("eval_note"):
            cli.log(f"note: {result['eval_note']}")
        elif "eval_loss" in result:
            cli.log(f"eval-mode loss on {result['eval_images']} training images {result['eval_loss']:.4f} "
                    f"(baseline on them {result['eval_mean_baseline_loss']:.4f})")
        cli.log(f"weights: {out_dir / 'model.safetensors'} sha256 {result['model_sha256']}")
        outputs = [out_dir / n for n in ("checkpoint.pt", "log.jsonl", "model.safetensors", "model.sha256",
                                         "summary.json")]
        summary = {k: v for k, v in result.items() if k != "finished"}
        provenance.write_meta(out_dir, STAGE, args, inputs=[packed_dir / "labels.npy", packed_dir / "index.txt"],
                              outputs=outputs, extra={"config": full.to_dict(), "schedule": sched.to_dict(),
                                                      "summary": summary})
    dist.barrier()
    return 0


if __name__ == "__main__":
    cli.run_main(main)

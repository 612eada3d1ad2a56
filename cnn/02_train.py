"""Train CaffeNet to predict each image's LDA topic distribution (TextTopicNet, stage 3).

Reads RUN/packed (cnn/01_pack_images.py) and writes RUN/train/{checkpoint.pt, log.jsonl,
model.safetensors, model.sha256, summary.json, meta.json}. The default preset is the
paper's solver; `--preset demo` is a few-minute CPU configuration for the demo corpus.
Rerunning the same command resumes from checkpoint.pt (even after kill -9).

    python cnn/02_train.py --out runs/demo --preset demo --device auto --seed 0
    torchrun --nproc_per_node 8 cnn/02_train.py --out runs/full   # 8 GPUs, DDP: 20,000 iterations of 8 x 64

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
from texttopicnet.training.config import PRESETS, make_config, resolve_schedule  # noqa: E402

STAGE = "train"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser()])
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
    g.add_argument("--dropout", type=float, help="dropout on fc6/fc7 (paper: 0.5; change only for experiments)")
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
              "channels_last", "compile", "deterministic", "loader_threads")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = make_config(args.preset, seed=args.seed, **{k: getattr(args, k) for k in _OVERRIDES})
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
    sched = resolve_schedule(cfg, info.world_size)
    if info.is_main:
        cli.print_config(STAGE, {**vars(args), "resolved": cfg.to_dict(), "world_size": info.world_size,
                                 "device_resolved": str(info.device), "effective_lr": sched.effective_lr,
                                 "schedule": sched.to_dict()})
    done = provenance.stage_is_done(out_dir, STAGE, verify_checksums=False)
    if done and not args.force:
        if info.is_main:
            cli.log(f"already done: {out_dir} (use --force to retrain)")
        return 0
    if info.is_main:
        provenance.invalidate(out_dir)
    dist.barrier()
    result = train(cfg, packed_dir, out_dir, info, fresh=args.force, stop_after=args.stop_after,
                   tensorboard=not args.no_tensorboard)
    if not result["finished"]:
        if info.is_main:
            cli.log(f"stopped at iteration {result['iteration']} of {sched.iterations}; rerun the same command "
                    f"to continue")
        return 0
    if info.is_main:
        cli.log(f"final loss {result['final_loss']:.4f} (initial {result['initial_loss']:.4f}, "
                f"mean-distribution baseline {result['mean_baseline_loss']:.4f}, floor {result['min_possible_loss']:.4f})")
        if "eval_loss" in result:
            cli.log(f"eval-mode loss on {result['eval_images']} training images {result['eval_loss']:.4f} "
                    f"(baseline on them {result['eval_mean_baseline_loss']:.4f})")
        cli.log(f"weights: {out_dir / 'model.safetensors'} sha256 {result['model_sha256']}")
        outputs = [out_dir / n for n in ("checkpoint.pt", "log.jsonl", "model.safetensors", "model.sha256",
                                         "summary.json")]
        summary = {k: v for k, v in result.items() if k != "finished"}
        provenance.write_meta(out_dir, STAGE, args, inputs=[packed_dir / "labels.npy", packed_dir / "index.txt"],
                              outputs=outputs, extra={"config": cfg.to_dict(), "schedule": sched.to_dict(),
                                                      "summary": summary})
    dist.barrier()
    return 0


if __name__ == "__main__":
    cli.run_main(main)

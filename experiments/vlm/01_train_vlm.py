"""Train a CNN-VLM (Kato & Harada 2015) on a network's pre-ReLU feature maps of a folder of images.

Statistics (per-channel mean/std, PCA to ceil(C/2) dims) over the images, then four 2-layer
LSTMs per layer learn to predict the next feature vector along columns and rows. Output:
RUN/vlm/<tag>/{checkpoint.pt, log.jsonl, vlm.pt, summary.json, meta.json}. Rerunning the same
command resumes from checkpoint.pt; a finished run is skipped (--force redoes it).

    python experiments/vlm/01_train_vlm.py --out runs/demo                      # demo preset, RUN/packed
    python experiments/vlm/01_train_vlm.py --out runs/x --preset paper_caffenet \
        --weights bvlc_alexnet.caffemodel --images ILSVRC2012_val/               # the release's AlexNet VLM
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.vlm import stages, train
from texttopicnet.vlm.sources import open_source

STAGE = "train_vlm"
OVERRIDES = {  # the VLMConfig fields a command line may override, with their help
    "layers": f"layers to model (demo: {' '.join(train.PRESETS['demo'].layers)}); 'data' is the input",
    "iterations": "SGD updates (release: range(20000 + 1))",
    "batch_size": "images per update, drawn with replacement (release: 16 AlexNet, 1 VGG)",
    "lr": "learning rate (release: 10 AlexNet, 20 VGG; the loss is a mean)",
    "momentum": "SGD momentum (release: 0.9)",
    "step": "updates between x gamma decays, momentum reset (release: 5,000)",
    "gamma": "learning-rate decay factor (release: 0.1)",
    "optimizer": "'sgd' as the release; 'adam' is our option",
    "pca_samples": "feature vectors sampled for PCA (release: 100,000)",
    "pca_dims": "0: ceil(C/2) as the release; N: keep N components (faster)",
    "stats_images": "images for the statistics (0: all, as the release)",
    "max_images": "train on a seeded random N of the images (0: all)",
    "cache_mb": "memory for caching every image's projected features (0: never)",
    "log_every": "updates per log.jsonl row",
    "checkpoint_every": "updates between checkpoints",
}


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser(),
                                          stages.threads_parser()])
    p.add_argument("--weights", default=None,
                   help="the backbone: a training checkpoint, .safetensors, torchvision .pth (with --arch), "
                        ".caffemodel or 'random' (default RUN/train/model.safetensors, the trained TextTopicNet)")
    p.add_argument("--arch", default=None, help="architecture for 'random' or a bare state dict (caffenet, vgg16 ...)")
    p.add_argument("--tag", default=None, help="name of this VLM (default: 'trained', or 'random' for random weights)")
    p.add_argument("--images", type=Path, default=None,
                   help="training images: a folder (searched recursively), a packed/ folder or an images.npy "
                        "(default RUN/packed; the release used the 50,000 ILSVRC2012 validation images)")
    p.add_argument("--preset", default="demo", choices=sorted(train.PRESETS),
                   help="'demo': CaffeNet conv5 (32 PCA dims) on 200 of the images, 300 updates of 8 (lr 10, "
                        "x0.1 after 200), about a minute on a CPU; 'demo_long': conv1+conv3, Adam lr 1e-3, 4,000 "
                        "updates on every image, ~18 minutes (the README's pasted-region check); 'paper_caffenet': the "
                        "release's AlexNet VLM (data+conv1..5, batch 16, lr 10, 20,001 updates, x0.1 every 5,000); "
                        "'paper_vgg16': its VGG setting (batch 1, lr 20) on VGG-16's last conv of each block")
    stages.add_overrides(p, train.PRESETS["demo"], OVERRIDES, choices={"optimizer": ("sgd", "adam")})
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _config(args) -> train.VLMConfig:
    cfg = train.config_from(args.preset, seed=args.seed, **stages.overrides(args, OVERRIDES))
    if cfg.log_every < 1 or cfg.checkpoint_every < 1 or cfg.step < 0 or cfg.pca_samples < 1:
        raise UserError("--log-every, --checkpoint-every and --pca-samples must be positive, --step >= 0")
    return cfg


def main(argv=None):
    args = stages.start(STAGE, build_parser(), argv)
    from texttopicnet.weights.loading import load_network

    cfg = _config(args)
    cli.log(f"preset {args.preset} with the overrides, resolved: {asdict(cfg)}")
    device = cli.resolve_device(args.device)
    weights = args.weights or str(args.out / "train" / "model.safetensors")
    if weights != "random" and not Path(weights).is_file():
        raise UserError(f"{weights}: no network weights; train one (run_pipeline.py) or pass --weights")
    images = args.images or args.out / "packed"
    net, info = load_network(weights, seed=args.seed, device=device, arch=args.arch)
    tag = args.tag or ("random" if weights == "random" else "trained")
    out_dir = stages.vlm_dir(args.out, tag)
    settings = {**asdict(cfg), "images": str(Path(images).resolve())}
    if stages.already_done(out_dir, STAGE, settings, args.force, weights_sha256=info["sha256"]):
        return 0
    if args.force and out_dir.is_dir():
        shutil.rmtree(out_dir)
    source = open_source(images, progress=not args.no_progress)
    if source.skipped:
        cli.log(f"skipped {sum(source.skipped.values()):,} image file(s): {dict(source.skipped)}")
    cli.log(f"training images: {source.description}")
    summary = train.train_vlm(net, info, info["arch"], source, out_dir, cfg, device=device, log=cli.log,
                              progress=not args.no_progress)
    cli.log(f"VLM loss {summary['initial_loss']:.4f} -> {summary['final_loss']:.4f} "
            f"(on 64 of the images after training: {summary['eval_loss']:.4f}); wrote {out_dir / 'vlm.pt'}")
    outputs = [out_dir / n for n in ("vlm.pt", "summary.json", "log.jsonl", "checkpoint.pt")]
    provenance.write_meta(out_dir, STAGE, args, outputs=outputs,
                          extra={"weights": info, "tag": tag, "settings": settings, "skipped": dict(source.skipped)})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

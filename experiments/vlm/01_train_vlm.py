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


def build_parser():
    d = train.PRESETS["demo"]
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
                   help="'demo': CaffeNet conv1+conv2+conv5, 300 updates of 8 (lr 10, x0.1 after 200), minutes on a "
                        "CPU; 'paper_caffenet': the "
                        "release's AlexNet VLM (data+conv1..5, batch 16, lr 10, 20,001 updates, x0.1 every 5,000); "
                        "'paper_vgg16': its VGG setting (batch 1, lr 20) on VGG-16's last conv of each block")
    g = p.add_argument_group("overrides of the preset (default: the preset's value)")
    g.add_argument("--layers", nargs="+", help=f"layers to model (demo: {' '.join(d.layers)}); 'data' is the input")
    g.add_argument("--iterations", type=int, help="SGD updates (release: range(20000 + 1))")
    g.add_argument("--batch-size", type=int, help="images per update, drawn with replacement (release: 16 AlexNet, 1 VGG)")
    g.add_argument("--lr", type=float, help="learning rate (release: 10 AlexNet, 20 VGG; the loss is a mean)")
    g.add_argument("--momentum", type=float, help="SGD momentum (release: 0.9)")
    g.add_argument("--step", type=int, help="updates between x gamma decays, momentum reset (release: 5,000)")
    g.add_argument("--gamma", type=float, help="learning-rate decay factor (release: 0.1)")
    g.add_argument("--optimizer", choices=("sgd", "adam"), help="'sgd' as the release; 'adam' is our option")
    g.add_argument("--pca-samples", type=int, help="feature vectors sampled for PCA (release: 100,000)")
    g.add_argument("--pca-dims", type=int, help="0: ceil(C/2) as the release; N: keep N components (faster)")
    g.add_argument("--stats-images", type=int, help="images for the statistics (0: all, as the release)")
    g.add_argument("--max-images", type=int, help="train on a seeded random N of the images (0: all)")
    g.add_argument("--cache-mb", type=int, help="memory for caching every image's projected features (0: never)")
    g.add_argument("--log-every", type=int, help="updates per log.jsonl row")
    g.add_argument("--checkpoint-every", type=int, help="updates between checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _config(args) -> train.VLMConfig:
    over = {k: getattr(args, k) for k in ("layers", "iterations", "batch_size", "lr", "momentum", "step", "gamma",
                                          "optimizer", "pca_samples", "pca_dims", "stats_images", "max_images", "cache_mb",
                                          "log_every", "checkpoint_every")}
    cfg = train.config_from(args.preset, seed=args.seed, **over)
    if cfg.log_every < 1 or cfg.checkpoint_every < 1 or cfg.step < 0 or cfg.pca_samples < 1:
        raise UserError("--log-every, --checkpoint-every and --pca-samples must be positive, --step >= 0")
    return cfg


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    stages.apply_threads(args.threads)
    from texttopicnet.weights.loading import load_network

    cfg = _config(args)
    device = cli.resolve_device(args.device)
    weights = args.weights or str(args.out / "train" / "model.safetensors")
    if weights != "random" and not Path(weights).is_file():
        raise UserError(f"{weights}: no network weights; train one (run_pipeline.py) or pass --weights")
    images = args.images or args.out / "packed"
    net, info = load_network(weights, seed=args.seed, device=device, arch=args.arch)
    tag = args.tag or ("random" if weights == "random" else "trained")
    out_dir = stages.vlm_dir(args.out, tag)
    settings = {**asdict(cfg), "images": str(Path(images).resolve())}
    meta = provenance.read_meta(out_dir) or {}
    if (not args.force and provenance.stage_is_done(out_dir, STAGE) and stages.same_settings(meta, settings)
            and meta.get("weights", {}).get("sha256") == info["sha256"]):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    provenance.invalidate(out_dir)
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

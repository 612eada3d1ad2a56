"""Train the CAM head (conv 3x3 + GAP + linear to the K topics) over a frozen backbone, on the topic labels.

The paper's VGG16-CAM was a 1024-filter conv 3x3 layer, global average pooling and a linear
layer trained on ImageNet classes over frozen VGG-16; here the classes are TextTopicNet's
topics: the head learns on the packed training images and their topic distributions
(RUN/packed), with the network's own loss. Backbones with a global-average-pooling head
(ResNet-50, DenseNet-161, GoogLeNet) need no head: their CAMs come from their own classifier.
Output: RUN/instance/cam_head/<tag>/cam_head.safetensors (+ log.jsonl, summary.json, checkpoint.pt).
Resumable: a rerun continues after the last finished epoch.

    python experiments/instance_search/02_train_cam_head.py --out runs/demo \
        --weights runs/demo/train/model.safetensors --tag trained
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.instance import cam_training, stages
from texttopicnet.instance.cams import default_layers, needs_head
from texttopicnet.training.data import PackedData

STAGE = "train_cam_head"


def build_parser():
    d = cam_training.HeadConfig()
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser(),
                                          cli.network_parser(), stages.network_options(), stages.threads_option()])
    p.add_argument("--packed", type=Path, default=None,
                   help="packed training images + topic labels (default RUN/packed, what the network trained on)")
    p.add_argument("--channels", type=int, default=d.channels, help="filters of the CAM conv layer (paper: 1024)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the cached activations")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="views per SGD step")
    p.add_argument("--lr", type=float, default=d.lr, help="SGD learning rate (momentum 0.9, biases x2, Caffe's solver)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 on weights (Caffe's 5e-4)")
    p.add_argument("--loss", default=d.loss,
                   help="training loss (texttopicnet.training.losses): sigmoid_ce is TextTopicNet's own")
    p.add_argument("--eval-fraction", type=float, default=d.eval_fraction,
                   help="share of the images held out to report the loss against the predict-the-mean baseline")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    stages.apply_threads(args.threads)
    if args.epochs < 1 or args.batch_size < 1 or args.channels < 1 or not 0 <= args.eval_fraction < 1:
        raise UserError("--epochs, --batch-size and --channels must be positive, --eval-fraction in [0, 1)")
    device = cli.resolve_device(args.device)
    packed = PackedData(args.packed or args.out / "packed")
    net, info = stages.load_backbone(args, packed.num_outputs, device)
    tag = args.tag or info["tag_hint"]
    out_dir = stages.head_dir(args.out, tag)
    arch = info.get("arch", "caffenet")
    if not needs_head(arch):
        cli.log(f"{arch} has a global-average-pooling head: its CAMs need no trained head (nothing to do)")
        return 0
    if info.get("num_outputs") and args.weights != "random" and info["num_outputs"] != packed.num_outputs:
        cli.log(f"note: the network predicts {info['num_outputs']} outputs; the head learns the packed labels' "
                f"{packed.num_outputs} topics")
    cam_layer = args.cam_layer or default_layers(arch)[1]
    meta = provenance.read_meta(out_dir) or {}
    settings = {k: getattr(args, k) for k in ("channels", "epochs", "batch_size", "lr", "weight_decay", "loss",
                                              "eval_fraction", "seed")}
    if (not args.force and provenance.stage_is_done(out_dir, STAGE) and meta.get("weights", {}).get("sha256")
            == info["sha256"] and meta.get("settings") == settings and meta.get("cam_layer") == cam_layer):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    provenance.invalidate(out_dir)
    if args.force:
        (out_dir / "checkpoint.pt").unlink(missing_ok=True)
    cfg = cam_training.HeadConfig(args.channels, args.epochs, args.batch_size, args.lr, 0.9, args.weight_decay,
                                  args.loss, args.eval_fraction, args.seed)
    summary = cam_training.train_cam_head(net, info, cam_layer, packed, out_dir, cfg, device=device, log=cli.log)
    cli.log(f"CAM head over {arch}/{cam_layer}: loss {summary['initial_loss']:.4f} -> {summary['final_loss']:.4f}; "
            f"held-out {summary['eval_loss'] if summary['eval_loss'] is None else round(summary['eval_loss'], 4)} "
            f"(predict-the-mean {summary['eval_mean_baseline_loss']:.4f})")
    outputs = [out_dir / n for n in ("cam_head.safetensors", "summary.json", "log.jsonl")]
    provenance.write_meta(out_dir, STAGE, args, inputs=[packed.dir / "labels.npy"], outputs=outputs,
                          extra={"weights": info, "tag": tag, "settings": settings, "cam_layer": cam_layer})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

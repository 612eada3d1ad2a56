"""Extract CNN features (any layer) for a dataset split or an image list, cached per weights checksum.

Input is the paper's test-time view (256x256 resize, centre crop: 227 for CaffeNet, 224 for
torchvision nets, in the network's pixel convention). Any registered architecture: files
written by this toolkit record theirs; --arch names it for 'random' and torchvision .pth files. Output:
RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.npy (float32, one row per readable
image) + .txt index (+ .json marker). A valid cache entry is reused, so the SVM grid and
retrieval reruns take seconds; unreadable images are skipped and counted.

Run::

    python experiments/extract_features.py --out runs/demo --weights runs/demo/train/model.safetensors \
        --layer fc7 --dataset voc2007 --split test --data-root runs/demo/data
    python experiments/extract_features.py --weights random --layer prob --dataset list \
        --image-list my_images.txt
    python experiments/extract_features.py --weights resnet50-imagenet.pth --arch resnet50 --layer avgpool \
        --dataset voc2007 --split test --data-root data
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, provenance  # noqa: E402
from texttopicnet.evaluation.features import (  # noqa: E402
    DATASETS,
    cache_dir,
    cache_stem,
    cached_features,
    choose_layers,
    dataset_images,
)
from texttopicnet.networks import backbones  # noqa: E402
from texttopicnet.weights.loading import load_network  # noqa: E402

STAGE = "extract_features"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.data_parser(), cli.seed_parser(),
                                          cli.workers_parser(), cli.device_parser(), cli.arch_parser()])
    p.add_argument("--weights", required=True,
                   help="training checkpoint .pt, exported/converted .safetensors, a torchvision state-dict .pth "
                        "(with --arch), a .caffemodel, or 'random' (random-init baseline seeded by --seed)")
    p.add_argument("--num-outputs", type=int, default=None,
                   help="head size for --weights random (default 40: the paper's 40 topics)")
    p.add_argument("--layer", nargs="+", default=None,
                   help="layer(s) to extract, all from one forward pass: any name the network has (CaffeNet: conv1.."
                        "conv5, pool5, fc6, fc7, fc8, prob; torchvision: graph node names and aliases such as "
                        "avgpool, layer4, pool5, fc7; every network: logits, prob). Default: fc7 for CaffeNet (the "
                        "paper uses pool5/fc6/fc7 for VOC and prob for retrieval), the registry's default layers "
                        "for the others (avgpool for ResNet/DenseNet/GoogLeNet)")
    p.add_argument("--dataset", choices=DATASETS, default="voc2007",
                   help="a dataset under --data-root, or 'list' for --image-list")
    p.add_argument("--split", default="test", help="dataset split (VOC: train/val/trainval/test; Wikipedia: "
                                                   "train/test); a free name for --dataset list")
    p.add_argument("--image-list", type=Path, default=None,
                   help="text file with one image path per line (relative paths are relative to the file)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="images per forward pass (64 = the paper's training batch; lower it on small GPUs)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    dataset = args.dataset if args.dataset != "list" else (args.image_list.stem if args.image_list else "list")
    paths, notes = dataset_images(args.dataset, args.split, args.data_root, args.image_list)
    for n in notes:
        cli.log(f"note: {n}")
    device = cli.resolve_device(args.device)
    net, info = load_network(args.weights, num_outputs=args.num_outputs, seed=args.seed, device=device,
                             arch=args.arch)
    spec = backbones.spec_of(net)
    wanted = choose_layers(net, args.layer, ["fc7"] if spec.name == "caffenet" else None)
    cli.log(f"network: {spec.name} ({info['num_outputs']} outputs), layers {wanted}")
    fs = cached_features(args.out, net, info, dataset, args.split, paths, wanted, batch_size=args.batch_size,
                         device=device, workers=args.workers, force=args.force)
    folder = cache_dir(args.out, info["sha256"])
    outputs = []
    for layer in wanted:
        stem = cache_stem(dataset, args.split, layer)
        outputs += [folder / f"{stem}.npy", folder / f"{stem}.txt", folder / f"{stem}.json"]
        state = "reused from cache" if fs.from_cache.get(layer) else "extracted"
        cli.log(f"{layer}: {fs.features[layer].shape} {state} -> {folder / (stem + '.npy')}")
    if fs.skipped:
        cli.log(f"skipped {len(fs.skipped)} of {len(paths)} unreadable image(s); first: {fs.skipped[0][1]}")
    provenance.write_meta(folder, STAGE, args, outputs=outputs,
                          extra={"weights": info, "arch": spec.name, "layers": wanted, "n_requested": len(paths),
                                 "n_kept": len(fs.paths), "n_skipped": len(fs.skipped), "notes": notes})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

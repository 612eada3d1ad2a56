"""Shared pieces of the ``experiments/instance_search`` stage scripts: options, folders, network loading.

Run folder layout (``--out RUN``)::

    RUN/instance/cam_head/<tag>/    cam_head.safetensors, checkpoint.pt, log.jsonl, summary.json, cache/, meta.json
    RUN/instance/<tag>/<dataset>/   db/ (database store), queries/ (query store), meta.json
    RUN/instance/<tag>/distractors/ db/ (the 100k distractors, shared by every dataset)
    RUN/instance/<tag>/             results.json, results.md, meta.json (04_evaluate.py)
    RUN/instance/summary.md         every tag side by side
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.cli import apply_threads  # noqa: F401  (the stage scripts use it from here)
from ..core.cli import threads_parser as threads_option  # noqa: F401
from ..core.errors import UserError
from ..networks import backbones
from ..weights.loading import load_network
from .cams import CamNetwork, load_cam_head, needs_head
from .extraction import PAPER_LONG, PAPER_SHORT, SIZE_MODES, SizeRule

DEFAULT_DATASETS = ("synth_a", "synth_b")


def instance_dir(out: Path) -> Path:
    return Path(out) / "instance"


def head_dir(out: Path, tag: str) -> Path:
    return instance_dir(out) / "cam_head" / tag


def tag_dir(out: Path, tag: str) -> Path:
    return instance_dir(out) / tag


def network_options() -> argparse.ArgumentParser:
    """Which backbone and layers: shared by 02 (CAM head) and 03 (extraction)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--arch", default=None, choices=backbones.names(),
                   help="architecture for --weights random and for bare torchvision state dicts (files that record "
                        "their architecture need none; default caffenet, the paper's network)")
    p.add_argument("--num-outputs", type=int, default=None,
                   help="topics K of a 'random' network (default: the packed labels' K, or the CAM head's)")
    p.add_argument("--cam-layer", default=None,
                   help="layer the CAMs are computed over (default: CaffeNet/AlexNet conv5, VGG-16 relu5_3 as the "
                        "paper's VGG16-CAM; the backbone's own GAP layer for ResNet/DenseNet/GoogLeNet)")
    return p


def extraction_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--feature-layer", default=None,
                   help="layer whose features are weighted (any name the backbone accepts; default: the paper's "
                        "relu5_1 for VGG-16, conv5 for CaffeNet/AlexNet, the GAP layer for the others)")
    p.add_argument("--size-mode", default="paper", choices=SIZE_MODES,
                   help="'paper': warp to 1024x720 / 720x1024 by orientation (the authors' size_h/size_v); "
                        "'keep-aspect': long side --long-side; 'original': no resizing")
    p.add_argument("--long-side", type=int, default=PAPER_LONG, help="long side of the network input (paper: 1024)")
    p.add_argument("--short-side", type=int, default=PAPER_SHORT, help="short side in 'paper' mode (paper: 720)")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass (one shape per batch)")
    return p


def size_rule(args) -> SizeRule:
    if args.long_side < 32 or args.short_side < 32:
        raise UserError("--long-side and --short-side must be at least 32 pixels")
    return SizeRule(args.size_mode, args.long_side, args.short_side)


def load_backbone(args, num_outputs: int | None, device) -> tuple:
    """(network, info) for ``--weights`` (random: seeded, ``num_outputs`` topics)."""
    k = args.num_outputs or num_outputs
    if args.weights == "random":
        return load_network("random", num_outputs=k, seed=args.seed, device=device, arch=args.arch or "caffenet")
    return load_network(args.weights, device=device, arch=args.arch)


def cam_network(net, info: dict, head_path: Path | None, feature_layer: str | None, cam_layer: str | None
                ) -> tuple[CamNetwork, dict | None]:
    """The CAM network of ``net``: its own GAP head, or the trained head at ``head_path``."""
    arch = info.get("arch", "caffenet")
    record = None
    head = None
    if needs_head(arch):
        if head_path is None:
            raise UserError(f"{arch} needs a trained CAM head: run 02_train_cam_head.py or pass --cam-head")
        head, record = load_cam_head(head_path, info)
        if cam_layer and cam_layer != record["cam_layer"]:
            raise UserError(f"{head_path} was trained over {record['cam_layer']!r}, not {cam_layer!r}")
        cam_layer = record["cam_layer"]
    return CamNetwork(net, head=head, feature_layer=feature_layer, cam_layer=cam_layer), record

"""Reconstruct images from features with the CNN-VLM as a naturalness prior (feature inversion).

An image is optimised, from noise with the input's statistics, so that a layer's activation
(fc8 by default) matches a target, plus the VLM losses of the conv layers weighted as the
release (conv1..conv5: 1, .1, .01, 1e-3, 1e-4; x10 against the target term). Targets: a
one-topic fc8 vector (--topic K: "what topic K looks like" for TextTopicNet) or the features
of an image (--image PATH). Output per target: RUN/vlm_reconstruct/<tag>/<target>/
{frame_<iteration>.png, final.png, history.jsonl}, plus reconstructions.png and meta.json.

    python experiments/vlm/05_reconstruct.py --out runs/demo --topic 0 1 2 3
    python experiments/vlm/05_reconstruct.py --out runs/demo --preset paper --image photo.jpg --target-layer fc7
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import DataError, UserError
from texttopicnet.core.io import sha256_file, write_lines
from texttopicnet.data.images import ImageReadError, load_resized
from texttopicnet.vlm import figures, reconstruct, stages
from texttopicnet.vlm.sources import center_crop

STAGE = "vlm_reconstruct"
OVERRIDES = {  # the InversionConfig fields a command line may override, with their help
    "target_layer": "layer whose activation is matched (release: fc8; also fc7, conv5 ...)",
    "iterations": "optimiser steps (release: 1,000)",
    "optimizer": "'sgd' as the release, 'adam' our option",
    "lr": "learning rate (release: 2^19 for SGD on a mean loss)",
    "lambda_vlm": "weight of the VLM prior against the target term (release: 10)",
    "save_every": "iterations between saved frames",
}


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser(),
                                          stages.vlm_parser(), stages.threads_parser()])
    p.add_argument("--topic", type=int, nargs="+", default=None, help="topics to invert as one-topic fc8 vectors")
    p.add_argument("--image", type=Path, nargs="+", default=None, help="images whose features are the targets")
    p.add_argument("--preset", choices=sorted(reconstruct.PRESETS), default="demo",
                   help="'paper': the release's SGD (lr 2^19, momentum 0.9, 1,000 iterations); 'demo': Adam, lr 4 "
                        "(pixel units), 200 iterations, minutes on a CPU")
    g = stages.add_overrides(p, reconstruct.PRESETS["paper"], OVERRIDES, choices={"optimizer": ("sgd", "adam")})
    g.add_argument("--layer-weight", nargs="+", metavar="LAYER=W",
                   help="per-layer VLM weights (default: conv1..conv5 = 1, .1, .01, 1e-3, 1e-4 as the release)")
    p.add_argument("--topic-eps", type=float, default=0.01,
                   help="a one-topic vector puts 1 - eps on the topic and eps elsewhere (as sigmoid outputs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _config(args) -> reconstruct.InversionConfig:
    over = stages.overrides(args, OVERRIDES)
    weights = {}
    for item in args.layer_weight or []:
        name, sep, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserError(f"--layer-weight {item!r}: expected LAYER=NUMBER") from None
        if not sep:
            raise UserError(f"--layer-weight {item!r}: expected LAYER=NUMBER")
    cfg = replace(reconstruct.PRESETS[args.preset], seed=args.seed, layer_weights=weights, **over)
    if cfg.iterations < 1 or cfg.lr <= 0 or cfg.save_every < 1:
        raise UserError("--iterations, --lr and --save-every must be positive")
    return cfg


def main(argv=None):
    args = stages.start(STAGE, build_parser(), argv)
    from texttopicnet.vlm.naturalness import load_vlm

    if not args.topic and not args.image:
        raise UserError("nothing to reconstruct: give --topic K ... and/or --image PATH ...")
    cfg = _config(args)
    vlm_file = stages.vlm_path(args)
    out_dir = args.out / "vlm_reconstruct" / args.tag
    settings = {**asdict(cfg), "topics": args.topic, "topic_eps": args.topic_eps,
                "images": [str(p.resolve()) for p in args.image or []], "vlm_sha256": sha256_file(vlm_file)}
    if stages.already_done(out_dir, STAGE, settings, args.force):
        return 0
    model = load_vlm(vlm_file, weights=args.weights, device=cli.resolve_device(args.device),
                     extra_layers=[cfg.target_layer])
    targets = [(f"topic_{k}", reconstruct.one_topic_target(model, k, cfg.target_layer, args.topic_eps))
               for k in args.topic or []]
    for path in args.image or []:
        try:
            img = center_crop(load_resized(path, 256), model.input_size)
        except ImageReadError as exc:
            raise DataError(f"{path}: {exc.message}") from None
        targets.append((stages.safe_name(path.name), reconstruct.image_target(model, img, cfg.target_layer)))
    rows, outputs = {}, []
    for name, target in targets:
        cli.log(f"reconstructing {name} from {cfg.target_layer}")
        folder = out_dir / name
        result = reconstruct.invert(model, target, cfg, progress=not args.no_progress,
                                    on_frame=lambda i, img, f=folder: figures.save_png(f / f"frame_{i:05d}.png", img))
        figures.save_png(folder / "final.png", result["image"])
        write_lines(folder / "history.jsonl", [json.dumps(h) for h in result["history"]])
        rows[name] = result["frames"]
        outputs += [folder / "final.png", folder / "history.jsonl"]
        last = result["history"][-1]
        cli.log(f"  {name}: loss {result['history'][0]['loss']:.4g} -> {last['loss']:.4g} "
                f"(target {last['target_loss']:.4g}, VLM {last['vlm_loss']:.4g})")
    fig = figures.reconstructions_figure(rows, out_dir / "reconstructions.png",
                                         title=f"Reconstructions from {cfg.target_layer} "
                                               + (f"with the VLM prior x{cfg.lambda_vlm:g} ({model.arch}, "
                                                  f"{', '.join(model.layers)})" if cfg.lambda_vlm else
                                                  f"without the VLM prior ({model.arch})"))
    provenance.write_meta(out_dir, STAGE, args, inputs=[vlm_file], outputs=[*outputs, fig],
                          extra={"settings": settings, "targets": [n for n, _ in targets]})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

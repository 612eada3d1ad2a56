"""Describe every database image and query: topic-weighted class vectors, scores, sum pooling, maps.

For each dataset (--datasets: synth_a synth_b for the demo; oxford5k paris6k, roxford5k rparis6k
for the real benchmarks, laid out as data/README.md says) the database images go through the
network at the paper's sizes (1024x720 / 720x1024, batched by orientation) and the store keeps,
per image, the class vectors of all K topics (CroW-weighted, L2), the topic scores, the raw
sum pooling and (--keep-maps) the feature maps and CAMs for re-ranking. Queries are processed
as the paper: topics predicted from the crop, features and CAMs cropped to the box on the
feature grid. --distractors DIR adds the Flickr 100k distractors (Oxford105k / Paris106k).
Resumable (finished chunks are kept) and idempotent (a finished store with the same network,
layers and sizes is reused).

    python experiments/instance_search/03_extract_descriptors.py --out runs/demo \
        --weights runs/demo/train/model.safetensors --tag trained --data-root runs/demo/instance_data
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.core.io import sha256_file
from texttopicnet.instance import datasets, stages
from texttopicnet.instance.extraction import Describer, extract_collection
from texttopicnet.instance.protocols import image_index
from texttopicnet.instance.queries import extract_queries

STAGE = "extract_instance_descriptors"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser(),
                                          cli.network_parser(), stages.network_options(), stages.extraction_options(),
                                          stages.threads_option()])
    p.add_argument("--data-root", type=Path, default=Path("runs/demo/instance_data"),
                   help="folder holding the datasets (synth_a/, synth_b/ from 01_make_synthetic.py; Oxford5k/, "
                        "Paris6k/, ROxford5k/, RParis6k/ for the real ones)")
    p.add_argument("--datasets", nargs="+", default=list(stages.DEFAULT_DATASETS),
                   help="dataset names (registry of texttopicnet.instance.datasets) or Oxford-layout folders")
    p.add_argument("--cam-head", type=Path, default=None,
                   help="trained CAM head (default RUN/instance/cam_head/<tag>/cam_head.safetensors)")
    p.add_argument("--keep-maps", action=__import__("argparse").BooleanOptionalAction, default=True,
                   help="store each image's features and CAMs (float16) so re-ranking need not re-run the network "
                        "(about 1.7 MB per image for CaffeNet at 1024x720)")
    p.add_argument("--cam-norm", default="paper", choices=("paper", "positive"),
                   help="'paper': each CAM divided by its maximum then clamped at 0, as the authors' code (a map with "
                        "a negative maximum comes out inverted); 'positive': such maps become empty")
    p.add_argument("--distractors", type=Path, default=None,
                   help="folder of distractor images (the Flickr 100k set) described once into RUN/instance/<tag>/"
                        "distractors")
    return p


def _head_record(path: Path) -> dict | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})["cam_head"])
    except Exception:  # noqa: BLE001 - absent or foreign file: load_cam_head names the problem later
        return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    stages.apply_threads(args.threads)
    device = cli.resolve_device(args.device)
    sizes = stages.size_rule(args)
    tag = args.tag or ("random" if args.weights == "random" else None)
    head_path = args.cam_head or (stages.head_dir(args.out, tag) / "cam_head.safetensors" if tag else None)
    record = _head_record(head_path) if head_path else None
    k = record["head"]["num_outputs"] if record else None
    net, info = stages.load_backbone(args, k, device)
    tag = tag or info["tag_hint"]
    if head_path is None:
        head_path = stages.head_dir(args.out, tag) / "cam_head.safetensors"
    cam_net, record = stages.cam_network(net, info, head_path, args.feature_layer, args.cam_layer)
    describer = Describer(cam_net, sizes, args.batch_size, device, args.cam_norm)
    key = {"backbone_sha256": info["sha256"], "cam_head_sha256": sha256_file(head_path) if record else None,
           "feature_layer": cam_net.feature_layer, "cam_layer": cam_net.cam_layer,
           "sizes": [sizes.mode, sizes.long_side, sizes.short_side], "cam_norm": args.cam_norm}
    cli.log(f"{info.get('arch', 'caffenet')}: features {cam_net.feature_layer}, CAMs over {cam_net.cam_layer} "
            f"({cam_net.num_outputs} topics), input {sizes}")
    loaded = [(name, *datasets.load(name, args.data_root)) for name in args.datasets]
    for name, ds, _ in loaded:
        out_dir = stages.tag_dir(args.out, tag) / name
        meta = provenance.read_meta(out_dir) or {}
        if not args.force and provenance.stage_is_done(out_dir, STAGE) and meta.get("key") == key \
                and meta.get("keep_maps") == args.keep_maps:
            cli.log(f"already done: {out_dir}")
            continue
        provenance.invalidate(out_dir)
        if ds.counts:
            cli.log(f"{name}: " + ", ".join(f"{c} {v}" for c, v in sorted(ds.counts.items())))
        paths = [ds.image_paths[i] for i in ds.image_ids]
        db = extract_collection(describer, paths, out_dir / "db", key, args.keep_maps, desc=f"{name} database",
                                log=cli.log)
        qs = extract_queries(describer, ds.queries, out_dir / "queries", key, log=cli.log)
        cli.log(f"{name}: {db['n']} database images ({len(db['failed'])} unreadable), {qs['n']} queries -> {out_dir}")
        provenance.write_meta(out_dir, STAGE, args, outputs=[out_dir / "db" / "store.json",
                                                             out_dir / "queries" / "store.json"],
                              extra={"weights": info, "tag": tag, "key": key, "keep_maps": args.keep_maps,
                                     "dataset_counts": dict(ds.counts), "cam_head": record})
    if args.distractors is not None:
        from collections import Counter

        counts: Counter = Counter()
        index = image_index(args.distractors, counts)
        if not index:
            raise UserError(f"{args.distractors}: no image found")
        out_dir = stages.tag_dir(args.out, tag) / "distractors"
        db = extract_collection(describer, [index[s] for s in sorted(index)], out_dir / "db", key, args.keep_maps,
                                desc="distractors", log=cli.log)
        cli.log(f"distractors: {db['n']} images ({dict(counts) or 'none refused'}) -> {out_dir}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

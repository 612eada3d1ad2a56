"""Build a search index: embed every image of a collection into a trained network's text space.

The images come from a manifest (any corpus reader writes one), a folder of images, or the
Wikipedia dataset layout (``--images KIND:PATH``); the network is any weights file
``load_network`` reads (``--weights``), trained on the text space ``--space`` (a saved text
space, or an lda/02 folder). Rows are written float32 (or float16 with ``--dtype``), in
batches, with a progress bar; an interrupted build resumes where it stopped. Layout of the
index folder: ``texttopicnet/search/index.py``.

Run::

    python search/01_build_index.py --out runs/demo            # the demo run: its network, LDA and images
    python search/01_build_index.py --weights runs/mine/train/model.safetensors --space runs/mine/lda \
        --images manifest:data/MIRFLICKR25K/manifest.jsonl --index runs/mine/search_mirflickr
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, provenance  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402

STAGE = "search_index"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser(),
                                          cli.device_parser()])
    p.add_argument("--weights", default=None,
                   help="the network (default OUT/train/model.safetensors: the pipeline's trained CaffeNet); "
                        "'random' for the random-init baseline")
    p.add_argument("--arch", default=None, help="architecture, for 'random' or a bare state dict (default: recorded)")
    p.add_argument("--space", type=Path, default=None,
                   help="the text space the network predicts (default OUT/lda: the pipeline's LDA model)")
    p.add_argument("--images", default=None,
                   help="KIND:PATH with KIND manifest, folder or wikipedia (default folder:OUT/data, the demo corpus)")
    p.add_argument("--categories-from-folders", action="store_true",
                   help="folder source: the first folder level is each image's category (for the evaluation)")
    p.add_argument("--index", type=Path, default=None, help="index folder to write (default OUT/search)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="stored row type; float16 halves the file, search runs in float32 either way")
    p.add_argument("--target", default=None,
                   help="training-target transform the network learnt (default: the space's: 'distribution' for "
                        "LDA, 'minshift_l2' for vector spaces, as text/spaces/targets.py)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--part-images", type=int, default=1024,
                   help="images per saved resume part (an interruption loses at most this much work)")
    return p


def resolve(args):
    out = Path(args.out)
    weights = args.weights or str(out / "train" / "model.safetensors")
    space = args.space or out / "lda"
    images = args.images or f"folder:{out / 'data'}"
    index = args.index or out / "search"
    return weights, space, images, index


def main(argv=None):
    args = build_parser().parse_args(argv)
    weights, space_path, images, index_dir = resolve(args)
    cli.print_config(STAGE, {**vars(args), "weights": weights, "space": space_path, "images": images,
                             "index": index_dir})
    if args.batch_size < 1 or args.part_images < 1:
        raise UserError("--batch-size and --part-images must be >= 1")
    from texttopicnet.search.embedding import ImageEmbedder
    from texttopicnet.search.index import build_index, space_checksum
    from texttopicnet.search.sources import open_source
    from texttopicnet.text.spaces import load_text_space
    from texttopicnet.text.spaces.targets import allowed_targets, default_target
    from texttopicnet.weights.loading import load_network

    space = load_text_space(space_path)
    target = args.target or default_target(space)
    if target not in allowed_targets(space.kind):
        raise UserError(f"--target {target} does not fit a {space.kind} space; choose {allowed_targets(space.kind)}")
    # the cheap checks first: a wrong source fails before the network is loaded
    collection = open_source(images, **({"categories_from_folders": True} if args.categories_from_folders else {}))
    device = cli.resolve_device(args.device)
    net, info = load_network(weights, num_outputs=space.dim if weights == "random" else None, seed=args.seed,
                             device=device, arch=args.arch)
    space_rec = {"path": str(space_path), "name": space.name, "kind": space.kind, "similarity": space.similarity,
                 "dim": space.dim, "sha256": space_checksum(space_path), "target": target}
    meta = provenance.read_meta(index_dir) or {}
    same = (meta.get("network", {}).get("sha256") == info["sha256"] and meta.get("space", {}) == space_rec
            and meta.get("args", {}).get("images") == images and meta.get("args", {}).get("dtype") == args.dtype)
    if not args.force and same and provenance.stage_is_done(index_dir, STAGE):
        cli.log(f"already done: {index_dir} (use --force to redo)")
        return 0
    provenance.invalidate(index_dir)
    cli.log(f"indexing {len(collection.items)} images of {collection.root} with {info['arch']} "
            f"({info['sha256'][:12]}) in the {space.name} space ({space.dim}-d, {space.similarity})")
    embedder = ImageEmbedder(net, space.kind, device=device)
    summary = build_index(index_dir, collection, embedder, network=info, space=space_rec, dtype=args.dtype,
                          batch_size=args.batch_size, workers=args.workers, part_images=args.part_images)
    if summary["skipped"]:
        cli.log(f"skipped {sum(summary['skipped'].values())} unreadable image(s): {summary['skipped']}; "
                f"first: {summary['skipped_examples'][0]}")
    outputs = [index_dir / f for f in ("embeddings.npy", "ids.txt", "paths.txt", "labels.jsonl", "index.json")]
    provenance.write_meta(index_dir, STAGE, {**vars(args), "images": images},
                          inputs=[weights] if weights != "random" else [], outputs=outputs,
                          extra={"network": info, "space": space_rec, "images": summary["images"],
                                 "skipped": summary["skipped"]})
    cli.log(f"wrote {index_dir}: {summary['images']} images; serve it with: "
            f"python search/02_serve.py --index {index_dir}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

"""Unnaturalness and saliency maps of a trained CNN-VLM for a folder of images (PNG overlays + .npy).

For each image: the layer's unnaturalness map (sum over the four directions of the channel-mean
ramp-weighted prediction error) and the release's saliency map (square root, upsample by the
layer's stride, centred zero padding, Gaussian blur sigma 0.03 x size, 0..1). Output:
RUN/vlm_maps/<tag>/{raw/<name>.npy (float32 unnaturalness), maps/<name>.npy (float32 saliency at
the image's size), overlays/<name>.png, index.txt, maps.png (a figure of the first images),
meta.json}. Interrupted runs continue with the images not yet written.

    python experiments/vlm/02_maps.py --out runs/demo --images runs/demo/data/VOC2007
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.core.io import read_json, save_npy, sha256_file, write_json, write_lines
from texttopicnet.data.images import ImageReadError
from texttopicnet.vlm import figures, stages
from texttopicnet.vlm.sources import fit_size, open_source

STAGE = "vlm_maps"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.device_parser(),
                                          stages.vlm_parser(), stages.threads_parser()])
    p.add_argument("--images", type=Path, default=None,
                   help="a folder of images (recursive), a packed/ folder or an images.npy (default: the demo "
                        "corpus' VOC2007 images in RUN/data, else RUN/packed)")
    p.add_argument("--layer", default=None,
                   help="VLM layer whose map is used (default: the deepest, as the release's conv5_4), or 'all': "
                        "the mean of every layer's saliency map")
    p.add_argument("--size", choices=("full", "crop"), default="full",
                   help="'full': each image at its own size, as the release computes saliency; 'crop': the "
                        "training input (256x256 warp, centre crop to the network's input)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="full size only: images whose longer side exceeds this are scaled down first (0: never; "
                        "MIT1003's largest side is 1024)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("--figure", type=int, default=6, help="images in the maps.png figure (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None):
    args = stages.start(STAGE, build_parser(), argv)
    from tqdm import tqdm

    from texttopicnet.vlm.naturalness import load_vlm

    if args.max_side < 0 or args.limit < 0:
        raise UserError("--max-side and --limit must be >= 0")
    images = args.images or stages.heldout_images(args.out) or args.out / "packed"
    out_dir = args.out / "vlm_maps" / args.tag
    vlm_file = stages.vlm_path(args)
    settings = {"images": str(Path(images).resolve()), "layer": args.layer, "size": args.size,
                "max_side": args.max_side, "limit": args.limit, "vlm_sha256": sha256_file(vlm_file)}
    if stages.already_done(out_dir, STAGE, settings, args.force):
        return 0
    # Maps already written are kept for a resumed run, but only when they were made the same way.
    stamp = out_dir / "settings.json"
    if args.force or (stamp.is_file() and read_json(stamp) != json.loads(json.dumps(settings))):
        shutil.rmtree(out_dir, ignore_errors=True)
    write_json(stamp, settings)
    model = load_vlm(vlm_file, weights=args.weights, device=cli.resolve_device(args.device))
    layer = args.layer or model.layers[-1]
    source = open_source(images, progress=not args.no_progress)
    n = len(source) if not args.limit else min(args.limit, len(source))
    names = stages.unique_names(source.names[:n])
    skipped = Counter(source.skipped)
    done, fig_imgs, fig_maps = [], [], []
    for i in tqdm(range(n), desc="maps", unit="img", disable=args.no_progress):
        name = names[i]
        files = [out_dir / "raw" / f"{name}.npy", out_dir / "maps" / f"{name}.npy", out_dir / "overlays" / f"{name}.png"]
        want_fig = len(fig_imgs) < args.figure
        if all(f.is_file() for f in files) and not want_fig:
            done.append(name)
            continue
        try:
            img = source.crop(i, model.input_size) if args.size == "crop" else source.full(i)
        except ImageReadError as exc:
            skipped[exc.reason] += 1
            continue
        if args.size == "full":
            img = fit_size(img, model.input_size, args.max_side)
        raw, sal = model.saliency(img[None], layer)
        save_npy(files[0], raw[0].astype(np.float32))
        save_npy(files[1], sal[0].astype(np.float32))
        figures.save_png(files[2], figures.overlay(img, sal[0]))
        done.append(name)
        if want_fig:
            fig_imgs.append(img)
            fig_maps.append(sal[0])
    if not done:
        raise UserError(f"no map written: every image was skipped ({dict(skipped)})")
    write_lines(out_dir / "index.txt", done)
    outputs = [out_dir / "index.txt"]
    if fig_imgs:
        outputs.append(figures.maps_figure(fig_imgs, fig_maps, out_dir / "maps.png", titles=done[:len(fig_imgs)],
                                           title=f"CNN-VLM saliency ({model.arch} {layer})"))
    if skipped:
        cli.log(f"skipped {sum(skipped.values()):,} image(s): {dict(skipped)}")
    cli.log(f"wrote {len(done):,} maps of {model.arch}/{layer} to {out_dir}")
    provenance.write_meta(out_dir, STAGE, args, inputs=[vlm_file], outputs=outputs,
                          extra={"settings": settings, "layer": layer, "count": len(done), "skipped": dict(skipped)})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

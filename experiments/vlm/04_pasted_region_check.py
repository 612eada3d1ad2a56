"""Check that the CNN-VLM finds unnatural regions: a pasted region must score above the rest.

Every test image (centre crop at the network's input size) gets a square region replaced by a
patch of another image, by its own content turned upside down, or by noise with the images'
colour statistics; the AUC of the saliency map for the pasted pixels against the rest is
averaged over the images, for the trained VLM, a random-init VLM (same projections, fresh
LSTMs: what the training learned) and a centre-bias map. Output: RUN/vlm_paste/<tag>/
{results.json, results.md, examples.png, meta.json}.

    python experiments/vlm/04_pasted_region_check.py --out runs/demo --n 200
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.core.io import sha256_file, write_json, write_text
from texttopicnet.data.images import ImageReadError
from texttopicnet.vlm import figures, paste, stages
from texttopicnet.vlm.sources import open_source

STAGE = "vlm_paste"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.device_parser(),
                                          stages.vlm_parser(), stages.threads_parser()])
    p.add_argument("--images", type=Path, default=None,
                   help="test images (default: the demo corpus' VOC2007 images in RUN/data, which the VLM did not "
                        "train on; else RUN/packed)")
    p.add_argument("--n", type=int, default=200, help="pasted images per kind")
    p.add_argument("--kinds", nargs="+", default=["patch", "rotate", "noise"], choices=paste.KINDS,
                   help="how the region is replaced")
    p.add_argument("--frac", type=float, default=0.3, help="side of the square region, as a fraction of the image's")
    p.add_argument("--layer", default="all",
                   help="VLM layer whose map is scored, or 'all': the mean of every layer's saliency map (default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def render(result: dict, tag: str) -> str:
    scorers = list(result["kinds"]["all"])
    rows = []
    for kind, row in result["kinds"].items():
        rows.append([kind] + [f"{row[s]['auc']:.3f} ± {row[s]['sem']:.3f}" for s in scorers] + [row[scorers[0]]["n"]])
    return (f"# Pasted-region check ({tag}, layer {result['layer']})\n\n"
            "AUC of the saliency map for the pasted pixels against the rest of the image (0.5: chance), mean ± "
            "standard error over the images.\n\n" + stages.markdown_table(["kind", *scorers, "images"], rows))


def main(argv=None):
    args = stages.start(STAGE, build_parser(), argv)
    from texttopicnet.vlm.naturalness import load_vlm

    if args.n < 1 or not 0 < args.frac < 1:
        raise UserError("--n must be positive and --frac in (0, 1)")
    images = args.images or stages.heldout_images(args.out) or args.out / "packed"
    vlm_file = stages.vlm_path(args)
    out_dir = args.out / "vlm_paste" / args.tag
    settings = {"images": str(Path(images).resolve()), "n": args.n, "kinds": args.kinds, "frac": args.frac,
                "layer": args.layer, "seed": args.seed, "vlm_sha256": sha256_file(vlm_file)}
    if stages.already_done(out_dir, STAGE, settings, args.force):
        return 0
    model = load_vlm(vlm_file, weights=args.weights, device=cli.resolve_device(args.device))
    layer = args.layer or model.layers[-1]
    source = open_source(images, progress=not args.no_progress)
    cli.log(f"test images: {source.description}")
    crops, skipped = [], dict(source.skipped)
    for i in range(min(len(source), args.n)):
        try:
            crops.append(source.crop(i, model.input_size))
        except ImageReadError as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
    if len(crops) < 2:
        raise UserError(f"{images}: need at least 2 readable test images, found {len(crops)}")
    cases = paste.make_cases(np.stack(crops), args.n, args.kinds, args.frac, args.seed)
    models = {args.tag: model, "random_init": paste.random_init_like(model, seed=args.seed + 1)}
    result = paste.evaluate(models, cases, layer, progress=not args.no_progress)
    result.update(tag=args.tag, images=str(images), test_images=len(crops), frac=args.frac, skipped=skipped)
    write_json(out_dir / "results.json", result)
    write_text(out_dir / "results.md", render(result, args.tag))
    cli.log(render(result, args.tag))
    show = [j for k in args.kinds for j in [j for j, c in enumerate(cases) if c.kind == k][:2]]
    sal = paste.saliency_maps(model, np.stack([cases[j].image for j in show]), layer)
    fig = figures.maps_figure([cases[j].image for j in show], sal, out_dir / "examples.png",
                              titles=[cases[j].kind for j in show], masks=[cases[j].mask for j in show],
                              title=f"Pasted regions (outlined) and CNN-VLM saliency ({model.arch} {layer})")
    outputs = [out_dir / "results.json", out_dir / "results.md", fig]
    provenance.write_meta(out_dir, STAGE, args, inputs=[vlm_file], outputs=outputs,
                          extra={"settings": settings, "layer": layer})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

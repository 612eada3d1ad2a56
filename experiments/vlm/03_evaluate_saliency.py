"""Evaluate CNN-VLM saliency maps on MIT1003 or Toronto eye fixations (MIT benchmark metrics).

Each image's saliency map (the release's post-processing of the VLM layer's unnaturalness
map, computed at the image's size as the release does) is scored with AUC-Judd, shuffled
AUC (against the fixations of 10 other random images), NSS, CC, KL and SIM, beside a
centre-bias baseline. Output: RUN/vlm_saliency/<dataset>/<tag>/{results.json, results.md,
per_image.jsonl, meta.json}. Get the data with ``python data/download.py mit1003`` (or toronto).

    python experiments/vlm/03_evaluate_saliency.py --out runs/demo --dataset toronto --data-root data
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.core.io import sha256_file, write_json, write_lines, write_text
from texttopicnet.vlm import datasets, evaluate, stages
from texttopicnet.vlm.sources import fit_size

STAGE = "vlm_saliency"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.data_parser(), cli.seed_parser(), cli.device_parser(),
                                          stages.vlm_parser(), stages.threads_parser()])
    p.add_argument("--dataset", choices=sorted(datasets.READERS), required=True, help="which fixation dataset")
    p.add_argument("--dataset-dir", type=Path, default=None,
                   help="the dataset folder (default <data-root>/MIT1003 or <data-root>/Toronto)")
    p.add_argument("--layer", default=None,
                   help="VLM layer whose map is used (default: the deepest, as the release's conv5_4), or 'all': "
                        "the mean of every layer's saliency map")
    p.add_argument("--others", type=int, default=10,
                   help="other images whose fixations are the negatives of shuffled AUC (Borji et al.: 10)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="images whose longer side exceeds this are scaled down first (0: never)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def render(result: dict, tag: str) -> str:
    rows = [[name] + [result["summary"][name].get(m, float("nan")) for m in evaluate.METRICS]
            for name in ("vlm", "center_bias")]
    rows[0][0] = f"CNN-VLM ({tag}, {result['layer']})"
    text = (f"# Saliency on {result['dataset']} ({result['images']} images)\n\n"
            + stages.markdown_table(["map", *evaluate.METRICS], rows)
            + "\nAUC-Judd, NSS against the binary fixations; CC, KL (lower is better), SIM against the continuous "
              f"fixation map; shuffled AUC against the fixations of {result['n_others']} other images.\n")
    if result["skipped"]:
        text += f"\nSkipped: {result['skipped']}\n"
    return text


def main(argv=None):
    args = stages.start(STAGE, build_parser(), argv)
    from texttopicnet.vlm.naturalness import load_vlm

    if args.others < 1 or args.limit < 0 or args.max_side < 0:
        raise UserError("--others must be >= 1, --limit and --max-side >= 0")
    folder = args.dataset_dir or (args.data_root / {"mit1003": "MIT1003", "toronto": "Toronto"}[args.dataset])
    vlm_file = stages.vlm_path(args)
    out_dir = args.out / "vlm_saliency" / args.dataset / args.tag
    settings = {"dataset_dir": str(Path(folder).resolve()), "layer": args.layer, "others": args.others,
                "max_side": args.max_side, "limit": args.limit, "seed": args.seed, "vlm_sha256": sha256_file(vlm_file)}
    if stages.already_done(out_dir, STAGE, settings, args.force):
        return 0
    ds = datasets.read_dataset(args.dataset, folder)
    cli.log(f"{args.dataset}: {len(ds.items):,} images at {ds.root}")
    model = load_vlm(vlm_file, weights=args.weights, device=cli.resolve_device(args.device))
    layer = args.layer or model.layers[-1]

    def prepare(img):
        return fit_size(img, model.input_size, args.max_side)

    result = evaluate.evaluate_dataset(model, ds, layer, args.limit, args.others, args.seed,
                                       progress=not args.no_progress, prepare=prepare)
    rows = result.pop("rows")
    write_lines(out_dir / "per_image.jsonl", [json.dumps(r) for r in rows])
    write_json(out_dir / "results.json", {**result, "tag": args.tag})
    write_text(out_dir / "results.md", render(result, args.tag))
    cli.log(render(result, args.tag))
    outputs = [out_dir / n for n in ("results.json", "results.md", "per_image.jsonl")]
    provenance.write_meta(out_dir, STAGE, args, inputs=[vlm_file], outputs=outputs,
                          extra={"settings": settings, "layer": layer, "skipped": result["skipped"]})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

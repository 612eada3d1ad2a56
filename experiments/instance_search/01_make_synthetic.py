"""Generate the synthetic instance-search benchmark (Oxford/Paris layout) so the whole experiment runs offline.

Two sets, ``synth_a`` (Oxford-like: flat jpg/, "oxc1_" query ids) and ``synth_b`` (Paris-like:
jpg/<landmark>/), each with landmarks seen from several viewpoints among clutter, queries with
boxes, good/ok/junk lists from the exact visible share of the landmark, and a revisited-style
gnd_<set>.pkl. Deterministic by --seed; --scale multiplies the views and distractors.

    python experiments/instance_search/01_make_synthetic.py --data-root runs/demo/instance_data
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from texttopicnet.core import cli, io, provenance
from texttopicnet.core.errors import UserError
from texttopicnet.instance import synthetic

STAGE = "make_synthetic_instance"


def build_parser():
    d = synthetic.SynthConfig()
    p = cli.make_parser(__doc__, parents=[cli.seed_parser()])
    p.add_argument("--data-root", type=Path, default=Path("runs/demo/instance_data"),
                   help="folder that receives synth_a/ and synth_b/ (the data root of 03_extract_descriptors.py)")
    p.add_argument("--sets", nargs="+", default=list(synthetic.SETS), choices=list(synthetic.SETS),
                   help="which sets to write (two, so PCA for one can be fitted on the other as Paris for Oxford)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the views per landmark and the distractors")
    p.add_argument("--landmarks", type=int, default=d.landmarks, help="landmarks per set (Oxford/Paris: 11)")
    p.add_argument("--views", type=int, default=d.views, help="images per landmark at scale 1, queries included")
    p.add_argument("--queries", type=int, default=d.queries, help="queries per landmark (Oxford/Paris: 5)")
    p.add_argument("--distractors", type=int, default=d.distractors, help="images without a landmark at scale 1")
    p.add_argument("--width", type=int, default=d.width, help="landscape image width (portrait images are turned)")
    p.add_argument("--height", type=int, default=d.height, help="landscape image height")
    p.add_argument("--force", action="store_true", help="regenerate even if the set is already there")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    if args.scale <= 0 or min(args.landmarks, args.views, args.queries, args.width, args.height) < 1:
        raise UserError("--scale, --landmarks, --views, --queries, --width and --height must be positive")
    if args.queries > args.views:
        raise UserError("--queries cannot exceed --views (queries are views of their landmark)")
    cfg = synthetic.SynthConfig(args.landmarks, args.views, args.queries, args.distractors, args.width, args.height)
    settings = {k: getattr(args, k) for k in ("seed", "scale", "landmarks", "views", "queries", "distractors",
                                              "width", "height")}
    for name in args.sets:
        target = args.data_root / name
        meta = provenance.read_meta(target) or {}
        if not args.force and provenance.stage_is_done(target, STAGE) and meta.get("settings") == settings:
            cli.log(f"already done: {target} (use --force to regenerate)")
            continue
        opts = synthetic.SETS[name]
        counts = synthetic.generate_set(target, name, seed=args.seed + opts["offset"], scale=args.scale, cfg=cfg,
                                        oxford_prefix=opts["oxford_prefix"], subfolders=opts["subfolders"])
        io.write_json(target / "counts.json", counts)
        outputs = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix in (".txt", ".pkl", ".json")
                         and p.name != provenance.META_NAME)
        provenance.write_meta(target, STAGE, args, outputs=outputs, extra={"settings": settings, "counts": counts})
        cli.log(f"{target}: {counts['images']} images, {counts['queries']} queries, landmarks "
                f"{', '.join(counts['landmarks'])}; good {counts['good']}, ok {counts['ok']}, junk {counts['junk']}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

"""PASCAL VOC2007 classification with linear SVMs on CNN features (the paper's protocol).

Features (pool5/fc6/fc7, test-time centre crop, cached) -> StandardScaler -> one-vs-rest
LinearSVC; C per class chosen on val (trained on train) from {0.5^13..0.5^18}, retrained on
train+val, scored on test. Reports the official VOC2007 11-point AP (0 labels ignored) and
the plain AP the original release printed, per class and mean, with the C chosen per class.
Class names come from ImageSets/Main, so the demo corpus works the same.

Output: RUN/voc_svm/<tag>/results_<layer>.json + results_<layer>.md (+ RUN/voc_svm/summary.md
comparing every tag present, e.g. trained vs random).

Run::

    python experiments/voc2007_classification.py --out runs/demo --weights runs/demo/train/model.safetensors \
        --tag trained --layers pool5 fc6 fc7 --data-root runs/demo/data
    python experiments/voc2007_classification.py --out runs/demo --weights random --tag random \
        --data-root runs/demo/data
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError, UserError  # noqa: E402
from texttopicnet.data.readers.voc import find_voc_root, load_voc_split  # noqa: E402
from texttopicnet.evaluation.features import cached_features  # noqa: E402
from texttopicnet.evaluation.summaries import read_results, write_summary_table  # noqa: E402
from texttopicnet.evaluation.svm import DEFAULT_C_GRID, run_protocol  # noqa: E402
from texttopicnet.networks.caffenet import FEATURE_LAYERS  # noqa: E402
from texttopicnet.weights.loading import load_network  # noqa: E402

STAGE = "voc2007_classification"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.data_parser(), cli.seed_parser(),
                                          cli.workers_parser(), cli.device_parser(), cli.network_parser()])
    p.add_argument("--layers", nargs="+", default=["pool5", "fc6", "fc7"], choices=FEATURE_LAYERS,
                   help="feature layers; the paper reports pool5, fc6 and fc7")
    p.add_argument("--c-grid", type=float, nargs="+", default=list(DEFAULT_C_GRID),
                   help="SVM C values tried per class on val: the original release's 0.5^13 .. 0.5^18")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass for feature extraction")
    return p


def _labels_for(split, kept, name):
    if not kept:
        raise DataError(f"VOC2007 {name}: none of the {len(split.ids)} images could be read")
    return split.labels[np.asarray(kept)].astype(np.int8)


def _short(sha: str) -> str:
    return sha if sha.startswith("random-") else f"sha256 {sha[:12]}"


def results_markdown(res: dict) -> str:
    lines = [f"# VOC2007 classification: `{res['tag']}`, {res['layer']} + linear SVM", "",
             f"Weights `{_short(res['weights_sha256'])}`; train {res['n_train']}, val {res['n_val']}, "
             f"test {res['n_test']} images. Official AP = VOC2007 11-point interpolated (difficult-only "
             "images ignored); plain AP = non-interpolated (what the original script printed).", "",
             "| class | AP (VOC07) | plain AP | C |", "|---|---:|---:|---:|"]
    for c in res["classes"]:
        lines.append(f"| {c} | {100 * res['ap'][c]:.1f} | {100 * res['plain_ap'][c]:.1f} | {res['chosen_C'][c]:.3g} |")
    lines.append(f"| **mean** | **{100 * res['map']:.1f}** | **{100 * res['plain_map']:.1f}** | |")
    for key, what in (("classes_without_test_positives", "no positive test image (left out of the mean)"),
                      ("untrainable_classes", "only one label in train+val (scores constant)")):
        if res.get(key):
            lines += ["", f"Classes with {what}: {', '.join(res[key])}."]
    if res.get("n_skipped_images"):
        lines += ["", f"{res['n_skipped_images']} unreadable image(s) were skipped."]
    return "\n".join(lines) + "\n"


def write_summary(svm_dir: Path) -> Path:
    """RUN/voc_svm/summary.md: mAP of every tag x layer found, side by side (trained vs random)."""
    table: dict[str, dict[str, float]] = {}
    for r in read_results(svm_dir, "*/results_*.json", ("tag", "layer", "map")):
        table.setdefault(r["tag"], {})[r["layer"]] = r["map"]
    layers = sorted({l for row in table.values() for l in row}, key=FEATURE_LAYERS.index)
    return write_summary_table(svm_dir / "summary.md", "VOC2007 SVM classification: mAP (%, official 11-point AP)",
                               ["network", *layers],
                               [[tag, *(f"{100 * row[l]:.1f}" if l in row else "-" for l in layers)]
                                for tag, row in sorted(table.items())])


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    if any(c <= 0 for c in args.c_grid):
        raise UserError("--c-grid values must be positive")
    root = find_voc_root(args.data_root if args.data_root is not None else "data")
    device = cli.resolve_device(args.device)
    net, info = load_network(args.weights, seed=args.seed, device=device)
    tag = args.tag or info["tag_hint"]
    stage_dir = Path(args.out) / "voc_svm" / tag
    result_files = [stage_dir / f"results_{layer}.json" for layer in args.layers]
    meta = provenance.read_meta(stage_dir) or {}
    if (not args.force and provenance.stage_is_done(stage_dir, STAGE) and all(f.is_file() for f in result_files)
            and meta.get("weights", {}).get("sha256") == info["sha256"]):
        cli.log(f"already done: {stage_dir} (use --force to redo)")
        return 0
    provenance.invalidate(stage_dir)

    splits = {s: load_voc_split(root, s) for s in ("train", "val", "test")}
    classes = splits["test"].classes
    for s in ("train", "val"):
        if splits[s].classes != classes:
            raise DataError(f"{root}: the {s} and test splits name different classes")
    feats, labels, n_skipped = {}, {}, 0
    for s, split in splits.items():
        fs = cached_features(args.out, net, info, "voc2007", s, [str(p) for p in split.image_paths], args.layers,
                             batch_size=args.batch_size, device=device, workers=args.workers, force=args.force)
        if fs.skipped:
            cli.log(f"{s}: skipped {len(fs.skipped)} of {len(split.ids)} unreadable image(s); "
                    f"first: {fs.skipped[0][1]}")
        n_skipped += len(fs.skipped)
        feats[s], labels[s] = fs.features, _labels_for(split, fs.kept, s)

    outputs = []
    for layer in args.layers:
        try:
            res = run_protocol(feats["train"][layer], labels["train"], feats["val"][layer], labels["val"],
                               feats["test"][layer], labels["test"], classes, c_grid=args.c_grid,
                               workers=args.workers, seed=args.seed)
        except ValueError as exc:  # NaN features from a broken network, empty splits...
            raise DataError(f"{layer} features of {args.weights}: {exc}") from None
        res.pop("test_scores")
        out = {"tag": tag, "layer": layer, "weights_sha256": info["sha256"], **res,
               "n_train": len(labels["train"]), "n_val": len(labels["val"]), "n_test": len(labels["test"]),
               "n_skipped_images": n_skipped, "weights_source": info["source"], "seed": args.seed}
        io.write_json(stage_dir / f"results_{layer}.json", out)
        io.write_text(stage_dir / f"results_{layer}.md", results_markdown(out))
        outputs += [stage_dir / f"results_{layer}.json", stage_dir / f"results_{layer}.md"]
        cli.log(f"{tag} {layer}: mAP {100 * out['map']:.1f} (official VOC07), plain {100 * out['plain_map']:.1f}")
    summary = write_summary(stage_dir.parent)
    cli.log(f"wrote {stage_dir} and {summary}")
    provenance.write_meta(stage_dir, STAGE, args, outputs=outputs, extra={"weights": info, "tag": tag})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

"""PASCAL VOC2007 classification with linear SVMs on CNN features (the paper's protocol).

Features (pool5/fc6/fc7 for CaffeNet, the paper's; the registry's default layers for other
architectures, e.g. avgpool for ResNet-50; test-time centre crop, cached) -> StandardScaler -> one-vs-rest
LinearSVC; C per class chosen on val (trained on train) from {0.5^13..0.5^18}, retrained on
train+val, scored on test. ``--protocol release`` (default) trains and picks C exactly as the
original release did (its label parsing makes difficult-only images positives; C by
scikit-learn AP on val); ``--protocol voc`` leaves difficult-only images out and picks C by
the official 11-point AP. Either way the results show, per class and mean, side by side: the
official VOC2007 11-point AP (0 labels ignored) and the AP the release printed (scikit-learn
AP, difficult as positives), with the C chosen per class.
Class names come from ImageSets/Main, so the demo corpus works the same.

Output: RUN/voc_svm/<tag>/results_<layer>.json + results_<layer>.md (+ RUN/voc_svm/summary.md
comparing every tag present, e.g. trained vs random).

Run::

    python experiments/voc2007_classification.py --out runs/demo --weights runs/demo/train/model.safetensors \
        --tag trained --layers pool5 fc6 fc7 --data-root runs/demo/data
    python experiments/voc2007_classification.py --out runs/demo --weights random --tag random \
        --data-root runs/demo/data
    python experiments/voc2007_classification.py --out runs/demo --weights random --arch resnet50 \
        --tag random-resnet50 --data-root runs/demo/data                  # layers default to avgpool
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError, UserError  # noqa: E402
from texttopicnet.data.readers.voc import find_voc_root, load_release_labels, load_voc_split  # noqa: E402
from texttopicnet.evaluation.features import cached_features, choose_layers  # noqa: E402
from texttopicnet.evaluation.summaries import read_results, write_summary_table  # noqa: E402
from texttopicnet.evaluation.svm import DEFAULT_C_GRID, DEFAULT_PROTOCOL, PROTOCOLS, run_protocol  # noqa: E402
from texttopicnet.networks import backbones  # noqa: E402
from texttopicnet.weights.loading import load_network  # noqa: E402

STAGE = "voc2007_classification"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.data_parser(), cli.seed_parser(),
                                          cli.workers_parser(), cli.device_parser(), cli.network_parser(),
                                          cli.arch_parser()])
    p.add_argument("--layers", nargs="+", default=None,
                   help="feature layers, any name the network has (default: its backbone's default layers: pool5, fc6 "
                        "and fc7 for CaffeNet, the layers the paper reports; avgpool for ResNet/DenseNet/GoogLeNet)")
    p.add_argument("--c-grid", type=float, nargs="+", default=list(DEFAULT_C_GRID),
                   help="SVM C values tried per class on val: the original release's 0.5^13 .. 0.5^18")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass for feature extraction")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=DEFAULT_PROTOCOL,
                   help="'release' (default): as the original release's experiments/voc_2007_classification.py, "
                        "whose line.split(' ') label parsing trains difficult-only (0) images as positives and "
                        "picks C by scikit-learn AP on val with those labels; 'voc': difficult-only images left "
                        "out of training, C by the official 11-point AP on val. Both report the official "
                        "VOC2007 AP and the release's printed AP")
    return p


def _labels_for(split, kept, name):
    if not kept:
        raise DataError(f"VOC2007 {name}: none of the {len(split.ids)} images could be read")
    return split.labels[np.asarray(kept)].astype(np.int8)


def _release_for(root, split, kept):
    return load_release_labels(root, split)[np.asarray(kept)]


def _short(sha: str) -> str:
    return sha if sha.startswith("random-") else f"sha256 {sha[:12]}"


def results_markdown(res: dict) -> str:
    lines = [f"# VOC2007 classification: `{res['tag']}`, {res['layer']} + linear SVM", "",
             f"Weights `{_short(res['weights_sha256'])}` ({res.get('arch', 'caffenet')}); "
             f"train {res['n_train']}, val {res['n_val']}, "
             f"test {res['n_test']} images. Protocol `{res['protocol']}`: {res['protocol_description']}.", "",
             "Official AP = VOC2007 11-point interpolated AP, difficult-only images ignored (the VOC devkit's "
             "measure). Release AP = what the original script printed: scikit-learn average precision with "
             "difficult-only images counted as positives (mean over all classes).", "",
             "| class | AP official (VOC07) | AP release (printed) | C |", "|---|---:|---:|---:|"]
    for c in res["classes"]:
        lines.append(f"| {c} | {100 * res['ap'][c]:.1f} | {100 * res['release_ap'][c]:.1f} | "
                     f"{res['chosen_C'][c]:.3g} |")
    lines.append(f"| **mean** | **{100 * res['map']:.1f}** | **{100 * res['release_map']:.1f}** | |")
    for key, what in (("classes_without_test_positives", "no positive test image (left out of the official mean)"),
                      ("untrainable_classes", "only one label in train+val (scores constant)"),
                      ("c_fallback_classes", "no C with val AP above 0 (the release would stop with C = -1; "
                                             "the first C of the grid was used)")):
        if res.get(key):
            lines += ["", f"Classes with {what}: {', '.join(res[key])}."]
    if res.get("n_skipped_images"):
        lines += ["", f"{res['n_skipped_images']} unreadable image(s) were skipped."]
    if res.get("n_refused_ids"):
        lines += ["", f"{res['n_refused_ids']} image id(s) pointing outside JPEGImages/ were refused."]
    return "\n".join(lines) + "\n"


def _layer_order(layer: str) -> tuple:
    """Columns in forward order: the first backbone (CaffeNet first) recommending the layer places it."""
    for i, name in enumerate(backbones.names()):
        recommended = backbones.get(name).feature_layers
        if layer in recommended:
            return i, recommended.index(layer), layer
    return len(backbones.names()), 0, layer


def write_summary(svm_dir: Path) -> Path:
    """RUN/voc_svm/summary.md: official and release mAP of every tag x layer found, side by side."""
    table: dict[str, dict[str, dict]] = {}
    for r in read_results(svm_dir, "*/results_*.json", ("tag", "layer", "map", "release_map", "protocol")):
        table.setdefault(r["tag"], {})[r["layer"]] = r
    layers = sorted({l for row in table.values() for l in row}, key=_layer_order)

    def cell(row, layer):
        r = row.get(layer)
        return f"{100 * r['map']:.1f} / {100 * r['release_map']:.1f}" if r else "-"

    return write_summary_table(svm_dir / "summary.md",
                               "VOC2007 SVM classification: mAP (%), official 11-point AP / release's printed AP",
                               ["network", "protocol", *layers],
                               [[tag, ", ".join(sorted({r["protocol"] for r in row.values()})),
                                 *(cell(row, l) for l in layers)] for tag, row in sorted(table.items())],
                               align_right_from=2)


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    if any(c <= 0 for c in args.c_grid) or len(set(args.c_grid)) != len(args.c_grid):
        raise UserError(f"--c-grid values must be positive and distinct; got {args.c_grid}")
    root = find_voc_root(args.data_root if args.data_root is not None else "data")
    device = cli.resolve_device(args.device)
    net, info = load_network(args.weights, seed=args.seed, device=device, arch=args.arch)
    layers = choose_layers(net, args.layers)
    cli.log(f"network: {info['arch']}, layers {layers}")
    tag = args.tag or info["tag_hint"]
    stage_dir = Path(args.out) / "voc_svm" / tag
    result_files = [stage_dir / f"results_{layer}.json" for layer in layers]
    meta = provenance.read_meta(stage_dir) or {}
    if (not args.force and provenance.stage_is_done(stage_dir, STAGE) and all(f.is_file() for f in result_files)
            and meta.get("weights", {}).get("sha256") == info["sha256"]
            and meta.get("protocol") == args.protocol and meta.get("args", {}).get("c_grid") == args.c_grid):
        cli.log(f"already done: {stage_dir} (use --force to redo)")
        return 0
    provenance.invalidate(stage_dir)

    splits = {s: load_voc_split(root, s) for s in ("train", "val", "test")}
    classes = splits["test"].classes
    for s in ("train", "val"):
        if splits[s].classes != classes:
            raise DataError(f"{root}: the {s} and test splits name different classes")
    n_refused = sum(sum(split.refused.values()) for split in splits.values())
    for s, split in splits.items():
        if split.refused:
            cli.log(f"{s}: refused {sum(split.refused.values())} image id(s) resolving outside "
                    f"{root / 'JPEGImages'}; first: {', '.join(map(repr, split.refused_ids))}")
    feats, labels, release, n_skipped = {}, {}, {}, 0
    for s, split in splits.items():
        fs = cached_features(args.out, net, info, "voc2007", s, [str(p) for p in split.image_paths], layers,
                             batch_size=args.batch_size, device=device, workers=args.workers, force=args.force)
        if fs.skipped:
            cli.log(f"{s}: skipped {len(fs.skipped)} of {len(split.ids)} unreadable image(s); "
                    f"first: {fs.skipped[0][1]}")
        n_skipped += len(fs.skipped)
        feats[s], labels[s] = fs.features, _labels_for(split, fs.kept, s)
        release[s] = _release_for(root, split, fs.kept)  # the release's reading of the same files

    outputs = []
    for layer in layers:
        try:
            res = run_protocol(feats["train"][layer], labels["train"], feats["val"][layer], labels["val"],
                               feats["test"][layer], labels["test"], classes, c_grid=args.c_grid,
                               workers=args.workers, seed=args.seed, protocol=args.protocol,
                               release_labels=(release["train"], release["val"], release["test"]))
        except ValueError as exc:  # NaN features from a broken network, empty splits...
            raise DataError(f"{layer} features of {args.weights}: {exc}") from None
        res.pop("test_scores")
        out = {"tag": tag, "layer": layer, "arch": info["arch"], "weights_sha256": info["sha256"], **res,
               "n_train": len(labels["train"]), "n_val": len(labels["val"]), "n_test": len(labels["test"]),
               "n_skipped_images": n_skipped, "n_refused_ids": n_refused, "weights_source": info["source"],
               "seed": args.seed}
        io.write_json(stage_dir / f"results_{layer}.json", out)
        io.write_text(stage_dir / f"results_{layer}.md", results_markdown(out))
        outputs += [stage_dir / f"results_{layer}.json", stage_dir / f"results_{layer}.md"]
        cli.log(f"{tag} {layer} ({args.protocol} protocol): mAP {100 * out['map']:.1f} official VOC07, "
                f"{100 * out['release_map']:.1f} as the release printed it")
    summary = write_summary(stage_dir.parent)
    cli.log(f"wrote {stage_dir} and {summary}")
    provenance.write_meta(stage_dir, STAGE, args, outputs=outputs,
                          extra={"weights": info, "tag": tag, "protocol": args.protocol, "layers": layers,
                                 "refused": {s: split.refused for s, split in splits.items() if split.refused}})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

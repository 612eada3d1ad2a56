"""Fine-tune a network on VOC2007 trainval (20-way sigmoid head) and report test mAP, centre and 10-crop.

Starts from a trained, imported or random-init network of any registered architecture
(--arch for 'random' and torchvision .pth files; our files record theirs), replaces its head
(CaffeNet's fc8) with one output per class (names from ImageSets/Main, so the demo corpus
works), fine-tunes the whole network
with random crops + flips and a multi-label sigmoid loss, then scores test with the centre
crop and with the 10-crop average (official VOC07 11-point AP). Resumable: rerun the same
command after an interruption. Schedule and its reasons: texttopicnet/evaluation/finetune.py.
Image ids leaving JPEGImages/ are refused, counted (outside_collection) and recorded.

Output: RUN/finetune/<tag>/{checkpoint.pt, results.json, results.md, log.jsonl, meta.json}
(+ RUN/finetune/summary.md comparing every tag present). Packed images are cached in
RUN/finetune/_images/.

Run (the demo: a few dozen iterations on CPU)::

    python experiments/voc2007_finetune.py --out runs/demo --weights runs/demo/train/model.safetensors \
        --tag trained --data-root runs/demo/data --iterations 40 --batch-size 16
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError  # noqa: E402
from texttopicnet.core.paths import OUTSIDE  # noqa: E402
from texttopicnet.data.packing import pack_images  # noqa: E402
from texttopicnet.data.readers.voc import find_voc_root, load_voc_split  # noqa: E402
from texttopicnet.evaluation.features import list_digest  # noqa: E402
from texttopicnet.evaluation.finetune import FinetuneConfig, epochs, evaluate, finetune, new_head, predict  # noqa: E402
from texttopicnet.evaluation.summaries import summarise  # noqa: E402
from texttopicnet.networks import backbones  # noqa: E402
from texttopicnet.weights.loading import load_network  # noqa: E402

STAGE = "voc2007_finetune"
D = FinetuneConfig()


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.data_parser(), cli.seed_parser(),
                                          cli.workers_parser(), cli.device_parser(), cli.network_parser(),
                                          cli.arch_parser()])
    p.add_argument("--iterations", type=int, default=D.iterations,
                   help="SGD iterations; 12,500 x 64 images ~ 160 epochs of trainval, the image budget of "
                        "Kraehenbuehl et al. 2016's VOC07 fine-tuning (80k x 10)")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="images per iteration (the paper's 64)")
    p.add_argument("--base-lr", type=float, default=D.base_lr,
                   help="base learning rate: the paper's 0.001; the new head learns 10x faster (Caffe fine-tuning)")
    p.add_argument("--lr-step", type=int, default=D.lr_step, help="multiply the lr by 0.1 every this many iterations")
    p.add_argument("--head-lr-mult", type=float, default=D.head_lr_mult,
                   help="lr multiplier of the new head (CaffeNet: fc8; Caffe's fine-tuning convention: 10)")
    p.add_argument("--checkpoint-every", type=int, default=D.checkpoint_every,
                   help="iterations between resumable checkpoints")
    p.add_argument("--eval-batch-size", type=int, default=32, help="test images per forward pass (x10 for 10-crop)")
    return p


def packed(run_dir: Path, split, name: str, workers: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, int]:
    """The split's images as a memory-mapped uint8 (N, size, size, 3) store, cached; labels aligned; n skipped.
    ``size``: the backbone's warp (256 for every registered one, the paper's)."""
    folder = run_dir / "finetune" / "_images"
    suffix = "" if size == 256 else f"_{size}"
    store = folder / f"voc2007_{name}{suffix}.npy"
    marker = folder / f"voc2007_{name}{suffix}.json"
    digest = list_digest([str(p) for p in split.image_paths])
    info = io.read_json(marker) if marker.is_file() else {}
    if not (store.is_file() and info.get("list_sha256") == digest):
        res = pack_images(split.image_paths, store, size=size, workers=workers, resume=True)
        info = {"list_sha256": digest, "kept": res.kept, "skipped": [list(s) for s in res.skipped]}
        io.write_json(marker, info)
    images = np.load(store, mmap_mode="r")
    kept = np.asarray(info["kept"], dtype=np.int64)
    if len(images) != len(kept):
        raise DataError(f"{store}: {len(images)} rows but {len(kept)} kept images recorded; delete {folder} and rerun")
    if info["skipped"]:
        cli.log(f"{name}: skipped {len(info['skipped'])} of {len(split.ids)} unreadable image(s); "
                f"first: {info['skipped'][0][1]}")
    return images, split.labels[kept], len(info["skipped"])


def results_markdown(r: dict) -> str:
    lines = [f"# VOC2007 fine-tuning: `{r['tag']}` ({r.get('arch', 'caffenet')})", "",
             f"{r['iterations']} iterations x batch {r['config']['batch_size']} (~{r['epochs']:.0f} epochs of "
             f"{r['n_trainval']} trainval images); test {r['n_test']} images; official VOC07 11-point AP.", "",
             "| class | AP centre | AP 10-crop |", "|---|---:|---:|"]
    for c in r["classes"]:
        lines.append(f"| {c} | {100 * r['ap_center'][c]:.1f} | {100 * r['ap_10crop'][c]:.1f} |")
    lines.append(f"| **mean** | **{100 * r['map_center']:.1f}** | **{100 * r['map_10crop']:.1f}** |")
    if r.get("n_refused_ids"):
        lines += ["", f"{r['n_refused_ids']} image id(s) pointing outside JPEGImages/ were refused ({OUTSIDE})."]
    return "\n".join(lines) + "\n"


def write_summary(ft_dir: Path) -> Path:
    """RUN/finetune/summary.md: test mAP of every fine-tuned tag found."""
    return summarise(ft_dir, "*/results.json", ("tag", "iterations", "map_center", "map_10crop"),
                     "VOC2007 fine-tuning: test mAP (%)", ["network", "iterations", "centre", "10-crop"],
                     lambda r: [r["tag"], r["iterations"], f"{100 * r['map_center']:.1f}",
                                f"{100 * r['map_10crop']:.1f}"])


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    root = find_voc_root(args.data_root if args.data_root is not None else "data")
    device = cli.resolve_device(args.device)
    net, info = load_network(args.weights, seed=args.seed, device="cpu", arch=args.arch)
    spec = backbones.spec_of(net)
    tag = args.tag or info["tag_hint"]
    stage_dir = Path(args.out) / "finetune" / tag
    meta = provenance.read_meta(stage_dir) or {}
    if (not args.force and provenance.stage_is_done(stage_dir, STAGE)
            and meta.get("weights", {}).get("sha256") == info["sha256"]
            and meta.get("args", {}).get("iterations") == args.iterations):
        cli.log(f"already done: {stage_dir} (use --force to redo)")
        return 0
    provenance.invalidate(stage_dir)
    ckpt = stage_dir / "checkpoint.pt"
    if args.force:
        for f in (ckpt, stage_dir / "log.jsonl"):
            if f.exists():
                f.unlink()

    trainval, test = load_voc_split(root, "trainval"), load_voc_split(root, "test")
    classes = test.classes
    if trainval.classes != classes:
        raise DataError(f"{root}: trainval and test name different classes")
    refused = {name: split.refused for name, split in (("trainval", trainval), ("test", test)) if split.refused}
    for name, split in (("trainval", trainval), ("test", test)):
        if split.refused:
            cli.log(f"{name}: refused {sum(split.refused.values())} image id(s) resolving outside "
                    f"{root / 'JPEGImages'} ({OUTSIDE}); first: {', '.join(map(repr, split.refused_ids))}")
    tv_images, tv_labels, n_skip_tv = packed(Path(args.out), trainval, "trainval", args.workers, spec.resize)
    te_images, te_labels, n_skip_te = packed(Path(args.out), test, "test", args.workers, spec.resize)

    new_head(net, len(classes), args.seed)
    cfg = FinetuneConfig(iterations=args.iterations, batch_size=args.batch_size, base_lr=args.base_lr,
                         lr_step=args.lr_step, head_lr_mult=args.head_lr_mult,
                         checkpoint_every=args.checkpoint_every, seed=args.seed, init=info["sha256"])
    stage_dir.mkdir(parents=True, exist_ok=True)
    log_path = stage_dir / "log.jsonl"
    train_info = finetune(net, tv_images, tv_labels, cfg, ckpt, device, log=lambda rec: io.append_jsonl(log_path, rec))
    if train_info["start_iteration"]:
        cli.log(f"resumed from iteration {train_info['start_iteration']}")

    scores_c = predict(net, te_images, "center", args.eval_batch_size, device)
    scores_10 = predict(net, te_images, "10crop", args.eval_batch_size, device)
    ap_c, map_c = evaluate(scores_c, te_labels, classes)
    ap_10, map_10 = evaluate(scores_10, te_labels, classes)
    res = {"tag": tag, "arch": info["arch"], "map_center": map_c, "map_10crop": map_10, "ap_center": ap_c,
           "ap_10crop": ap_10,
           "iterations": args.iterations, "classes": classes, "epochs": epochs(cfg, len(tv_images)),
           "n_trainval": int(len(tv_images)), "n_test": int(len(te_images)),
           "n_skipped_images": n_skip_tv + n_skip_te, "weights_sha256": info["sha256"],
           "n_refused_ids": sum(sum(r.values()) for r in refused.values()),
           "weights_source": info["source"], "config": cfg.__dict__, "train": train_info,
           "classes_without_test_positives": [c for j, c in enumerate(classes) if not (te_labels[:, j] == 1).any()]}
    io.write_json(stage_dir / "results.json", res)
    io.write_text(stage_dir / "results.md", results_markdown(res))
    summary = write_summary(stage_dir.parent)
    cli.log(f"{tag}: fine-tuned test mAP {100 * map_c:.1f} (centre), {100 * map_10:.1f} (10-crop); "
            f"wrote {stage_dir}, {summary}")
    provenance.write_meta(stage_dir, STAGE, args, outputs=[ckpt, stage_dir / "results.json",
                                                           stage_dir / "results.md"],
                          extra={"weights": info, "tag": tag, "refused": refused})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

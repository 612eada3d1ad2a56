"""Wikipedia cross-modal retrieval (Rasiwasia et al. 2010) in the topic space, both directions.

Texts of the test split are projected with the LDA topic model; images go through the
network's ``prob`` (sigmoid) output. Both are normalised to sum 1 and ranked by
KL(text || image), as the paper; relevant = same category; AP over the full ranking,
mAP over all queries (image query -> texts, and text query -> images), with a
per-category table and the chance level (expected AP of a random ranking) beside it.
Distances are computed as chunked matrix products (KL identity in REFERENCE.md).
Images missing on disk are counted and left out (their texts stay in the database); ids
leading outside the dataset folder are refused and counted (outside_collection).

Any text space: --space names a vector space folder (RUN/space from lda/02 --space word2vec, ...);
texts are embedded and passed through the training target transform the labels stage used
(--target, default the space kind's: minshift_l2) and ranked by cosine. --lda (or --space on an
LDA folder) is the paper's topic space.

Any architecture and training loss: the network's file records its architecture (--arch for
'random' and torchvision .pth files) and the training stage records its loss. A network
trained with the cosine or triplet loss is read at its logits, L2-normalised (the loss's
prediction), one trained with MSE at its raw logits, and both are ranked by cosine similarity
(their outputs are vectors, not distributions); --loss overrides what was recorded.

Output: RUN/retrieval/<tag>/results.json, results.md, examples.json (+ RUN/retrieval/summary.md
comparing every tag present, e.g. trained vs random).

Run::

    python experiments/multimodal_retrieval.py --out runs/demo --weights runs/demo/train/model.safetensors \
        --tag trained --lda runs/demo/lda --data-root runs/demo/data
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import DataError  # noqa: E402
from texttopicnet.core.paths import OUTSIDE  # noqa: E402
from texttopicnet.data.readers.wikipedia import categories, find_wikipedia_root, load_wikipedia  # noqa: E402
from texttopicnet.evaluation.features import cached_features  # noqa: E402
from texttopicnet.evaluation.retrieval import (  # noqa: E402
    SCORES,
    default_score,
    evaluate,
    image_layer,
    recorded_loss,
    to_text_space,
    vector_space_texts,
)
from texttopicnet.evaluation.summaries import summarise  # noqa: E402
from texttopicnet.text.spaces import default_target, load_text_space  # noqa: E402
from texttopicnet.text.topics import TopicModel  # noqa: E402
from texttopicnet.training.losses import LOSSES  # noqa: E402
from texttopicnet.weights.loading import load_network  # noqa: E402

STAGE = "multimodal_retrieval"
N_EXAMPLES = 4  # queries per direction kept in examples.json for the report's figure


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.data_parser(), cli.seed_parser(),
                                          cli.workers_parser(), cli.device_parser(), cli.network_parser(),
                                          cli.arch_parser()])
    space = p.add_mutually_exclusive_group(required=True)
    space.add_argument("--lda", type=Path,
                       help="topic model: folder with ldamodel{K}.lda + dictionary.dict (e.g. RUN/lda), or the .lda file")
    space.add_argument("--space", type=Path,
                       help="any saved text space folder (RUN/space for lda/02 --space word2vec etc., or RUN/lda)")
    p.add_argument("--target", default=None, choices=("minshift_l2", "minshift_max"),
                   help="training-target transform of a vector space (default: what RUN/labels/meta.json beside "
                        "--out recorded, else minshift_l2, the TextTopicNet fork's)")
    p.add_argument("--split", default="test", choices=["test", "train", "all"],
                   help="Wikipedia split to evaluate; the paper reports the 693-pair test split")
    p.add_argument("--score", default=None, choices=SCORES,
                   help="ranking score: 'kl' = KL(text || image), the paper's; 'cosine' for comparison. Default: kl "
                        "for a network trained with sigmoid cross-entropy (the paper's), cosine for the vector "
                        "losses (cosine, mse, triplet)")
    p.add_argument("--loss", default=None, choices=list(LOSSES),
                   help="the loss the network was trained with, deciding how its outputs map into the text space "
                        "(default: what the training stage recorded in the checkpoint or in summary.json beside the "
                        "export; sigmoid_ce, the paper's, when nothing is recorded)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass for feature extraction")
    return p


def results_markdown(res: dict) -> str:
    lines = [f"# Wikipedia cross-modal retrieval: `{res['tag']}` ({res['score']})", "",
             f"Network {res.get('arch', 'caffenet')} trained with {res.get('loss', 'sigmoid_ce')}: images are read at "
             f"`{res.get('image_layer', 'prob')}`.", "",
             f"{res['n_queries']} test pairs; {res['n_image_queries']} image queries, {res['n_text_queries']} text "
             f"queries ({res['n_missing_images']} images missing on disk). Relevant = same category; "
             "AP over the full ranking.", "",
             "| direction | mAP | chance |", "|---|---:|---:|",
             f"| image -> text | {res['img2txt_map']:.4f} | {res['chance_img2txt']:.4f} |",
             f"| text -> image | {res['txt2img_map']:.4f} | {res['chance_txt2img']:.4f} |", "",
             "| category | n texts | n images | img->txt AP | txt->img AP |", "|---|---:|---:|---:|---:|"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for name, r in res["per_category"].items():
        lines.append(f"| {name} | {r['n']} | {r['n_images']} | {fmt(r['img2txt'])} | {fmt(r['txt2img'])} |")
    if res.get("n_refused"):
        lines += ["", f"{res['n_refused']} id(s) leading outside the dataset folder were refused ({OUTSIDE})."]
    if res.get("n_empty_texts"):
        lines += ["", f"{res['n_empty_texts']} text(s) had no word the text space knows; they got the uniform (LDA) or constant (vector space) row."]
    return "\n".join(lines) + "\n"


def write_summary(ret_dir: Path) -> Path:
    """RUN/retrieval/summary.md: both directions' mAP for every tag found (trained vs random)."""
    return summarise(ret_dir, "*/results.json", ("tag", "score", "img2txt_map", "txt2img_map", "chance_img2txt",
                                                 "chance_txt2img"),
                     "Wikipedia cross-modal retrieval: mAP",
                     ["network", "score", "img->txt", "txt->img", "chance img->txt", "chance txt->img"],
                     lambda r: [r["tag"], r["score"], f"{r['img2txt_map']:.4f}", f"{r['txt2img_map']:.4f}",
                                f"{r['chance_img2txt']:.4f}", f"{r['chance_txt2img']:.4f}"], align_right_from=2)


def _snippet(text: str, n: int = 200) -> str:
    return " ".join(text.split())[:n]


def make_examples(res, pairs, img_pairs, names, seed: int) -> dict:
    """A few queries per direction (spread over categories, chosen by the seed) with their top-10."""
    rng = np.random.default_rng(seed)

    def pick(items):
        by_cat = {}
        for i, p in enumerate(items):
            by_cat.setdefault(p.category, []).append(i)
        cats = sorted(by_cat)
        rng.shuffle(cats)
        return [int(rng.choice(by_cat[c])) for c in cats[:N_EXAMPLES]]

    i2t = [{"query": {"image_id": img_pairs[q].image_id, "image_path": str(img_pairs[q].image_path),
                      "category": names[img_pairs[q].category - 1], "ap": float(res["ap_img2txt"][q])},
            "results": [{"text_id": pairs[j].text_id, "category": names[pairs[j].category - 1],
                         "snippet": _snippet(pairs[j].text), "relevant": pairs[j].category == img_pairs[q].category}
                        for j in res["top_img2txt"][q]]} for q in pick(img_pairs)]
    t2i = [{"query": {"text_id": pairs[q].text_id, "category": names[pairs[q].category - 1],
                      "snippet": _snippet(pairs[q].text), "ap": float(res["ap_txt2img"][q])},
            "results": [{"image_id": img_pairs[j].image_id, "image_path": str(img_pairs[j].image_path),
                         "category": names[img_pairs[j].category - 1],
                         "relevant": img_pairs[j].category == pairs[q].category}
                        for j in res["top_txt2img"][q]]} for q in pick(pairs)]
    return {"img2txt": i2t, "txt2img": t2i}


def _load_space(args):
    """(vector space or None, topic model or None): the paper's LDA path stays TopicModel's."""
    path = args.lda or args.space
    if args.lda is None:
        space = load_text_space(args.space)
        if space.kind == "vector":
            if args.target is None:
                labels_meta = provenance.read_meta(Path(args.out) / "labels") or {}
                args.target = (labels_meta.get("targets") or {}).get("target") or default_target(space)
            return space, None
        path = args.space
    args.target = None  # distributions are compared as they are (KL, the paper)
    return None, TopicModel.load(path)


def _project_texts(args, space, topics, texts):
    """Texts -> (vectors, empty mask) in the network's output space, with a note on empty texts."""
    if topics is None:
        cli.log(f"embedding {len(texts)} texts in the {space.name} space ({space.dim} dims, target {args.target})")
        vecs, empty = vector_space_texts(space, texts, args.target)
        fallback = "the constant unit vector"
    else:
        cli.log(f"projecting {len(texts)} texts into the {topics.num_topics}-topic space")
        vecs = topics.infer(texts, empty="nan", seed=args.seed)
        empty = np.isnan(vecs).any(axis=1)
        vecs[empty] = 1.0 / topics.num_topics
        fallback = "the uniform vector (LDA's symmetric prior)"
    if empty.any():
        cli.log(f"note: {int(empty.sum())} of {len(texts)} texts have no word the text space knows; they get {fallback}")
    return vecs, empty


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    root = find_wikipedia_root(args.data_root if args.data_root is not None else "data")
    space, topics = _load_space(args)
    dim = topics.num_topics if topics is not None else space.dim
    device = cli.resolve_device(args.device)
    net, info = load_network(args.weights, num_outputs=dim if args.weights == "random" else None,
                             seed=args.seed, device=device, arch=args.arch)
    if info["num_outputs"] != dim:
        raise DataError(f"the network has {info['num_outputs']} outputs but the text space {args.lda or args.space} "
                        f"has {dim} dimensions: they must describe the same space")
    recorded = recorded_loss(args.weights, info)
    loss = args.loss or (recorded or {}).get("name") or "sigmoid_ce"
    score = args.score or (default_score(loss) if topics is not None else "cosine")
    layer = image_layer(loss)
    cli.log(f"network: {info['arch']} trained with {loss}"
            + (" (--loss)" if args.loss else " (recorded)" if recorded else " (nothing recorded: the paper's)")
            + f"; images read at {layer}, ranked by {score}")
    tag = args.tag or info["tag_hint"]
    stage_dir = Path(args.out) / "retrieval" / tag
    meta = provenance.read_meta(stage_dir) or {}
    if (not args.force and provenance.stage_is_done(stage_dir, STAGE)
            and meta.get("weights", {}).get("sha256") == info["sha256"]
            and meta.get("score", meta.get("args", {}).get("score")) == score
            and meta.get("loss", "sigmoid_ce") == loss and meta.get("args", {}).get("split") == args.split
            and meta.get("space_dir", str(args.lda)) == str(args.lda or args.space)
            and meta.get("target") == args.target):
        cli.log(f"already done: {stage_dir} (use --force to redo)")
        return 0
    provenance.invalidate(stage_dir)

    refused: dict = {}
    pairs = load_wikipedia(root, args.split, refused=refused)
    n_refused = int(refused.get(OUTSIDE, 0))
    if n_refused:
        cli.log(f"note: {n_refused} id(s) of the {args.split} list lead outside {root} and were refused ({OUTSIDE})")
    names = categories(root)
    if not pairs:
        raise DataError(f"{root}: the {args.split} list is empty")
    text_vecs, empty = _project_texts(args, space, topics, [p.text for p in pairs])

    with_img = [p for p in pairs if p.image_path is not None]
    n_missing = len(pairs) - len(with_img)
    if n_missing:
        cli.log(f"note: {n_missing} of {len(pairs)} images of the {args.split} split are missing on disk; "
                f"evaluating with the {len(with_img)} present")
    if not with_img:
        raise DataError(f"{root / 'images'}: none of the {len(pairs)} {args.split} images is present (texts were "
                        f"projected fine: {len(pairs)} text vectors, {int(empty.sum())} empty); the image side "
                        "needs the dataset's images/<category>/<image_id>.jpg")
    fs = cached_features(args.out, net, info, "wikipedia", args.split, [str(p.image_path) for p in with_img],
                         [layer], batch_size=args.batch_size, device=device, workers=args.workers, force=args.force)
    if fs.skipped:
        cli.log(f"skipped {len(fs.skipped)} unreadable image(s); first: {fs.skipped[0][1]}")
    if not fs.kept:
        raise DataError(f"none of the {len(with_img)} present images could be read")
    img_pairs = [with_img[i] for i in fs.kept]

    try:
        res = evaluate(text_vecs, to_text_space(fs.features[layer], loss), [p.category for p in pairs],
                       [p.category for p in img_pairs], {i + 1: n for i, n in enumerate(names)}, score=score, top_k=10)
    except ValueError as exc:  # e.g. a network whose outputs are all 0 or NaN: nothing to rank
        raise DataError(f"cannot rank with {args.weights}: {exc}") from None
    out = {"tag": tag, "arch": info["arch"], "loss": loss, "image_layer": layer, "weights_sha256": info["sha256"],
           "n_queries": len(pairs), "n_refused": n_refused,
           "n_image_queries": len(img_pairs), "n_text_queries": len(pairs),
           "n_missing_images": n_missing, "n_unreadable_images": len(fs.skipped), "n_empty_texts": int(empty.sum()),
           **{k: v for k, v in res.items() if not k.startswith(("ap_", "top_"))},
           "split": args.split, "num_topics": dim, "lda": str(args.lda or args.space), "seed": args.seed,
           "space": space.name if space is not None else "lda", "target": args.target,
           "weights_source": info["source"]}
    examples = make_examples(res, pairs, img_pairs, names, args.seed)
    outputs = [stage_dir / "results.json", stage_dir / "results.md", stage_dir / "examples.json"]
    io.write_json(outputs[0], out)
    io.write_text(outputs[1], results_markdown(out))
    io.write_json(outputs[2], examples)
    summary = write_summary(stage_dir.parent)
    cli.log(f"{tag}: image->text mAP {out['img2txt_map']:.4f} (chance {out['chance_img2txt']:.4f}), "
            f"text->image mAP {out['txt2img_map']:.4f} (chance {out['chance_txt2img']:.4f}); wrote {stage_dir}, "
            f"{summary}")
    provenance.write_meta(stage_dir, STAGE, args, inputs=[], outputs=outputs,
                          extra={"weights": info, "tag": tag, "loss": loss, "score": score, "refused": refused,
                                 "space_dir": str(args.lda or args.space), "target": args.target})
    return 0


if __name__ == "__main__":
    cli.run_main(main)

"""The run report: ``RUN/report/report.md``, ``report.html`` (self-contained) and ``figures/``.

Built from the files the stages wrote (see :mod:`.collect`); every number comes from
the run. The trained (or published) network is always shown beside the random-init
baseline of the same architecture and the chance level, and, for ``--dataset paper``,
beside the paper's reported numbers.

    from texttopicnet.report import build_report
    build_report(settings)          # settings: texttopicnet.pipeline.Settings
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.io import write_text
from ..core.provenance import write_meta
from .collect import collect
from .figures import ap_bars, loss_curve, retrieval_examples, topic_gallery
from .render import fmt, to_html, to_markdown

STAGE = "report"


def _voc_chance(data_root: Path) -> dict[str, dict[str, float]] | None:
    """Chance AP per class on test: ``official`` = positives / (positives + negatives), 0-labelled
    ignored; ``release`` = the release's positives (1 and 0 lines) / all images."""
    try:
        from ..data.readers.voc import find_voc_root, load_release_labels, load_voc_split

        root = find_voc_root(data_root)
        split = load_voc_split(root, "test")
        release = load_release_labels(root, split)
    except Exception:
        return None
    pos = (split.labels == 1).sum(0)
    neg = (split.labels == -1).sum(0)
    n = max(len(split.ids), 1)
    return {"official": {c: float(p / max(p + q, 1)) for c, p, q in zip(split.classes, pos, neg)},
            "release": {c: float(r / n) for c, r in zip(split.classes, release.sum(0))}}


def _mean(values) -> float | None:
    return float(np.mean(list(values))) if values else None


def _svm_blocks(data: dict, chance: dict | None, fig_dir: Path, paper: dict | None) -> list:
    blocks: list = [("h", 2, "PASCAL VOC2007-layout classification (linear SVMs)")]
    svm = data["svm"]
    if not svm:
        return blocks + [("p", "Not run yet.")]
    tags = [t for t in data["tags"] if t in svm]
    chance = chance or {}
    # official columns first (network, chance, paper), then the release's printed AP beside them
    header = ["features"] + [f"{t} mAP (%)" for t in tags] + ["chance mAP (%)"]
    if paper:
        header.append("paper mAP (%)")
    header += [f"{t} release mAP (%)" for t in tags] + ["chance release mAP (%)"]
    rows = []
    for layer in data["layers"]:
        res = {t: svm[t].get(layer) or {} for t in tags}
        row = [layer] + [fmt(res[t].get("map"), pct=True) for t in tags]
        row.append(fmt(_mean(chance.get("official", {}).values()), pct=True))
        if paper:
            row.append(fmt(((paper.get("voc07_svm") or {}).get(layer)), 1))
        row += [fmt(res[t].get("release_map"), pct=True) for t in tags]
        row.append(fmt(_mean(chance.get("release", {}).values()), pct=True))
        rows.append(row)
    blocks.append(("table", header, rows))
    protocols = {t: sorted({r.get("protocol", "?") for r in svm[t].values()}) for t in tags}
    blocks.append(("p", "mAP = official VOC2007 AP (11-point interpolated; images labelled 0, difficult only, "
                        "ignored). Release mAP = what the original release printed: scikit-learn average precision "
                        "with difficult-only images counted as positives, mean over all classes. `StandardScaler` + "
                        "one-vs-rest `LinearSVC`, C chosen per class on val, retrained on trainval, scored on test; "
                        "protocol: " + "; ".join(f"{t} `{', '.join(p)}`" for t, p in protocols.items())
                        + " (`release`: trained and C chosen as the release did, difficult as positives; `voc`: "
                          "difficult left out, C by the official AP). Chance = fraction of positives per class "
                          "(a random ranking's expected AP)."))
    best = max(data["layers"], key=lambda l: (svm.get(tags[0], {}).get(l) or {}).get("map", -1))
    first = svm[tags[0]].get(best)
    if first:
        classes = first["classes"]
        series = {t: (svm[t].get(best) or {}).get("ap", {}) for t in tags}
        rel = {t: (svm[t].get(best) or {}).get("release_ap", {}) for t in tags}
        path = ap_bars(classes, series, f"Per-class AP, {best} features", fig_dir / "voc_ap_bars.png", markers=rel)
        rows = [[c] + [fmt(series[t].get(c), pct=True) for t in tags]
                + [fmt(chance.get("official", {}).get(c), pct=True)]
                + [fmt(rel[t].get(c), pct=True) for t in tags]
                + [fmt((first.get("chosen_C") or {}).get(c), 6)] for c in classes]
        blocks.append(("h", 3, f"Per class ({best})"))
        blocks.append(("table", ["class"] + [f"{t} AP" for t in tags] + ["chance"]
                       + [f"{t} release AP" for t in tags] + [f"C ({tags[0]})"], rows))
        if path:
            blocks.append(("img", path, f"Per-class AP with {best} features: {' vs '.join(tags)} (bars: official "
                                        "VOC2007 AP; black ticks: the release's printed AP)"))
    return blocks


def _retrieval_blocks(data: dict, fig_dir: Path, paper: dict | None) -> list:
    blocks: list = [("h", 2, "Cross-modal retrieval (Wikipedia-dataset layout, test split)")]
    ret = data["retrieval"]
    if not ret:
        return blocks + [("p", "Not run yet.")]
    tags = [t for t in data["tags"] if t in ret]
    header = ["query -> database"] + [f"{t} mAP" for t in tags] + ["chance mAP"]
    if paper:
        header.append("paper mAP")
    rows = []
    for key, label, pkey in (("img2txt", "image -> texts", "wiki_img2txt"), ("txt2img", "text -> images", "wiki_txt2img")):
        first = ret[tags[0]]
        row = [label] + [fmt(ret[t].get(f"{key}_map"), 3) for t in tags] + [fmt(first.get(f"chance_{key}"), 3)]
        if paper:
            row.append(fmt(paper.get(pkey), 3))
        rows.append(row)
    blocks.append(("table", header, rows))
    first = ret[tags[0]]
    if first.get("space", "lda") == "lda" and first.get("score", "kl") == "kl":
        how = ("Texts are projected with the LDA model, images through the network's sigmoid output; ranked by "
               "KL(text || image)")
    else:
        how = (f"Texts are embedded in the {first.get('space', 'lda')} space"
               + (f" (training target {first['target']})" if first.get("target") else "")
               + f", images read at the network's {first.get('image_layer', 'prob')} output (trained with "
               f"{first.get('loss', 'sigmoid_ce')}); ranked by {first.get('score')}")
    blocks.append(("p", how + "; relevant = same category; AP over the full ranking, mAP over all queries."))
    per = ret[tags[0]].get("per_category") or {}
    if per:
        rows = [[name] + [fmt(((ret[t].get("per_category") or {}).get(name) or {}).get(d), 3)
                          for t in tags for d in ("img2txt", "txt2img")] + [str(v.get("n", "-"))]
                for name, v in per.items()]
        blocks.append(("h", 3, "Per category"))
        blocks.append(("table", ["category"] + [f"{t} {d}" for t in tags for d in ("img->txt", "txt->img")] + ["n"], rows))
    ex = data["retrieval_examples"].get(tags[0])
    path = retrieval_examples(ex, fig_dir / "retrieval_examples.png") if ex else None
    if path:
        blocks.append(("img", path, f"Retrieval examples ({tags[0]} network): an image query with its top texts, "
                                    "a text query with its top images (green = same category)"))
    return blocks


def _training_blocks(data: dict, settings, fig_dir: Path) -> list:
    blocks: list = [("h", 2, "Self-supervised training")]
    fc = data.get("filter_counts")
    if fc:
        removed = fc.get("removed") or {}
        text = (f"Training pairs (stage 1 filters): {fc.get('kept', '-')} of {fc.get('images', '-')} images kept, "
                f"from {fc.get('unique_articles', '-')} unique articles")
        if removed:
            text += "; removed: " + ", ".join(f"{k} {v}" for k, v in removed.items() if v)
        blocks.append(("p", text + "."))
    summ = data.get("train_summary")
    if summ:
        rows = [[k, fmt(summ.get(k), 4) if isinstance(summ.get(k), float) else str(summ.get(k, "-"))]
                for k in ("iterations", "initial_loss", "final_loss", "mean_baseline_loss", "images_per_s", "device")]
        blocks.append(("table", ["training", "value"], rows))
        fl, bl = summ.get("final_loss"), summ.get("mean_baseline_loss")
        if fl is not None and bl is not None:
            verdict = "below" if fl < bl else "NOT below"
            blocks.append(("p", f"Final loss {fl:.4f} is **{verdict}** the loss of always predicting the mean topic "
                                f"distribution ({bl:.4f}): the network predicts topics from pixels."))
    path = loss_curve(data["train_log"], (summ or {}).get("mean_baseline_loss"), fig_dir / "loss_curve.png")
    if path:
        blocks.append(("img", path, "Training loss with the mean-distribution baseline"))
    topics = data.get("topics")
    weights = Path(settings.trained_weights)
    packed = Path(settings.run_dir) / "packed"
    if topics and weights.is_file() and (packed / "images.npy").is_file():
        from .topic_images import topic_top_images

        entries = topics.get("topics") if isinstance(topics, dict) else topics
        shown = entries[: min(4, len(entries))]
        norm = [{"topic": t.get("topic", i), "words": [w[0] if isinstance(w, (list, tuple)) else w
                                                        for w in t.get("words", [])]} for i, t in enumerate(shown)]
        thumbs, top = topic_top_images(packed, weights, [t["topic"] for t in norm], seed=settings.seed)
        path = topic_gallery(norm, thumbs, top, fig_dir / "topics.png")
        if path:
            blocks.append(("img", path, "Top words of a few LDA topics and the training images the network scores "
                                        "highest for each"))
    return blocks


def build_report(settings) -> Path:
    """Write RUN/report/{report.md, report.html, figures/*.png, meta.json}; return report.md's path."""
    run_dir = Path(settings.run_dir)
    out = run_dir / "report"
    fig_dir = out / "figures"
    tags = [t for t, _ in settings.tags]
    data = collect(run_dir, tags, list(settings.layers))
    paper = data["paper"] if settings.dataset == "paper" else None
    chance = _voc_chance(settings.data_root)
    conf = getattr(settings, "configuration", {})
    blocks: list = [("h", 1, f"TextTopicNet run report: {run_dir.name}"),
                    ("p", f"Dataset: **{settings.dataset}**; networks: {', '.join(tags)} (random = the same "
                          f"{conf.get('arch', 'caffenet')} with a random initialisation, seed {settings.seed}). "
                          f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}."),
                    ("table", ["corpus", "text space", "targets", "network", "loss"],
                     [[conf.get(k, "-") for k in ("corpus", "space", "target", "arch", "loss")]])]
    blocks += _svm_blocks(data, chance, fig_dir, paper)
    blocks += _retrieval_blocks(data, fig_dir, paper)
    blocks += _training_blocks(data, settings, fig_dir)
    from ..vlm.report import report_blocks  # the CNN-VLM section, when the run has one

    blocks += report_blocks(run_dir, fig_dir)
    blocks.append(("h", 2, "Stage timings"))
    stages = (data["pipeline"] or {}).get("stages", {})
    blocks.append(("table", ["stage", "seconds", "finished"],
                   [[k, fmt(v.get("seconds"), 1), v.get("finished", "-")] for k, v in stages.items()]))
    blocks.append(("h", 2, "Provenance"))
    metas = data["metas"]
    any_meta = next(iter(metas.values()), {})
    blocks.append(("p", f"git commit: `{any_meta.get('git_commit')}`; seed: {settings.seed}; device: {settings.device}"))
    versions = any_meta.get("versions") or {}
    blocks.append(("table", ["library", "version"], [[k, str(v)] for k, v in versions.items()]))
    blocks.append(("table", ["stage folder", "finished", "arguments"],
                   [[k, str(m.get("finished")), "`" + " ".join(f"{a}={v}" for a, v in (m.get("args") or {}).items()
                                                                if v is not None and v is not False) + "`"]
                    for k, m in metas.items()]))
    md = to_markdown(blocks, out)
    write_text(out / "report.md", md)
    write_text(out / "report.html", to_html(blocks, f"TextTopicNet report: {run_dir.name}"))
    figures = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    write_meta(out, STAGE, {"run_dir": str(run_dir), "dataset": settings.dataset, "tags": tags},
               outputs=[out / "report.md", out / "report.html", *figures])
    return out / "report.md"

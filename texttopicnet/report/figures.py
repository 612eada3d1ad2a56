"""The report's figures (matplotlib, PNG): loss curve, topics with their top images,
retrieval examples and per-class AP bars. Each function takes plain data (from
:mod:`texttopicnet.report.collect`) and a path, and returns the path it wrote, or
``None`` when the data it needs is absent.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..core.io import atomic_path  # noqa: E402

COLORS = {"trained": "#1f77b4", "published": "#2ca02c", "random": "#aaaaaa"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    head = np.array([y[: i + 1].mean() for i in range(window - 1)])
    return np.concatenate([head, np.convolve(y, kernel, mode="valid")])


def loss_curve(log_rows: list[dict], baseline: float | None, path: Path) -> Path | None:
    """Training loss per iteration (raw and smoothed) with the mean-distribution baseline."""
    rows = [r for r in log_rows if "loss" in r and "iteration" in r]
    if not rows:
        return None
    it = np.array([r["iteration"] for r in rows], dtype=float)
    loss = np.array([r["loss"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(it, loss, color="#9ecae1", lw=0.8, label="loss")
    ax.plot(it, _smooth(loss, max(1, len(loss) // 20)), color="#08519c", lw=2, label="loss (smoothed)")
    if baseline is not None:
        ax.axhline(baseline, color="#d62728", ls="--", lw=1.5, label=f"predict mean topic distribution ({baseline:.4f})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("sigmoid cross-entropy")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def ap_bars(classes: Sequence[str], series: dict[str, dict[str, float]], title: str, path: Path,
            markers: dict[str, dict[str, float]] | None = None) -> Path | None:
    """Grouped bars: per-class AP of each network (``series`` = {tag: {class: ap}}).

    ``markers`` (same shape, e.g. the release's printed AP beside the official AP) are drawn
    as a black tick across each network's bar.
    """
    if not classes or not series:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(classes) + 2), 3.6))
    width = 0.8 / len(series)
    x = np.arange(len(classes))
    for i, (tag, aps) in enumerate(series.items()):
        vals = [100.0 * aps.get(c, np.nan) for c in classes]
        pos = x + (i - (len(series) - 1) / 2) * width
        ax.bar(pos, vals, width, label=tag, color=COLORS.get(tag))
        if markers and markers.get(tag):
            ticks = [100.0 * markers[tag].get(c, np.nan) for c in classes]
            ax.scatter(pos, ticks, marker="_", s=max(30.0, 160.0 / len(series)), color="black", linewidths=1.5,
                       label="release AP" if i == 0 else None, zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def topic_gallery(topics: list[dict], images: np.ndarray, top_idx: list[list[int]], path: Path) -> Path | None:
    """For a few topics: the top words (left) and the training images the network scores highest
    for that topic (right), as in the paper's figure. ``topics[i] = {"topic": k, "words": [...]}``."""
    if not topics or images is None or len(images) == 0:
        return None
    n_img = max(len(t) for t in top_idx)
    fig, axes = plt.subplots(len(topics), n_img + 1, figsize=(1.6 * (n_img + 1) + 1.2, 1.6 * len(topics)),
                             squeeze=False)
    for r, (topic, idx) in enumerate(zip(topics, top_idx)):
        ax = axes[r][0]
        ax.axis("off")
        words = "\n".join(topic["words"][:6])
        ax.text(0.0, 0.5, f"topic {topic['topic']}\n{words}", va="center", ha="left", fontsize=8, family="monospace")
        for c in range(n_img):
            ax = axes[r][c + 1]
            ax.axis("off")
            if c < len(idx):
                ax.imshow(images[idx[c]])
    fig.suptitle("Topics: top words and the images the network scores highest", fontsize=10)
    return _save(fig, path)


def _thumb(path: str | None, size: int = 128) -> np.ndarray | None:
    if not path:
        return None
    try:
        from ..data.images import load_resized

        return load_resized(path, size=size)
    except Exception:  # a missing example image should not break the report
        return None


def retrieval_examples(examples: dict, path: Path, k: int = 5) -> Path | None:
    """One image query with its top texts, and one text query with its top images.

    ``examples`` is ``retrieval/<tag>/examples.json``: {"img2txt": [query, ...], "txt2img": [...]},
    each query {"query": {...}, "results": [{..., "relevant": bool}, ...]}.
    """
    i2t = (examples or {}).get("img2txt") or []
    t2i = (examples or {}).get("txt2img") or []
    if not i2t and not t2i:
        return None
    fig = plt.figure(figsize=(11, 5.6))
    if i2t:
        q = i2t[0]
        ax = fig.add_axes([0.02, 0.52, 0.18, 0.42])
        ax.axis("off")
        img = _thumb(q["query"].get("image_path"))
        if img is not None:
            ax.imshow(img)
        ax.set_title(f"image query ({q['query'].get('category', '?')})", fontsize=9)
        lines = []
        for rank, res in enumerate(q["results"][:k], 1):
            mark = "+" if res.get("relevant") else "-"
            snippet = textwrap.shorten(res.get("snippet", ""), 90)
            lines.append(f"{rank}. [{mark}] ({res.get('category', '?')}) {snippet}")
        fig.text(0.23, 0.92, "top texts  ([+] same category)", fontsize=9, weight="bold", va="top")
        fig.text(0.23, 0.86, "\n".join(lines), fontsize=8, va="top", family="monospace")
    if t2i:
        q = t2i[0]
        snippet = textwrap.fill(textwrap.shorten(q["query"].get("snippet", ""), 160), 40)
        fig.text(0.02, 0.42, f"text query ({q['query'].get('category', '?')}):\n{snippet}", fontsize=8, va="top")
        for c, res in enumerate(q["results"][:k]):
            ax = fig.add_axes([0.25 + c * 0.15, 0.05, 0.14, 0.36])
            ax.set_xticks([])
            ax.set_yticks([])
            img = _thumb(res.get("image_path"))
            if img is not None:
                ax.imshow(img)
            color = "#2ca02c" if res.get("relevant") else "#d62728"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3)
            ax.set_title(f"{c + 1}. {res.get('category', '?')}", fontsize=8)
    return _save(fig, path)

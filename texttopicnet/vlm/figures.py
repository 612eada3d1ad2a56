"""Report figures for the CNN-VLM (matplotlib, PNG), in the style of ``texttopicnet/report/figures.py``.

- :func:`maps_figure`: images with their saliency maps overlaid (one column per image);
- :func:`reconstructions_figure`: one row per topic (or target), its reconstruction frames;
- :func:`overlay`: one uint8 RGB image with a map blended in a colour map (PNG overlays);
- :func:`image_row`: a row of finished images (the report's maps figure, from the overlays).

Each function takes plain arrays and a path, writes the PNG atomically and returns the path,
or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from ..core.io import atomic_path


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def save_png(path: Path, rgb: np.ndarray) -> Path:
    """An RGB uint8 array as a PNG file (written atomically, folders made)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.55, cmap: str = "jet") -> np.ndarray:
    """uint8 RGB: ``image`` blended with ``saliency`` ([0, 1], same height/width) in ``cmap``."""
    sal = np.clip(np.asarray(saliency, dtype=np.float64), 0.0, 1.0)
    if sal.shape != image.shape[:2]:
        raise ValueError(f"map {sal.shape} and image {image.shape[:2]} differ in size")
    colour = matplotlib.colormaps[cmap](sal)[..., :3] * 255.0
    out = (1 - alpha) * image.astype(np.float64) + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def maps_figure(images: Sequence[np.ndarray], saliency: Sequence[np.ndarray], path: Path,
                titles: Sequence[str] | None = None, masks: Sequence[np.ndarray] | None = None,
                title: str = "CNN-VLM unnaturalness (saliency) maps") -> Path | None:
    """Row 1: the images (a pasted region outlined when ``masks`` are given); row 2: the maps overlaid."""
    n = min(len(images), len(saliency))
    if n == 0:
        return None
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j])
        if masks is not None and j < len(masks) and masks[j] is not None and np.asarray(masks[j]).any():
            axes[0, j].contour(np.asarray(masks[j], dtype=float), levels=[0.5], colors="white", linewidths=1.2)
        axes[1, j].imshow(overlay(images[j], saliency[j]))
        if titles is not None and j < len(titles):
            axes[0, j].set_title(str(titles[j]), fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def reconstructions_figure(rows: Mapping[str, Sequence[tuple[int, np.ndarray]]], path: Path,
                           title: str = "Reconstructions with the VLM prior", max_frames: int = 6) -> Path | None:
    """``rows``: label -> [(iteration, uint8 image), ...]; shows up to ``max_frames`` evenly spaced frames."""
    rows = {k: list(v) for k, v in rows.items() if v}
    if not rows:
        return None
    picked = {}
    for label, frames in rows.items():
        idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
        picked[label] = [frames[i] for i in idx]
    cols = max(len(v) for v in picked.values())
    fig, axes = plt.subplots(len(picked), cols, figsize=(1.9 * cols, 2.0 * len(picked)), squeeze=False)
    for r, (label, frames) in enumerate(picked.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(frames):
                it, img = frames[c]
                ax.imshow(img)
                ax.set_title(f"it {it}", fontsize=7)
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def image_row(images: Sequence[np.ndarray], path: Path, titles: Sequence[str] | None = None,
              title: str = "") -> Path | None:
    """One row of images (e.g. the saved map overlays), titled; ``None`` when there is none."""
    if not images:
        return None
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.5), squeeze=False)
    for j, img in enumerate(images):
        axes[0, j].imshow(img)
        axes[0, j].axis("off")
        if titles is not None and j < len(titles):
            axes[0, j].set_title(str(titles[j]), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)

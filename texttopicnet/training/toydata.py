"""A tiny generated training set whose pixels encode its labels (for tests and benchmarks).

Each of ``k`` topics has its own colour; an image's label is a sparse topic
distribution (one to three topics), and the image is painted in horizontal bands
of those topics' colours, each band's height proportional to the topic's weight,
plus pixel noise. A CNN can therefore learn the labels from pixels, quickly.

:func:`make_labels_run` writes the same files the text stage writes
(``RUN/labels/{labels.npy, index.txt}``), so the CNN stage runs on it unchanged::

    make_labels_run("runs/toy", n=64, k=8, seed=0)
    # python cnn/01_pack_images.py --out runs/toy && python cnn/02_train.py --out runs/toy ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..core.io import save_npy, write_lines


def topic_colours(k: int, seed: int = 0) -> np.ndarray:
    """``k`` well-spread RGB colours (uint8, k x 3)."""
    rng = np.random.default_rng(seed + 7919)
    hues = (np.arange(k) / k + rng.uniform(0, 1.0 / k)) % 1.0
    out = []
    for i, h in enumerate(hues):
        v = 230 if i % 2 == 0 else 140  # alternate brightness so neighbours in hue still differ
        rgb = np.array(Image.new("HSV", (1, 1), (int(h * 255), 220, v)).convert("RGB")).reshape(3)
        out.append(rgb)
    return np.stack(out).astype(np.uint8)


def make_sample(label: np.ndarray, colours: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 image painting ``label``'s topics as bands of their colours."""
    order = np.argsort(-label)
    img = np.zeros((size, size, 3), dtype=np.float32)
    row = 0
    for t in order:
        h = int(round(label[t] * size))
        if h <= 0:
            continue
        img[row:row + h] = colours[t]
        row += h
    img[row:] = colours[order[0]]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    labels = np.full((n, k), 1e-3, dtype=np.float64)
    for i in range(n):
        m = int(rng.integers(1, min(3, k) + 1))
        topics = rng.choice(k, size=m, replace=False)
        labels[i, topics] += rng.dirichlet(np.full(m, 2.0))
    return (labels / labels.sum(1, keepdims=True)).astype(np.float32)


def make_labels_run(run: str | Path, n: int = 64, k: int = 8, seed: int = 0, size: int = 96,
                    image_dir: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """Write ``n`` JPEGs and ``RUN/labels/{labels.npy, index.txt}``; returns (labels, paths)."""
    run = Path(run)
    rng = np.random.default_rng(seed)
    image_dir = Path(image_dir) if image_dir else run / "toy_images"
    image_dir.mkdir(parents=True, exist_ok=True)
    labels = make_labels(n, k, rng)
    colours = topic_colours(k, seed)
    paths = []
    for i in range(n):
        p = (image_dir / f"img_{i:05d}.jpg").resolve()
        Image.fromarray(make_sample(labels[i], colours, size, rng)).save(p, quality=90)
        paths.append(str(p))
    save_npy(run / "labels" / "labels.npy", labels)
    write_lines(run / "labels" / "index.txt", paths)
    return labels, paths

"""Which training images does the trained network score highest for each topic?

Runs the network's ``prob`` output (sigmoid of its head: CaffeNet's fc8) over a seeded sample
of the packed training images (the centre crop in the network's pixel convention: CaffeNet
227, the paper's test-time input; torchvision nets 224) and returns, per topic, the indices
of the highest-scoring images. Used for the report's topic figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def topic_top_images(packed_dir: Path, weights: Path, topics: list[int], k: int = 5, max_images: int = 400,
                     seed: int = 0, device: str = "cpu", batch_size: int = 32) -> tuple[np.ndarray, list[list[int]]]:
    """Return (thumbnails uint8 (M, 256, 256, 3), per-topic lists of ``k`` indices into them)."""
    from ..networks import backbones
    from ..training.augment import center_crop
    from ..weights.loading import load_network

    store = np.load(Path(packed_dir) / "images.npy", mmap_mode="r")
    rng = np.random.default_rng(seed)
    n = len(store)
    pick = np.sort(rng.choice(n, size=min(n, max_images), replace=False))
    net, _ = load_network(str(weights), device=device)
    net.eval()
    spec = backbones.spec_of(net)
    probs = []
    for start in range(0, len(pick), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(store[pick[start:start + batch_size]])).to(device)
        x = spec.preprocess(center_crop(batch, spec.crop))
        probs.append(torch.sigmoid(net(x)).float().cpu().numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, backbones.describe(net)["num_outputs"]), np.float32)
    thumbs = np.asarray(store[pick])
    # Rank by the topic's probability relative to the image's other topics, so that images the
    # network scores high for everything do not top every topic.
    rel = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    top = [list(np.argsort(-rel[:, t], kind="stable")[:k]) for t in topics]
    return thumbs, top

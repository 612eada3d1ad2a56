"""Saliency evaluation of CNN-VLM maps on an eye-fixation dataset (MIT1003, Toronto).

For each image: the VLM's saliency map (the release's post-processing, at the image's size,
after an optional downscale to ``max_side``), and the centre-bias map as a baseline, scored
with :func:`texttopicnet.vlm.metrics.saliency_scores` against the binary fixations (AUC-Judd,
NSS), the continuous fixation map (CC, KL, SIM; the binary one when a dataset has none) and,
for shuffled AUC, the union of the fixations of ``n_others`` other images drawn at random
(Borji's M = 10), their positions scaled to this image's size.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from tqdm import tqdm

from ..core.errors import DataError
from ..data.images import ImageReadError
from .datasets import POINT_THRESHOLD, FixationDataset, gray, load_item
from .metrics import saliency_scores
from .saliency import center_bias

METRICS = ("auc_judd", "sauc", "nss", "cc", "kl", "sim")


def fixation_points(ds: FixationDataset, items, skipped: Counter, progress: bool = True) -> dict[str, np.ndarray]:
    """name -> (k, 2) fixation positions as fractions of the image's height and width."""
    out = {}
    for item in tqdm(items, desc="reading fixations", unit="img", disable=not progress):
        try:
            if item.fixations is not None:
                fix = gray(item.fixations) > POINT_THRESHOLD
            else:
                fix = np.asarray(ds.points[item.points_index]) > 0
        except ImageReadError as exc:
            skipped[f"fixations_{exc.reason}"] += 1
            continue
        ys, xs = np.nonzero(fix)
        if len(ys):
            out[item.name] = np.stack([(ys + 0.5) / fix.shape[0], (xs + 0.5) / fix.shape[1]], axis=1)
    return out


def others_map(points: dict[str, np.ndarray], names: list[str], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for n in names:
        p = points[n]
        ys = np.clip((p[:, 0] * shape[0]).astype(int), 0, shape[0] - 1)
        xs = np.clip((p[:, 1] * shape[1]).astype(int), 0, shape[1] - 1)
        m[ys, xs] = True
    return m


def evaluate_dataset(model, ds: FixationDataset, layer: str, limit: int = 0, n_others: int = 10, seed: int = 0,
                     progress: bool = True, prepare=None) -> dict:
    """Per-image scores of ``{"vlm", "center_bias"}`` and their means; ``prepare(img)`` resizes an image."""
    items = ds.items[:limit] if limit else ds.items
    skipped: Counter = Counter(ds.skipped)
    points = fixation_points(ds, ds.items, skipped, progress)
    rng = np.random.default_rng(seed)
    rows = []
    for item in tqdm(items, desc=f"saliency on {ds.name}", unit="img", disable=not progress):
        if item.name not in points:
            skipped["no_fixations"] += 1
            continue
        try:
            data = load_item(ds, item)
        except ImageReadError as exc:
            skipped[exc.reason] += 1
            continue
        except DataError:
            skipped["size_mismatch"] += 1
            continue
        img = prepare(data["image"]) if prepare is not None else data["image"]
        sal = model.saliency(img[None], layer)[1][0]
        fix = data["fixations"]
        pool = [n for n in points if n != item.name]
        picked = [pool[j] for j in rng.choice(len(pool), min(n_others, len(pool)), replace=False)] if pool else []
        others = others_map(points, picked, fix.shape) if picked else None
        row = {"name": item.name}
        for tag, m in (("vlm", sal), ("center_bias", center_bias(fix.shape))):
            row[tag] = saliency_scores(m, fix, others if others is not None and others.any() else None,
                                       density_map=data["density"], seed=seed)
        rows.append(row)
    if not rows:
        raise DataError(f"{ds.root}: no image could be scored ({dict(skipped)})")
    summary = {}
    for tag in ("vlm", "center_bias"):
        summary[tag] = {m: float(np.mean([r[tag][m] for r in rows if m in r[tag]]))
                        for m in METRICS if any(m in r[tag] for r in rows)}
    return {"dataset": ds.name, "layer": layer, "images": len(rows), "summary": summary, "rows": rows,
            "skipped": dict(skipped), "n_others": n_others, "seed": seed}

"""Search: dot-product ranking (chunked, 100k+ databases), query expansion, CAM-box re-ranking.

- :func:`rank` orders a database by dot product with each query (descriptors are L2-normalised,
  so this is cosine similarity, as the authors' ``np.dot``), in query and database chunks;
  ties keep database order. :func:`top_k` keeps only the best ``k`` per query (argpartition
  per chunk, merged), for large databases.
- :func:`expand_query`: the sum of the top-``n`` database descriptors, L2-normalised (the
  authors' ``expand_query``; the query's own descriptor is not added).
- Re-ranking (:func:`rerank`), the paper's parameters as defaults: the top ``R`` images are
  described again from their maps with the query's first 6 topics; the heat map is the mean of
  the CAMs of the query's first 2 topics; at each threshold 1 %, 10 %, 20 %, 30 % of its maximum
  the bounding box of the largest connected component (8-connectivity, counted in cells; the
  authors measured OpenCV contour areas) gives a region; boxes smaller than 5 x 5 cells are
  dropped; an image's score is the best dot product between the query's 6-topic descriptor and
  its regions' descriptors (images with no region keep the authors' -10: after the others).
  With query expansion after re-ranking, the top-R descriptors are those of their best regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .descriptors import PCAWhitening, describe_region, l2_normalize

NO_REGION_SCORE = -10.0  # the authors' initial score: an image without a usable box goes after the others


def rank(queries: np.ndarray, db: np.ndarray, chunk: int = 64) -> np.ndarray:
    """(Q, D), (N, D) -> (Q, N) database indices by decreasing dot product (stable on ties)."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    db = np.asarray(db, dtype=np.float32)
    out = np.empty((queries.shape[0], db.shape[0]), dtype=np.int64)
    for s in range(0, queries.shape[0], chunk):
        sims = queries[s:s + chunk] @ db.T
        out[s:s + chunk] = np.argsort(-sims, axis=1, kind="stable")
    return out


def top_k(queries: np.ndarray, db: np.ndarray, k: int, db_chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), each (Q, k): the ``k`` best database items per query, best first.

    The database is scanned in chunks (memory ``Q x db_chunk``); ties go to the lower index.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = db.shape[0]
    k = min(int(k), n)
    best_i = np.zeros((queries.shape[0], 0), dtype=np.int64)
    best_s = np.zeros((queries.shape[0], 0), dtype=np.float32)
    for s in range(0, n, db_chunk):
        sims = queries @ np.asarray(db[s:s + db_chunk], dtype=np.float32).T
        idx = np.broadcast_to(np.arange(s, s + sims.shape[1]), sims.shape)
        cand_s = np.concatenate([best_s, sims], axis=1)
        cand_i = np.concatenate([best_i, idx], axis=1)
        keep = min(k, cand_s.shape[1])
        part = np.argpartition(-cand_s, keep - 1, axis=1)[:, :keep] if keep < cand_s.shape[1] else \
            np.broadcast_to(np.arange(cand_s.shape[1]), cand_s.shape)
        best_s = np.take_along_axis(cand_s, part, 1)
        best_i = np.take_along_axis(cand_i, part, 1)
    order = np.lexsort((best_i, -best_s), axis=1)
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_s, order, 1)


def expand_query(db: np.ndarray, ranking: Sequence[int], n: int,
                 replaced: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """L2 of the sum of the top-``n`` database descriptors (``replaced``: index -> descriptor to use instead)."""
    replaced = replaced or {}
    rows = [replaced[i] if i in replaced else np.asarray(db[i], dtype=np.float32) for i in list(ranking)[:n]]
    return l2_normalize(np.sum(rows, axis=0))


# ------------------------------------------------------------------------------------ CAM boxes

def components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean grid: labels 1..m (0 = background), numbered in raster
    order of each component's first cell (``scipy.ndimage.label`` with a 3 x 3 structure)."""
    from scipy import ndimage

    lab, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), dtype=bool))
    return lab.astype(np.int64)


def largest_component_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive ends, of the largest 8-connected component (ties: first in raster
    order); None for an empty mask."""
    lab = components(mask)
    if lab.max() == 0:
        return None
    sizes = np.bincount(lab.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    ys, xs = np.nonzero(lab == best)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def cam_boxes(heat: np.ndarray, thresholds: Sequence[float] = (0.01, 0.1, 0.2, 0.3),
              min_size: int = 5) -> list[tuple[int, int, int, int]]:
    """The regions of one heat map: the largest component above each ``threshold x max``, kept when
    at least ``min_size`` cells wide and high (the authors' 1/10/20/30 % and 5 x 5)."""
    heat = np.asarray(heat, dtype=np.float64)
    peak = heat.max() if heat.size else 0.0
    boxes = []
    if peak <= 0:
        return boxes
    for th in thresholds:
        box = largest_component_box(heat > th * peak)
        if box and box[2] - box[0] >= min_size and box[3] - box[1] >= min_size:
            boxes.append(box)
    return boxes


@dataclass(frozen=True)
class RerankConfig:
    top: int = 1000                 # R: the paper's R1000
    classes: int = 6                # the query's topics used to describe regions (authors' num_cams_re)
    heat_classes: int = 2           # heat map = mean of the CAMs of the first 2 of them
    thresholds: tuple[float, ...] = (0.01, 0.1, 0.2, 0.3)
    min_size: int = 5               # cells


def rerank(query_desc: np.ndarray, candidates: Sequence[int], maps: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
           classes: Sequence[int], pca: PCAWhitening | None, cfg: RerankConfig = RerankConfig()
           ) -> tuple[list[int], dict[int, np.ndarray], np.ndarray]:
    """Reorder ``candidates`` (database indices, first-stage order) by their best CAM region.

    ``maps(i)`` gives the features (C, h, w) and normalised CAMs of all K topics of image ``i``;
    ``classes`` are the query's topics, best first. Returns (new order, best-region descriptor per
    re-described image, scores in the new order); ties keep the first-stage order.
    """
    classes = list(classes)[:cfg.classes]
    heat_idx = classes[:cfg.heat_classes]
    scores = np.full(len(candidates), NO_REGION_SCORE, dtype=np.float64)
    descs: dict[int, np.ndarray] = {}
    for pos, i in enumerate(candidates):
        feats, cams = maps(int(i))
        heat = cams[heat_idx].mean(dim=0).numpy()
        for box in dict.fromkeys(cam_boxes(heat, cfg.thresholds, cfg.min_size)):  # equal boxes: described once
            d = describe_region(feats, cams, classes, pca, box)
            s = float(np.dot(query_desc, d))
            if s > scores[pos]:
                scores[pos] = s
                descs[int(i)] = d
    order = np.argsort(-scores, kind="stable")
    return [int(candidates[o]) for o in order], descs, scores[order]

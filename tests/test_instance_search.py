"""Ranking, query expansion, CAM boxes and re-ranking against plain implementations (a flood fill for components)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texttopicnet.instance import descriptors as D
from texttopicnet.instance import search as S


def test_rank_and_top_k_match_a_plain_sort():
    rng = np.random.default_rng(0)
    db = D.l2_normalize(rng.normal(size=(300, 16)))
    db[10] = db[20]  # a tie: the lower index first
    q = D.l2_normalize(rng.normal(size=(7, 16)))
    q[0] = db[10]
    order = S.rank(q, db, chunk=3)
    for i in range(7):
        sims = [float(np.dot(q[i], d)) for d in db]
        plain = sorted(range(300), key=lambda j: (-sims[j], j))
        assert order[i].tolist() == plain
    idx, scores = S.top_k(q, db, 25, db_chunk=64)
    assert idx.tolist() == order[:, :25].tolist()
    assert scores == pytest.approx(np.take_along_axis(q @ db.T, idx, 1))


def test_query_expansion_is_the_normalised_sum_of_the_top_results():
    rng = np.random.default_rng(1)
    db = D.l2_normalize(rng.normal(size=(20, 5)))
    ranking = [4, 2, 9, 0]
    s = db[4] + db[2] + db[9]
    assert S.expand_query(db, ranking, 3) == pytest.approx(s / np.linalg.norm(s), abs=1e-6)
    swap = np.ones(5, dtype=np.float32)
    s = db[4] + swap + db[9]
    assert S.expand_query(db, ranking, 3, {2: swap}) == pytest.approx(s / np.linalg.norm(s), abs=1e-6)


def plain_components(mask):
    """Flood fill from each unlabelled cell in raster order, 8 neighbours (a breadth-first search)."""
    h, w = mask.shape
    lab = np.zeros((h, w), dtype=int)
    n = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not lab[y, x]:
                n += 1
                lab[y, x] = n
                todo = [(y, x)]
                while todo:
                    cy, cx = todo.pop()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not lab[ny, nx]:
                                lab[ny, nx] = n
                                todo.append((ny, nx))
    return lab


@pytest.mark.parametrize("seed", range(25))
def test_components_and_largest_box_match_a_plain_flood_fill(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((int(rng.integers(1, 14)), int(rng.integers(1, 14)))) < rng.uniform(0.2, 0.7)
    ours = S.components(mask)
    ref = plain_components(mask)
    assert np.array_equal(ours, ref)  # same components, same raster numbering
    box = S.largest_component_box(mask)
    n = ref.max()
    if n == 0:
        assert box is None
        return
    sizes = [(ref == lab).sum() for lab in range(1, n + 1)]
    first = int(np.argmax(sizes)) + 1  # ties: the first in raster order
    ys, xs = np.nonzero(ref == first)
    assert box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_cam_boxes_thresholds_and_minimum_size():
    heat = np.zeros((20, 20))
    heat[2:12, 3:15] = 0.5     # a 10 x 12 plateau
    heat[5:8, 6:9] = 1.0       # its peak
    heat[15:19, 15:19] = 0.05  # a small far blob, above 1 % only
    boxes = S.cam_boxes(heat, (0.01, 0.1, 0.6), min_size=5)
    # 1 %: the plateau is the largest component; 10 %: the same; 60 %: only the 3 x 3 peak, too small
    assert boxes == [(3, 2, 15, 12), (3, 2, 15, 12)]
    assert S.cam_boxes(np.zeros((4, 4))) == []


def plain_rerank(qdesc, cands, maps, classes, pca, ths, min_size):
    """The authors' compute_scores_cams: per image, best region score; -10 without a region."""
    out = []
    for i in cands:
        feats, cams = maps(i)
        heat = cams[classes[:2]].mean(0).numpy()
        best = -10.0
        for th in ths:
            m = heat > th * heat.max()
            lab = plain_components(m)
            n = lab.max()
            if n == 0:
                continue
            sizes = np.bincount(lab.ravel())[1:]
            ys, xs = np.nonzero(lab == int(np.argmax(sizes)) + 1)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            if x1 - x0 < min_size or y1 - y0 < min_size:
                continue
            f, c = feats[:, y0:y1, x0:x1], cams[classes, y0:y1, x0:x1]
            vec = D.class_vectors(f[None], c[None])[0].numpy()
            acc = np.zeros(pca.dim if pca else vec.shape[1])
            for v in vec:
                t = pca.transform(v[None])[0] if pca is not None and np.any(v) else v
                acc += t / max(np.linalg.norm(t), 1e-12)
            d = acc / np.linalg.norm(acc)
            best = max(best, float(np.dot(qdesc, d)))
        out.append(best)
    return out


def test_rerank_orders_candidates_by_their_best_region():
    rng = np.random.default_rng(3)
    store = {}
    for i in range(6):
        f = torch.from_numpy(np.maximum(rng.normal(size=(8, 12, 14)), 0).astype(np.float32))
        raw = torch.from_numpy(rng.normal(size=(5, 12, 14)).astype(np.float32))
        raw[:, 2:10, 3:11] += 2.0  # an object somewhere
        store[i] = (f, D.normalize_cams(raw))
    pca = D.PCAWhitening.fit(rng.normal(size=(40, 8)), 6)
    qdesc = D.l2_normalize(rng.normal(size=6))
    classes = [3, 1, 4]
    cfg = S.RerankConfig(top=6, classes=3, heat_classes=2, thresholds=(0.01, 0.1, 0.2, 0.3), min_size=5)
    cands = [5, 1, 0, 3, 2, 4]
    order, descs, scores = S.rerank(qdesc, cands, store.__getitem__, classes, pca, cfg)
    ref = plain_rerank(qdesc, cands, store.__getitem__, classes, pca, cfg.thresholds, cfg.min_size)
    expect = [c for _, c in sorted(zip(ref, cands), key=lambda t: -t[0])]
    assert order == expect
    assert sorted(scores.tolist(), reverse=True) == pytest.approx(sorted(ref, reverse=True), abs=1e-5)
    assert set(descs) <= set(cands)
    for i, d in descs.items():
        assert float(np.dot(qdesc, d)) == pytest.approx(ref[cands.index(i)], abs=1e-5)

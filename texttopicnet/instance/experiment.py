"""The paper's table on stored descriptors: raw sum pooling, offline / online aggregation, + QE, + re-ranking.

Methods (registry :data:`METHODS`; a row name lists its steps):

- ``sum_pool``: raw sum pooling of the features (database: whole image; query: its box), L2, no PCA;
- ``offline``: database images aggregate their own top-N_C topics (precomputed descriptors);
- ``online``: every database image re-aggregated with the query's top-N_C topics;
- ``+qe``: query expansion with the top ``qe`` results (paper: 5);
- ``+rerank``: CAM-box re-ranking of the top R (paper: 1000), then (``+rerank+qe``) query expansion
  with the top results' region descriptors.

The query descriptor always aggregates the query's own top-N_C topics (from the crop), computed
on its box. PCA whitening is fitted on the partner dataset (:func:`fit_pca`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .descriptors import PCAWhitening, aggregate, pca_training_vectors, top_classes
from .extraction import Store
from .queries import QueryStore
from .search import RerankConfig, expand_query, rank, rerank

PCA_DIM = 512          # the paper's PCA dimension (capped at the feature size)
PCA_CLASSES = 1        # the authors' num_classes_pca: each image's top-1 class vector
N_CLASSES = 64         # the paper's N_C (offline 64; online aggregation's default in the authors' code)
QE = 5                 # the paper's QE5


@dataclass(frozen=True)
class SearchConfig:
    classes: int = N_CLASSES
    qe: int = QE
    rerank: RerankConfig = field(default_factory=RerankConfig)


def fit_pca(partner: Store, dim: int = PCA_DIM, per_image: int = PCA_CLASSES) -> PCAWhitening:
    """PCA whitening fitted on the partner dataset's top class vectors (Paris for Oxford and back)."""
    return PCAWhitening.fit(pca_training_vectors(partner.class_vectors, partner.scores, per_image), dim)


class Context:
    """One dataset's stores (its database, plus distractors), the PCA and the settings."""

    def __init__(self, db: Store | list[Store], queries: QueryStore, pca: PCAWhitening | None, cfg: SearchConfig):
        self.stores = db if isinstance(db, list) else [db]
        self.q, self.pca, self.cfg = queries, pca, cfg
        self.offsets = np.cumsum([0] + [len(s) for s in self.stores])
        self.sum_pool = np.concatenate([s.sum_pool for s in self.stores])
        self._offline: np.ndarray | None = None

    def maps(self, i: int):
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.stores[k].maps(i - int(self.offsets[k]))

    def query_classes(self, qi: int, n: int | None = None) -> np.ndarray:
        return top_classes(self.q.crop_scores[qi], n or self.cfg.classes)

    def query_desc(self, qi: int, n: int | None = None) -> np.ndarray:
        cls = self.query_classes(qi, n)
        return aggregate(self.q.class_vectors[qi][None], cls, self.pca)[0]

    def offline_db(self) -> np.ndarray:
        if self._offline is None:
            self._offline = np.concatenate([aggregate(s.class_vectors, top_classes(s.scores, self.cfg.classes),
                                                      self.pca) for s in self.stores])
        return self._offline

    def online_db(self, qi: int) -> np.ndarray:
        cls = self.query_classes(qi)
        return np.concatenate([aggregate(s.class_vectors, cls, self.pca) for s in self.stores])


def _sum_pool(ctx: Context, qi: int, steps) -> list[int]:
    return rank(ctx.q.sum_pool[qi], ctx.sum_pool)[0].tolist()


def _cam_search(ctx: Context, qi: int, steps: tuple[str, ...]) -> list[int]:
    db = ctx.online_db(qi) if "online" in steps else ctx.offline_db()
    order = rank(ctx.query_desc(qi), db)[0].tolist()
    replaced: dict[int, np.ndarray] = {}
    if "rerank" in steps and ctx.cfg.rerank.top > 0:
        r = ctx.cfg.rerank
        q6 = ctx.query_desc(qi, r.classes)
        head, replaced, _ = rerank(q6, order[:r.top], ctx.maps, ctx.query_classes(qi, r.classes), ctx.pca, r)
        order = head + order[r.top:]
    if "qe" in steps and ctx.cfg.qe > 0:
        expanded = expand_query(db, order, ctx.cfg.qe, replaced)
        order = rank(expanded, db)[0].tolist()
    return order


METHODS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "sum_pool": (_sum_pool, ()),
    "offline": (_cam_search, ("offline",)),
    "online": (_cam_search, ("online",)),
    "offline+qe": (_cam_search, ("offline", "qe")),
    "online+qe": (_cam_search, ("online", "qe")),
    "offline+rerank": (_cam_search, ("offline", "rerank")),
    "offline+rerank+qe": (_cam_search, ("offline", "rerank", "qe")),
    "online+rerank+qe": (_cam_search, ("online", "rerank", "qe")),
}
TABLE_ROWS = tuple(METHODS)


def run_method(ctx: Context, method: str, db_ids: list[str]) -> dict[str, list[str]]:
    """Rankings (query name -> database ids) of ``method`` for every stored query."""
    fn, steps = METHODS[method]
    return {name: [db_ids[i] for i in fn(ctx, qi, steps)] for qi, name in enumerate(ctx.q.names)}


def config_dict(cfg: SearchConfig) -> dict:
    return asdict(cfg)


def evaluate_dataset(ds, revisited, ctx: Context, db_ids: list[str], methods=TABLE_ROWS, progress: bool = True) -> dict:
    """Run ``methods`` on one dataset: classic mAP (or E/M/H for a revisited dataset) per method, and
    the revisited E/M/H of the same rankings when ``revisited`` (same database) is given."""
    from tqdm import tqdm

    known = {q.name for q in ds.queries}
    stored = set(ctx.q.names)
    if stored - known:
        raise ValueError(f"stored queries {sorted(stored - known)[:3]} are not in {ds.name}: re-run extraction")
    out = {}
    for method in tqdm(methods, desc=f"{ds.name} methods", unit="method", disable=not progress):
        rankings = run_method(ctx, method, db_ids)
        # Queries whose image could not be read have no ranking: evaluate the others.
        sub = type(ds)(ds.name, ds.root, ds.image_ids, ds.image_paths, [q for q in ds.queries if q.name in rankings],
                       ds.protocol, ds.counts)
        res = sub.evaluate(rankings)
        entry = {"map": res["map"]} if ds.protocol == "oxford" else {"revisited": res}
        if ds.protocol == "oxford":
            entry["aps"] = res["aps"]
        if revisited is not None:
            by_image = {q.image_id: r for q, r in ((q, rankings[q.name]) for q in sub.queries)}
            rq = [q for q in revisited.queries if q.image_id in by_image]
            rsub = type(revisited)(revisited.name, revisited.root, revisited.image_ids, revisited.image_paths, rq,
                                   "revisited", revisited.counts)
            entry["revisited"] = rsub.evaluate({q.name: by_image[q.image_id] for q in rq})
        out[method] = entry
    return out

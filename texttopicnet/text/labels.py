"""Per-image topic labels: the topic distribution of the article each training image illustrates.

The topic vector is inferred once per unique article (images of one article share it;
the original re-processed the article for every image), in batches of articles spread
over worker processes that each load the model once. An article with no topic evidence
is excluded, with its images, and counted by reason:

- ``unreadable``: the article file cannot be read any more;
- ``empty_after_preprocessing``: no token survives preprocessing (e.g. only numbers,
  stop words or markup);
- ``no_dictionary_words``: tokens, but none in the LDA dictionary;
- ``all_topics_below_cutoff``: with the release's rows, no topic reaches the model's
  ``minimum_probability`` (possible only with more than 100 topics).

It is never given a NaN or a silent uniform label.

Spaces other than LDA (lda/03 ``--space``): the article vectors come from
``texttopicnet.text.spaces.articles.embed_articles`` and :func:`vector_targets` turns the
kept ones into training targets (``targets.make_targets``: ``minshift_l2`` by default, or
``minshift_max``); a vector whose target is all zero (a constant vector) is excluded as
``zero_target``. :func:`assemble` then takes the transform's checker
(``check=lambda y: targets.check_targets(y, name)``): L2-normalised rows sum to more than 1.

Rows (``rows``, :data:`texttopicnet.text.topics.ROW_MODES`): ``"release"`` (default) is the
release's ``get_document_topics(bow, minimum_probability=None)`` written into a K-vector:
topics under the model's 0.01 cut-off are 0 and nothing is renormalised, so a row sums to
a little less than 1. ``"dense"`` keeps every topic (rows sum to 1). The contract every
consumer relies on, enforced by :func:`check_labels`: float32, finite, non-negative, each
row's sum in (0, 1] (1e-5 tolerance above 1).

Use::

    from texttopicnet.text import labels
    vecs, status = labels.infer_articles(article_paths, "runs/demo/lda", workers=2)
    result = labels.assemble(pairs, article_paths, vecs, status)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core.errors import DataError

EXCLUSION_REASONS = ("unreadable", "empty_after_preprocessing", "no_dictionary_words", "all_topics_below_cutoff",
                     "zero_target")
SUM_TOLERANCE = 1e-5

_WORKER: dict = {}


def _init_worker(model_path: str, lemmatizer: str | None, seed: int, rows: str = "release",
                 stop_words: str | None = None) -> None:
    from ..data.readers.imageclef import read_article
    from .topics import TopicModel

    tm = TopicModel.load(model_path, lemmatizer=lemmatizer, stop_words=stop_words)
    _WORKER.update(model=tm, prep=tm.preprocessor(), read=read_article, seed=seed, rows=rows)


def _label_batch(task: tuple[int, list[str]]) -> tuple[int, np.ndarray, list[str | None]]:
    start, paths = task
    tm, prep, read, seed = _WORKER["model"], _WORKER["prep"], _WORKER["read"], _WORKER["seed"]
    out = np.full((len(paths), tm.num_topics), np.nan, dtype=np.float32)
    status: list[str | None] = []
    bows, rows = [], []
    for j, path in enumerate(paths):
        try:
            raw = read(path)
        except (OSError, ValueError):
            status.append("unreadable")
            continue
        tokens = prep(raw)
        if not tokens:
            status.append("empty_after_preprocessing")
            continue
        bow = tm.bow(tokens)
        if not bow:
            status.append("no_dictionary_words")
            continue
        status.append(None)
        bows.append(bow)
        rows.append(j)
    if bows:
        vecs = tm.infer_bow(bows, empty="raise", seed=seed, rows=_WORKER["rows"])
        for j, vec in zip(rows, vecs):
            if vec.sum() > 0:
                out[j] = vec
            else:
                status[j] = "all_topics_below_cutoff"
    return start, out, status


def infer_articles(articles: Sequence[str | Path], model_path: str | Path, workers: int = 1,
                   batch_size: int = 64, seed: int = 0, lemmatizer: str | None = None,
                   progress: bool = True, rows: str = "release",
                   stop_words: str | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Topic vectors of articles: float32 ``(A, K)`` (NaN rows where excluded) and a status per article.

    ``status[i]`` is ``None`` for a usable vector, else one of :data:`EXCLUSION_REASONS`.
    ``lemmatizer=None`` / ``stop_words=None`` use those the model was trained with
    (recorded by lda/02; the release's for a foreign model). ``rows``: see the module docstring.
    """
    from .preprocess import mp_context

    model_path = str(model_path)
    tasks = [(i, [str(a) for a in articles[i:i + batch_size]]) for i in range(0, len(articles), batch_size)]
    vectors: np.ndarray | None = None
    status: list[str | None] = [None] * len(articles)
    bar = tqdm(total=len(articles), desc="inferring topics", unit="article", disable=not progress)

    def collect(result):
        nonlocal vectors
        start, vecs, st = result
        if vectors is None:
            vectors = np.full((len(articles), vecs.shape[1]), np.nan, dtype=np.float32)
        vectors[start:start + len(st)] = vecs
        status[start:start + len(st)] = st
        bar.update(len(st))

    try:
        if workers <= 1 or len(tasks) <= 1:
            _init_worker(model_path, lemmatizer, seed, rows, stop_words)
            for t in tasks:
                collect(_label_batch(t))
        else:
            with mp_context().Pool(min(workers, len(tasks)), initializer=_init_worker,
                                   initargs=(model_path, lemmatizer, seed, rows, stop_words)) as pool:
                for result in pool.imap_unordered(_label_batch, tasks):
                    collect(result)
    finally:
        bar.close()
    if vectors is None:
        raise DataError("no articles to label")
    return vectors, status


@dataclass
class LabelSet:
    labels: np.ndarray          # float32 (N, K)
    images: list[str]           # N absolute image paths, aligned with rows
    articles: list[str]         # N article paths, aligned with rows
    counts: dict


def assemble(pairs: Sequence, articles: Sequence[str | Path], vectors: np.ndarray,
             status: Sequence[str | None], check: Callable[[np.ndarray], None] | None = None) -> LabelSet:
    """One row per image (in ``pairs`` order) from its article's vector; excluded articles dropped, counted.

    ``check`` verifies the rows (raises ``DataError``); default :func:`check_labels`, the topic rows' contract.
    """
    where = {str(a): i for i, a in enumerate(articles)}
    rows, images, arts = [], [], []
    excluded_images: Counter = Counter()
    for p in pairs:
        i = where.get(str(p.article_path))
        if i is None:
            raise DataError(f"{p.article_path}: article of {p.image_path} was not labelled")
        if status[i] is not None:
            excluded_images[status[i]] += 1
            continue
        rows.append(i)
        images.append(str(p.image_path))
        arts.append(str(p.article_path))
    if not rows:
        raise DataError("every article was excluded (empty after preprocessing or no dictionary word): no labels")
    labels = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    excluded_articles = Counter(s for s in status if s is not None)
    counts = {
        "images_in": len(pairs), "images_labelled": len(images), "articles_in": len(articles),
        "articles_labelled": len(articles) - sum(excluded_articles.values()),
        "excluded_articles": {r: excluded_articles.get(r, 0) for r in EXCLUSION_REASONS},
        "excluded_images": {r: excluded_images.get(r, 0) for r in EXCLUSION_REASONS},
        "excluded_article_paths": {r: [str(articles[i]) for i, s in enumerate(status) if s == r][:100]
                                   for r in EXCLUSION_REASONS},
    }
    (check or check_labels)(labels)
    return LabelSet(labels, images, arts, counts)


def vector_targets(vectors: np.ndarray, status: Sequence[str | None], target: str
                   ) -> tuple[np.ndarray, list[str | None]]:
    """Training targets of the usable article vectors (``targets.make_targets``), NaN elsewhere.

    Returns ``(targets, status)``; a usable vector whose target row is all zero gets the
    status ``zero_target`` (a row with nothing to learn; never a silent zero label).
    """
    from .spaces.targets import make_targets

    status = list(status)
    out = np.full(vectors.shape, np.nan, dtype=np.float32)
    kept = np.array([s is None for s in status], dtype=bool)
    if kept.any():
        out[kept] = make_targets(vectors[kept], target)
    for i in np.flatnonzero(kept):
        if not out[i].any():
            status[i] = "zero_target"
            out[i] = np.nan
    return out, status


def check_labels(labels: np.ndarray, tol: float = SUM_TOLERANCE) -> None:
    """Raise :class:`DataError` unless every row is finite, non-negative and sums to a value in (0, 1].

    Rows may sum to less than 1: the release's rows leave out topics under the 0.01 cut-off.
    """
    if labels.ndim != 2 or labels.dtype != np.float32:
        raise DataError(f"labels must be float32 (N, K), got {labels.dtype} {labels.shape}")
    if not np.isfinite(labels).all():
        raise DataError(f"{int((~np.isfinite(labels)).any(axis=1).sum())} label rows contain NaN/inf")
    if (labels < 0).any():
        raise DataError("negative topic probabilities in labels")
    sums = labels.astype(np.float64).sum(axis=1)
    if (sums <= 0).any():
        raise DataError(f"{int((sums <= 0).sum())} label rows are all zero")
    if (sums > 1.0 + tol).any():
        raise DataError(f"{int((sums > 1.0 + tol).sum())} label rows sum to more than 1 (max {sums.max():.6f})")


def interchange_json(label_set: LabelSet, root: Path | None) -> dict[str, list[float]]:
    """The original's ``training_labels{K}.json``: image path (relative to the collection root) -> K floats."""
    import os

    def key(p: str) -> str:
        if root is None:
            return p
        rel = os.path.relpath(p, root)
        return Path(rel).as_posix() if not rel.startswith("..") else p

    return {key(img): [float(x) for x in row] for img, row in zip(label_set.images, label_set.labels)}

"""Embedding the training articles with any saved text space, for the labels stage (lda/03 ``--space``).

The counterpart of ``texttopicnet.text.labels.infer_articles`` for every space: each
unique article is read, tokenised and embedded once, in batches over worker processes
that each load the space once. An article without a usable vector is excluded and given a
reason from ``labels.EXCLUSION_REASONS`` (``unreadable``, ``empty_after_preprocessing``,
``no_dictionary_words`` = tokens, but none the space knows); its row is NaN and
``labels.assemble`` drops it with its images. The vectors are the space's embeddings;
turn them into training targets with ``targets.make_targets(vectors[kept], name)``.

Use::

    from texttopicnet.text.spaces.articles import embed_articles
    vectors, status = embed_articles(article_paths, "runs/demo/space", workers=2)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...core.errors import DataError

_WORKER: dict = {}


def _init_worker(space_path: str, reader) -> None:
    from . import load_text_space

    if reader is None:
        from ...data.readers.imageclef import read_article as reader
    _WORKER.update(space=load_text_space(space_path, verify=False), read=reader)


def _embed_batch(task: tuple[int, list[str]]) -> tuple[int, np.ndarray, list[str | None]]:
    start, paths = task
    space, read = _WORKER["space"], _WORKER["read"]
    token_lists, status = [], []
    for path in paths:
        try:
            raw = read(path)
        except (OSError, ValueError):
            status.append("unreadable")
            token_lists.append([])
            continue
        tokens = space.tokenizer(raw)
        status.append(None if tokens else "empty_after_preprocessing")
        token_lists.append(tokens)
    vecs, empty = space.embed_tokens(token_lists, return_empty=True)
    vecs = vecs.copy()
    for j, is_empty in enumerate(empty):
        if is_empty:
            status[j] = status[j] or "no_dictionary_words"
            vecs[j] = np.nan
    return start, vecs, status


def embed_articles(articles: Sequence[str | Path], space_path: str | Path, workers: int = 1,
                   batch_size: int = 64, reader=None, progress: bool = True
                   ) -> tuple[np.ndarray, list[str | None]]:
    """float32 ``(A, dim)`` embeddings (NaN rows where excluded) and a status per article (None = kept).

    ``reader`` (a module-level function path -> text) defaults to ``imageclef.read_article``.
    """
    from ..preprocess import mp_context
    from . import load_text_space

    space_path = str(space_path)
    load_text_space(space_path)  # fail early, in this process, and verify the checksums once
    tasks = [(i, [str(a) for a in articles[i:i + batch_size]]) for i in range(0, len(articles), batch_size)]
    if not tasks:
        raise DataError("no articles to embed")
    vectors: np.ndarray | None = None
    status: list[str | None] = [None] * len(articles)
    bar = tqdm(total=len(articles), desc="embedding articles", unit="article", disable=not progress)

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
            _init_worker(space_path, reader)
            for t in tasks:
                collect(_embed_batch(t))
        else:
            with mp_context().Pool(min(workers, len(tasks)), initializer=_init_worker,
                                   initargs=(space_path, reader)) as pool:
                for result in pool.imap_unordered(_embed_batch, tasks):
                    collect(result)
    finally:
        bar.close()
    return vectors, status

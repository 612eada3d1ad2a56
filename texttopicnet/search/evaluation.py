"""Text->image retrieval protocols on a search index whose images carry labels (and tags).

MIRFlickr-25K, as LearnFromWebData evaluated it (``retrieval/retrieval_by_text_MIRFLICKR25K*.py``,
facts in ../shared/SEED_SYSTEMS.md, 002):

- ``mirflickr`` (one query per image): every image with at least one label is a query;
  its words are its tags and its labels (``plant_life`` is queried as ``plant``; other
  underscores split words; the strict ``<concept>_r1`` labels of our MIRFlickr reader count
  as the concept). The whole index is ranked, the query image included (as the release).
  Relevant: ``labels`` rule (default, the issue's and the related work's) = the image
  shares a label with the query image; ``release`` = the image's labels contain one of the
  query's words or labels (the release compared the query's tags *and* labels with the
  database labels: a tag such as ``sky`` also makes images labelled ``sky`` relevant).
- ``mirflickr_labels`` (one query per label, ``..._classes.py``): the label's name is the
  query; relevant = images with that label.
- AP over the full ranking (ties ranked at the end of their group,
  ``evaluation.metrics.retrieval_ap_rows``), mAP = mean over the queries.

InstaCities1M (``instacities``): one query per city, the city's name; precision at ``k``
(default 100, the related work's P@100) = share of the top ``k`` images from that city.

Query vectors (as the release built them): the *mean* of the words' vectors, words the
space does not know left out (a query with no known word is skipped and counted): LDA:
``p(topic | word)`` (``words.py``); word-vector spaces: the mean raw word vector, then the
training-target transform; other spaces: the space's embedding of the words joined.

Scores: ``l2`` (default, the release's): Euclidean distance with the index rows and the query
both normalised to sum 1 (the release normalised the database rows; its word2vec queries
were max-normalised instead, which we do not copy); ``space``: the index's own similarity
(KL for distributions, cosine for vectors), as the search engine ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.errors import UserError
from ..evaluation.metrics import chance_ap, retrieval_ap_rows
from .backends import prepare_queries, prepare_rows
from .words import raw_word_vectors, strategy, to_target

PROTOCOLS = ("mirflickr", "mirflickr_labels", "instacities")
SCORES = ("l2", "space")
RELEVANCE = ("release", "labels")
QUERY_WORD = {"plant_life": "plant"}  # the release queried this label by its first word
QUERY_BLOCK = 256


def label_set(categories: Sequence[str]) -> set[str]:
    """Labels of an image: ``<concept>_r1`` (strict annotation) counts as ``<concept>``."""
    return {c[:-3] if c.endswith("_r1") else c for c in categories}


def query_words(words: Sequence[str]) -> list[str]:
    out = []
    for w in words:
        w = QUERY_WORD.get(w, w)
        out.extend(p for p in w.replace("_", " ").split() if p)
    return out


def mean_query_vector(space, words: Sequence[str], target: str | None = None) -> tuple[np.ndarray | None, list[str]]:
    """(the query vector or None, unknown words) by the release's rule (module docstring)."""
    words = list(words)
    if not words:
        return None, []
    if strategy(space) in ("topic_word", "word_vectors"):
        vecs, unknown = raw_word_vectors(space, words)
        bad = set(unknown)
        keep = [i for i, w in enumerate(words) if w not in bad]
        if not keep:
            return None, unknown
        mean = vecs[keep].mean(axis=0, keepdims=True)
        return to_target(space, mean, target)[0], unknown
    vec, empty = space.embed([" ".join(words)], return_empty=True)
    if empty[0]:
        return None, words
    return to_target(space, vec, target)[0], []


def _distances(rows_prepared: np.ndarray, queries: np.ndarray, score: str, similarity: str) -> np.ndarray:
    if score == "l2":
        q = queries / np.maximum(queries.sum(axis=1, keepdims=True), 1e-12)
        # |x - q|^2 = |x|^2 - 2 x.q + |q|^2, rows already sum-normalised
        d2 = (rows_prepared ** 2).sum(axis=1)[None, :] - 2.0 * q @ rows_prepared.T + (q ** 2).sum(axis=1)[:, None]
        return np.sqrt(np.maximum(d2, 0.0))
    qp, const = prepare_queries(queries, similarity)
    return const[:, None] - (qp.astype(np.float64) @ rows_prepared.T)


def _prepare(embeddings: np.ndarray, score: str, similarity: str) -> np.ndarray:
    if score == "l2":
        x = np.asarray(embeddings, dtype=np.float64)
        s = x.sum(axis=1, keepdims=True)
        return np.divide(x, s, out=np.zeros_like(x), where=s > 0)
    return prepare_rows(embeddings, similarity).astype(np.float64)


def rank_queries(embeddings, similarity: str, queries: np.ndarray, relevant_fn, score: str = "l2",
                 block: int = QUERY_BLOCK):
    """Yield (query slice, distances (b, N), relevant (b, N)) block by block (memory stays bounded)."""
    if score not in SCORES:
        raise UserError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    rows = _prepare(embeddings, score, similarity)
    for s in range(0, len(queries), block):
        sl = slice(s, min(s + block, len(queries)))
        yield sl, _distances(rows, queries[sl], score, similarity), relevant_fn(sl)


def _label_matrix(label_sets: list[set[str]], vocab: dict[str, int]) -> np.ndarray:
    m = np.zeros((len(label_sets), len(vocab)), dtype=np.float32)
    for i, labels in enumerate(label_sets):
        for lab in labels:
            j = vocab.get(lab)
            if j is not None:
                m[i, j] = 1.0
    return m


def mirflickr(embeddings, labels: list[dict], space, similarity: str, *, per: str = "image", score: str = "l2",
              relevance: str = "labels", target: str | None = None, query_rows: Sequence[int] | None = None) -> dict:
    """The MIRFlickr-25K text->image protocol (module docstring). ``labels``: index labels.jsonl rows.

    ``per="image"`` (``mirflickr``) or ``"label"`` (``mirflickr_labels``); ``query_rows``
    limits the per-image queries to those rows (a sample), the database is always the whole index.
    """
    if relevance not in RELEVANCE:
        raise UserError(f"unknown relevance rule {relevance!r}; choose one of {', '.join(RELEVANCE)}")
    db_labels = [label_set(r.get("categories") or []) for r in labels]
    vocab = {lab: j for j, lab in enumerate(sorted(set().union(*db_labels)))}
    if not vocab:
        raise UserError("the index has no labels: build it from a manifest (or folder) with categories")
    db = _label_matrix(db_labels, vocab)
    specs = []  # (name, query words, relevance label set)
    if per == "image":
        rows = range(len(labels)) if query_rows is None else query_rows
        for i in rows:
            labs = db_labels[i]
            if not labs:
                continue
            tags = list(labels[i].get("tags") or [])
            words = query_words(tags + sorted(labs))
            rel = set(labs) | (set(tags) if relevance == "release" else set())
            specs.append((str(i), words, rel))
    elif per == "label":
        specs = [(lab, query_words([lab]), {lab}) for lab in vocab]
    else:
        raise UserError("per must be 'image' or 'label'")
    vectors, kept, skipped = [], [], []
    for name, words, rel in specs:
        v, _unknown = mean_query_vector(space, words, target)
        if v is None:
            skipped.append(name)
        else:
            vectors.append(v)
            kept.append((name, rel))
    if not kept:
        raise UserError(f"no query has a word the {getattr(space, 'name', '')} space knows ({len(skipped)} skipped)")
    q = np.stack(vectors)
    qrel = _label_matrix([r for _, r in kept], vocab)
    ap = np.zeros(len(kept))
    for sl, d, rel in rank_queries(embeddings, similarity, q, lambda sl: (qrel[sl] @ db.T) > 0, score):
        ap[sl] = retrieval_ap_rows(d, rel)
    n_rel = ((qrel @ db.T) > 0).sum(axis=1)
    per_label = {}
    for lab, j in vocab.items():
        mask = qrel[:, j] > 0 if per == "image" else np.array([name == lab for name, _ in kept])
        if mask.any():
            per_label[lab] = float(ap[mask].mean())
    return {"protocol": "mirflickr" if per == "image" else "mirflickr_labels", "score": score,
            "relevance": relevance, "map": float(ap.mean()), "n_queries": len(kept), "skipped_queries": len(skipped),
            "skipped_examples": skipped[:10], "n_images": int(len(labels)),
            "chance_map": float(chance_ap(n_rel, len(labels)).mean()), "per_label": per_label, "ap": ap}


def instacities(embeddings, labels: list[dict], space, similarity: str, *, cities: Sequence[str] | None = None,
                k: int = 100, score: str = "l2", target: str | None = None) -> dict:
    """P@k per city query (module docstring). ``cities`` default: the index's categories."""
    cats = [(r.get("categories") or [None])[0] for r in labels]
    cities = list(cities) if cities is not None else sorted({c for c in cats if c})
    if not cities:
        raise UserError("the index has no categories (cities)")
    k = min(int(k), len(cats))
    if k < 1:
        raise UserError("k must be >= 1")
    vectors, kept, skipped = [], [], []
    for city in cities:
        v, _ = mean_query_vector(space, query_words([city]), target)
        if v is None:
            skipped.append(city)
        else:
            vectors.append(v)
            kept.append(city)
    per_city = {c: None for c in cities}
    if kept:
        cat_arr = np.array(cats, dtype=object)
        q = np.stack(vectors)
        for sl, d, rel in rank_queries(embeddings, similarity, q,
                                       lambda sl: cat_arr[None, :] == np.array(kept[sl], dtype=object)[:, None], score):
            order = np.argsort(d, axis=1, kind="stable")[:, :k]
            hits = np.take_along_axis(rel, order, axis=1).sum(axis=1)
            for city, h in zip(kept[sl], hits):
                per_city[city] = float(h) / k
    got = [v for v in per_city.values() if v is not None]
    return {"protocol": "instacities", "score": score, "k": k, "mean_precision": float(np.mean(got)) if got else None,
            "per_city": per_city, "skipped_cities": skipped, "n_images": len(cats)}

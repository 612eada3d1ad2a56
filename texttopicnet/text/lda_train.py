"""Learning the LDA topic space: streamed bag-of-words corpus, gensim LDA, quality measures.

Pipeline (driven by ``lda/02_learn_lda.py``):

1. :func:`tokenize_articles`: every unique article is read and preprocessed once, in
   worker processes, and its tokens streamed to ``tokens.txt`` (one line per article)
   while a gensim ``Dictionary`` grows; memory holds the dictionary only. A finished
   tokens file (with its ``tokens.json`` sidecar) is reused when the stage is rerun, so
   an interrupted LDA run does not preprocess again.
2. :func:`build_bow_corpus`: ``filter_extremes(no_below, no_above)``, then the tokens
   file is streamed again into a MatrixMarket ``corpus.mm`` (documents with no
   dictionary word are left out and counted).
3. :func:`train_lda`: ``LdaMulticore`` (fast, not reproducible even with a seed) or,
   with ``reproducible=True``, single-process ``LdaModel`` seeded by ``seed``.
4. :func:`evaluate`: held-out perplexity (``2^-bound`` on articles never trained on)
   and topic coherence (gensim ``CoherenceModel``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from gensim.corpora import Dictionary, MmCorpus
from tqdm import tqdm

from ..core.errors import DataError
from ..core.io import atomic_open, read_json, write_json
from .preprocess import preprocess_many

TOKENS_NAME, TOKENS_META = "tokens.txt", "tokens.json"


def _articles_digest(articles: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for a in articles:
        h.update(str(a).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


@dataclass
class TokenStats:
    articles: int = 0
    unreadable: list[str] = field(default_factory=list)
    empty_after_preprocessing: list[str] = field(default_factory=list)
    tokens: int = 0
    reused: bool = False

    def as_dict(self) -> dict:
        return {"articles": self.articles, "tokens": self.tokens, "unreadable": len(self.unreadable),
                "empty_after_preprocessing": len(self.empty_after_preprocessing), "reused_tokens_file": self.reused}


def tokenize_articles(articles: Sequence[Path], work_dir: Path, lemmatizer: str, workers: int = 1,
                      reader=None, progress: bool = True, reuse: bool = True) -> tuple[Path, TokenStats]:
    """Preprocess each article once into ``work_dir/tokens.txt`` (line i = article i's tokens)."""
    if reader is None:
        from ..data.readers.imageclef import read_article as reader
    tokens_path, meta_path = work_dir / TOKENS_NAME, work_dir / TOKENS_META
    digest = _articles_digest(articles)
    if reuse and tokens_path.is_file() and meta_path.is_file():
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError):
            meta = {}
        if meta.get("articles_sha256") == digest and meta.get("lemmatizer") == lemmatizer:
            stats = TokenStats(articles=len(articles), unreadable=meta["unreadable"],
                               empty_after_preprocessing=meta["empty_after_preprocessing"],
                               tokens=meta["tokens"], reused=True)
            return tokens_path, stats
    stats = TokenStats(articles=len(articles))
    results = preprocess_many([str(a) for a in articles], lemmatizer=lemmatizer, workers=workers, reader=reader)
    with atomic_open(tokens_path, "w") as fh:
        for i, tokens, error in tqdm(results, total=len(articles), desc="preprocessing articles", unit="doc",
                                     disable=not progress):
            if tokens is None:
                stats.unreadable.append(f"{articles[i]}: {error}")
                tokens = []
            elif not tokens:
                stats.empty_after_preprocessing.append(str(articles[i]))
            stats.tokens += len(tokens)
            fh.write(" ".join(tokens) + "\n")
    write_json(meta_path, {"articles_sha256": digest, "lemmatizer": lemmatizer, "tokens": stats.tokens,
                           "unreadable": stats.unreadable,
                           "empty_after_preprocessing": stats.empty_after_preprocessing})
    return tokens_path, stats


def iter_tokens(tokens_path: Path) -> Iterator[list[str]]:
    with open(tokens_path, encoding="utf-8") as fh:
        for line in fh:
            yield line.split()


def build_dictionary(tokens_path: Path, no_below: int, no_above: float,
                     keep_n: int | None = None) -> tuple[Dictionary, int]:
    """Dictionary over the tokens file, then the paper's ``filter_extremes``. Returns (dict, size before)."""
    dictionary = Dictionary()
    batch: list[list[str]] = []
    for tokens in iter_tokens(tokens_path):
        batch.append(tokens)
        if len(batch) >= 1000:
            dictionary.add_documents(batch)
            batch = []
    if batch:
        dictionary.add_documents(batch)
    before = len(dictionary)
    if dictionary.num_docs == 0:
        raise DataError("no articles to build a dictionary from")
    dictionary.filter_extremes(no_below=no_below, no_above=no_above, keep_n=keep_n)
    if len(dictionary) == 0:
        raise DataError(f"the dictionary is empty after filter_extremes(no_below={no_below}, no_above={no_above}) "
                        f"over {dictionary.num_docs} articles: for a small corpus pass a smaller --no-below")
    return dictionary, before


def build_bow_corpus(tokens_path: Path, dictionary: Dictionary, articles: Sequence[Path], mm_path: Path
                     ) -> tuple[list[str], list[str]]:
    """Stream tokens -> bag of words -> ``mm_path`` (MatrixMarket + index), atomically.

    Returns ``(documents, no_dictionary_words)``: article paths aligned with the corpus rows,
    and articles left out because none of their words survived the dictionary filter.
    """
    documents: list[str] = []
    dropped: list[str] = []

    def bows():
        for i, tokens in enumerate(iter_tokens(tokens_path)):
            if not tokens:
                continue  # already counted as empty after preprocessing (or unreadable)
            bow = dictionary.doc2bow(tokens)
            if not bow:
                dropped.append(str(articles[i]))
                continue
            documents.append(str(articles[i]))
            yield bow

    tmp = mm_path.with_name(f".{mm_path.name}.tmp")
    try:
        MmCorpus.serialize(str(tmp), bows(), id2word=dictionary)
        os.replace(f"{tmp}.index", f"{mm_path}.index")
        os.replace(tmp, mm_path)
    finally:
        for p in (tmp, Path(f"{tmp}.index")):
            if p.exists():
                p.unlink()
    if not documents:
        raise DataError("no article has a word left in the dictionary; lower --no-below")
    return documents, dropped


class Subset:
    """A re-iterable view of a gensim corpus without some rows (the held-out articles)."""

    def __init__(self, corpus, exclude: set[int]):
        self.corpus, self.exclude = corpus, exclude
        self._len = len(corpus) - len(exclude)

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        for i, doc in enumerate(self.corpus):
            if i not in self.exclude:
                yield doc


def split_heldout(num_docs: int, fraction: float, seed: int, max_docs: int = 2000) -> list[int]:
    """Seeded choice of held-out corpus rows (none when the corpus is too small to spare any)."""
    if fraction <= 0 or num_docs < 10:
        return []
    n = min(max_docs, max(1, int(round(num_docs * fraction))))
    rng = np.random.RandomState(seed)
    return sorted(rng.choice(num_docs, size=n, replace=False).tolist())


def train_lda(corpus, dictionary: Dictionary, num_topics: int, passes: int, seed: int, workers: int,
              reproducible: bool, chunksize: int = 2000, iterations: int = 50):
    """gensim LDA as the paper ran it (symmetric prior, online updates). Returns (model, mode)."""
    from gensim.models import LdaModel, LdaMulticore

    common = dict(corpus=corpus, id2word=dictionary, num_topics=num_topics, passes=passes, chunksize=chunksize,
                  iterations=iterations, random_state=seed, eval_every=None)
    if reproducible or workers <= 1:
        return LdaModel(**common), "single-process LdaModel (reproducible)"
    # gensim's workers are extra processes beside the master: cores - 1 (its documented default).
    lda_workers = max(1, workers - 1)
    return LdaMulticore(workers=lda_workers, **common), f"LdaMulticore(workers={lda_workers})"


def evaluate(lda, dictionary: Dictionary, train_corpus, heldout: list, tokens_path: Path | None, total_docs: int,
             coherence: str = "u_mass", coherence_docs: int = 5000, topn: int = 10, seed: int = 0,
             workers: int = 1) -> dict:
    """Held-out perplexity and topic coherence, as stored in ``quality.json``."""
    from gensim.models import CoherenceModel

    out: dict = {"heldout_docs": len(heldout)}
    saved = lda.random_state
    lda.random_state = np.random.RandomState(seed)  # the bound's inference starts from random points
    try:
        if heldout:
            # total_docs scales the held-out documents' share of the bound to the corpus size, as
            # gensim does during training; without it the topic-word terms swamp a small sample.
            bound = float(lda.log_perplexity(heldout, total_docs=total_docs))
            out.update(heldout_per_word_bound=bound, heldout_perplexity=float(2.0 ** (-bound)))
        else:
            out.update(heldout_per_word_bound=None, heldout_perplexity=None,
                       heldout_note="corpus too small or --holdout 0: no held-out articles")
    finally:
        lda.random_state = saved
    topics = [[w for w, _ in lda.show_topic(t, topn=topn)] for t in range(lda.num_topics)]
    if coherence == "u_mass":
        cm = CoherenceModel(topics=topics, corpus=train_corpus, dictionary=dictionary, coherence="u_mass", topn=topn)
    else:
        texts = []
        for tokens in iter_tokens(tokens_path):
            if tokens:
                texts.append(tokens)
            if len(texts) >= coherence_docs:
                break
        cm = CoherenceModel(topics=topics, texts=texts, dictionary=dictionary, coherence=coherence, topn=topn,
                            processes=max(1, workers))
    per_topic = [float(x) for x in cm.get_coherence_per_topic()]
    finite = [x for x in per_topic if np.isfinite(x)]
    out["coherence"] = {"measure": coherence, "topn": topn, "mean": float(np.mean(finite)) if finite else None,
                        "per_topic": [x if np.isfinite(x) else None for x in per_topic]}
    return out


def topics_json(lda, topn: int = 20) -> dict:
    return {"num_topics": int(lda.num_topics),
            "topics": [{"topic": t, "words": [[str(w), float(p)] for w, p in lda.show_topic(t, topn=topn)]}
                       for t in range(lda.num_topics)]}


def format_topics(lda, topn: int = 8) -> str:
    return "\n".join(f"  topic {t:>3}: " + " ".join(str(w) for w, _ in lda.show_topic(t, topn=topn))
                     for t in range(lda.num_topics))


def dumps_short(obj) -> str:
    return json.dumps(obj, default=str)[:300]

"""Learning the LDA topic space: streamed bag-of-words corpus, gensim LDA, quality measures.

Pipeline (driven by ``lda/02_learn_lda.py``):

1. :func:`tokenize_articles`: every unique article is read and preprocessed once, in
   worker processes, and its tokens streamed to ``tokens.txt`` (one line per article);
   memory holds one article at a time. A finished tokens file (with its ``tokens.json``
   sidecar) is reused when the stage is rerun, so an interrupted run does not preprocess again.
2. :func:`document_articles`: which article each LDA document is. The release builds ONE
   DOCUMENT PER IMAGE (``corpus_unit="image"``, the default): an article appears once per
   image that illustrates it, which changes ``filter_extremes``' document counts and
   weights topics by image count. ``corpus_unit="article"`` is one document per article.
3. :func:`build_dictionary`: a gensim ``Dictionary`` over those documents (an article's
   tokens are counted once per document it is, without preprocessing it again), then
   ``filter_extremes(no_below, no_above, keep_n)`` as the release calls it.
4. :func:`build_bow_corpus`: the MatrixMarket ``corpus.mm``, one row per document in
   document order (a document with no dictionary word is an empty row, as in the
   release's ``[dictionary.doc2bow(text) for text in texts]``; counted).
5. :func:`train_lda`: ``LdaMulticore`` (the release's; not reproducible even with a seed)
   or, with ``reproducible=True``, single-process ``LdaModel`` seeded by ``seed``.
6. :func:`evaluate`: held-out perplexity (``2^-bound`` on articles never trained on,
   when ``--holdout`` keeps some out) and topic coherence (gensim ``CoherenceModel``).
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

from ..core.errors import DataError, UserError
from ..core.io import atomic_open, read_json, write_json
from .preprocess import DEFAULT_STOP_WORDS, preprocess_many

TOKENS_NAME, TOKENS_META = "tokens.txt", "tokens.json"
CORPUS_UNITS = ("image", "article")
# gensim's Dictionary(texts) prunes to the 2M most frequent words every 10,000 documents
# when it grows larger (its prune_at default); the release built its dictionary that way.
PRUNE_AT, PRUNE_EVERY = 2_000_000, 10_000


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
                      reader=None, progress: bool = True, reuse: bool = True,
                      stop_words: str = DEFAULT_STOP_WORDS) -> tuple[Path, TokenStats]:
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
        if (meta.get("articles_sha256") == digest and meta.get("lemmatizer") == lemmatizer
                and meta.get("stop_words", DEFAULT_STOP_WORDS) == stop_words):
            stats = TokenStats(articles=len(articles), unreadable=meta["unreadable"],
                               empty_after_preprocessing=meta["empty_after_preprocessing"],
                               tokens=meta["tokens"], reused=True)
            return tokens_path, stats
    stats = TokenStats(articles=len(articles))
    results = preprocess_many([str(a) for a in articles], lemmatizer=lemmatizer, workers=workers, reader=reader,
                              stop_words=stop_words)
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
    write_json(meta_path, {"articles_sha256": digest, "lemmatizer": lemmatizer, "stop_words": stop_words,
                           "tokens": stats.tokens,
                           "unreadable": stats.unreadable,
                           "empty_after_preprocessing": stats.empty_after_preprocessing})
    return tokens_path, stats


def iter_tokens(tokens_path: Path) -> Iterator[list[str]]:
    with open(tokens_path, encoding="utf-8") as fh:
        for line in fh:
            yield line.split()


def document_articles(pairs: Sequence, articles: Sequence[Path], unit: str = "image") -> list[int]:
    """The article (index into ``articles``) of every LDA document, in document order.

    ``unit="image"``: one document per image, in ``pairs`` order (the release loops over
    the image -> article dict); ``"article"``: one document per unique article.
    """
    if unit not in CORPUS_UNITS:
        raise UserError(f"unknown corpus unit {unit!r}; choose one of {', '.join(CORPUS_UNITS)}")
    if unit == "article":
        return list(range(len(articles)))
    where = {str(a): i for i, a in enumerate(articles)}
    try:
        return [where[str(p.article_path)] for p in pairs]
    except KeyError as exc:
        raise DataError(f"article {exc} of an image is not among the tokenised articles") from None


def _add_weighted(dictionary: Dictionary, tokens: list[str], times: int) -> None:
    """``dictionary.add_documents([tokens] * times)`` without counting the tokens ``times`` times.

    The first copy goes through gensim (new ids, in gensim's order); the others only add
    what a repeated document adds: document, position and non-zero counts, and each
    word's document and collection frequency.
    """
    bow = dictionary.doc2bow(tokens, allow_update=True)
    extra = times - 1
    if extra <= 0:
        return
    dictionary.num_docs += extra
    dictionary.num_pos += extra * len(tokens)
    dictionary.num_nnz += extra * len(bow)
    dfs, cfs = dictionary.dfs, dictionary.cfs
    for tokenid, freq in bow:
        dfs[tokenid] += extra
        cfs[tokenid] += extra * freq


def build_dictionary(tokens_path: Path, no_below: int, no_above: float, keep_n: int | None = 100000,
                     doc_articles: Sequence[int] | None = None) -> tuple[Dictionary, int]:
    """Dictionary over the documents, then the release's ``filter_extremes``. Returns (dict, size before).

    ``doc_articles`` (from :func:`document_articles`) says how many documents each line of
    the tokens file is; ``None`` means one each. Words get their ids in the order of the
    documents' first appearance, as ``Dictionary(texts)`` over the documents would give
    them, and ``keep_n`` defaults to gensim's 100,000, which the release's call used.
    """
    times = None
    if doc_articles is not None:
        times = np.bincount(np.asarray(doc_articles, dtype=np.int64)) if len(doc_articles) else np.zeros(0, int)
        order = list(dict.fromkeys(doc_articles))
        if order != sorted(order):
            raise DataError("documents must list articles in order of first appearance (tokens.txt order)")
    dictionary = Dictionary()
    next_prune = PRUNE_EVERY
    for i, tokens in enumerate(iter_tokens(tokens_path)):
        n = 1 if times is None else (int(times[i]) if i < len(times) else 0)
        if n == 0:
            continue  # an article no document uses
        _add_weighted(dictionary, tokens, n)
        if dictionary.num_docs >= next_prune:
            next_prune = (dictionary.num_docs // PRUNE_EVERY + 1) * PRUNE_EVERY
            if len(dictionary) > PRUNE_AT:
                dictionary.filter_extremes(no_below=0, no_above=1.0, keep_n=PRUNE_AT)
    before = len(dictionary)
    if dictionary.num_docs == 0:
        raise DataError("no articles to build a dictionary from")
    dictionary.filter_extremes(no_below=no_below, no_above=no_above, keep_n=keep_n)
    if len(dictionary) == 0:
        raise DataError(f"the dictionary is empty after filter_extremes(no_below={no_below}, no_above={no_above}) "
                        f"over {dictionary.num_docs} documents: for a small corpus pass a smaller --no-below")
    return dictionary, before


def build_bow_corpus(tokens_path: Path, dictionary: Dictionary, articles: Sequence[Path], mm_path: Path,
                     doc_articles: Sequence[int] | None = None) -> tuple[list[str], list[str], list[int]]:
    """Write ``mm_path`` (MatrixMarket + index), one row per document, atomically.

    Returns ``(documents, no_dictionary_words, with_words)``: the article path of every
    row; the articles whose tokens have no dictionary word (their rows are empty, as in
    the release; articles empty after preprocessing or unreadable are empty rows too,
    counted upstream); and the indices of the articles whose rows are not empty.
    """
    if doc_articles is None:
        doc_articles = list(range(len(articles)))
    dropped: list[str] = []
    nonempty = [False] * len(articles)

    def article_bows():
        for i, tokens in enumerate(iter_tokens(tokens_path)):
            bow = dictionary.doc2bow(tokens)
            if tokens and not bow:
                dropped.append(str(articles[i]))
            nonempty[i] = bool(bow)
            yield bow

    def serialize(path: Path, corpus) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            MmCorpus.serialize(str(tmp), corpus, id2word=dictionary)
            os.replace(f"{tmp}.index", f"{path}.index")
            os.replace(tmp, path)
        finally:
            for p in (tmp, Path(f"{tmp}.index")):
                if p.exists():
                    p.unlink()

    if list(doc_articles) == list(range(len(articles))):
        serialize(mm_path, article_bows())
    else:
        # One row per image: the article rows first (each article's bag of words computed
        # once), then read back by index into the document order.
        staged = mm_path.with_name(f".{mm_path.stem}.articles.mm")
        try:
            serialize(staged, article_bows())
            by_article = MmCorpus(str(staged))
            serialize(mm_path, (by_article[a] for a in doc_articles))
        finally:
            for p in (staged, Path(f"{staged}.index")):
                if p.exists():
                    p.unlink()
    if not any(nonempty[a] for a in doc_articles):
        raise DataError("no article has a word left in the dictionary; lower --no-below")
    return [str(articles[a]) for a in doc_articles], dropped, [i for i, ok in enumerate(nonempty) if ok]


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
    """Seeded choice of held-out items among ``num_docs`` (none when too few to spare any)."""
    if fraction <= 0 or num_docs < 10:
        return []
    n = min(max_docs, max(1, int(round(num_docs * fraction))))
    rng = np.random.RandomState(seed)
    return sorted(rng.choice(num_docs, size=n, replace=False).tolist())


def heldout_rows(doc_articles: Sequence[int], candidates: Sequence[int], fraction: float, seed: int
                 ) -> tuple[set[int], list[int]]:
    """Hold out whole articles: ``(rows to leave out of training, one row per held-out article)``.

    ``candidates`` are the articles that may be held out (those with dictionary words);
    every document of a held-out article leaves training, so no image of it is trained on.
    """
    chosen = {candidates[i] for i in split_heldout(len(candidates), fraction, seed)}
    if not chosen:
        return set(), []
    excluded, first = set(), {}
    for row, a in enumerate(doc_articles):
        if a in chosen:
            excluded.add(row)
            first.setdefault(a, row)
    return excluded, sorted(first.values())


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

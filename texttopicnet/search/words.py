"""Query terms as vectors of a text space: how a single word becomes a vector, per space.

A word is first put in the space's vocabulary form (``space.tokenizer.word``: ``Dogs`` ->
``dog``), then embedded by the first strategy of :data:`STRATEGIES` that fits the space:

- ``topic_word`` (the LDA space, or any space with a gensim ``topic_model``): the topic
  distribution of the word, ``p(topic | word)``, from the model's topic-word weights with a
  uniform prior over topics: ``p(k | w) = b_kw / sum_j b_jw`` where ``b = exp(E[log beta])``
  (gensim's ``expElogbeta``: the values ``get_term_topics`` returns). It depends on the word
  alone (no inference, no seed). LearnFromWebData's text->image protocol embedded LDA query
  words the same way (``get_term_topics``), then also subtracted the smallest value; we
  keep the full distribution (log space needs no zeros).
- ``word_vectors`` (word2vec, fastText, GloVe): the word's vector (``space.embed_words``).
- ``one_word_text`` (LSI, doc2vec, anything else): the space's embedding of the one-word
  text; a word the space cannot embed (the empty row) is unknown.

Vector-space terms are then mapped by the network's training-target transform (default
``minshift_l2``, ``text.spaces.targets``), because the CNN was trained to predict targets,
not raw embeddings: that is the space the index rows live in. Distribution terms pass
through (``distribution`` target). Image terms are the index rows as they are.

Unknown words raise :class:`UnknownQueryWords` (HTTP 422) naming every one with up to
:data:`SUGGESTIONS` known words close in spelling (``space.nearest_known``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..text.spaces.base import UnknownWordsError
from .query import QueryError

SUGGESTIONS = 5


class UnknownQueryWords(QueryError, UnknownWordsError):
    """Words of a query the space does not know. ``.words`` and ``.suggestions`` (word -> list)."""

    def __init__(self, words: Sequence[str], suggestions: Mapping[str, list[str]], space: str = ""):
        self.words, self.space = list(words), space
        self.suggestions = {w: list(suggestions.get(w, [])) for w in self.words}
        hints = "; ".join(f"{w!r}: did you mean {', '.join(s)}?" if s else f"{w!r}: no close known word"
                          for w, s in self.suggestions.items())
        QueryError.__init__(self, f"unknown word(s) {', '.join(repr(w) for w in self.words)}"
                                  f"{' in the ' + space + ' space' if space else ''} ({hints})",
                            status=422, code="unknown_words", words=self.words, suggestions=self.suggestions)

    def __str__(self) -> str:
        return self.message


def _topic_word(space, words: list[str]) -> tuple[np.ndarray, list[str]]:
    tm = space.topic_model
    cache = getattr(space, "_search_word_topics", None)
    if cache is None:
        # (K, V) word weights per topic: gensim's exp(E[log beta]), the values get_term_topics returns
        ebeta = getattr(tm.lda, "expElogbeta", None)
        tw = np.asarray(ebeta if ebeta is not None else tm.lda.get_topics(), dtype=np.float64)
        col = tw.sum(axis=0)
        cache = np.divide(tw, col, out=np.zeros_like(tw), where=col > 0).T.astype(np.float32)  # (V, K)
        space._search_word_topics = cache
    out, unknown = np.zeros((len(words), space.dim)), []
    for i, w in enumerate(words):
        form = space.tokenizer.word(w)
        wid = tm.dictionary.token2id.get(form) if form else None
        if wid is None or wid >= len(cache) or cache[wid].sum() <= 0:
            unknown.append(w)
        else:
            out[i] = cache[wid]
    return out, unknown


def _word_vectors(space, words: list[str]) -> tuple[np.ndarray, list[str]]:
    try:
        return np.asarray(space.embed_words(words), dtype=np.float64), []
    except UnknownWordsError as exc:
        bad = set(exc.words)
        known = [w for w in words if w not in bad]
        out = np.zeros((len(words), space.dim))
        if known:
            vecs = space.embed_words(known)
            rows = [i for i, w in enumerate(words) if w not in bad]
            out[rows] = vecs
        return out, [w for w in words if w in bad]


def _one_word_text(space, words: list[str]) -> tuple[np.ndarray, list[str]]:
    vecs, empty = space.embed(list(words), return_empty=True)
    return np.asarray(vecs, dtype=np.float64), [w for w, e in zip(words, empty) if e]


# (name, applies to the space?, embed) in order of preference.
STRATEGIES = (
    ("topic_word", lambda s: getattr(s, "topic_model", None) is not None, _topic_word),
    ("word_vectors", lambda s: bool(getattr(s, "has_word_vectors", False)), _word_vectors),
    ("one_word_text", lambda s: True, _one_word_text),
)


def strategy(space) -> str:
    return next(name for name, fits, _ in STRATEGIES if fits(space))


def raw_word_vectors(space, words: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(float64 (n, dim) raw vectors, unknown words) by the space's strategy; unknown rows are 0."""
    words = list(words)
    if not words:
        return np.zeros((0, space.dim)), []
    embed = next(fn for _, fits, fn in STRATEGIES if fits(space))
    return embed(space, words)


def to_target(space, vectors: np.ndarray, target: str | None = None) -> np.ndarray:
    """Raw space vectors -> the space the network predicts (training-target transform)."""
    from ..text.spaces import targets

    name = target or targets.default_target(space)
    if name == "distribution":
        return np.asarray(vectors, dtype=np.float64)
    return targets.make_targets(vectors, name).astype(np.float64)


def suggest(space, words: Sequence[str], n: int = SUGGESTIONS) -> dict[str, list[str]]:
    return {w: space.nearest_known(w, n=n) for w in words}


def word_matrix(space, words: Sequence[str], target: str | None = None) -> np.ndarray:
    """Target-space vectors of ``words`` (float64 (n, dim)); :class:`UnknownQueryWords` names every unknown one."""
    vecs, unknown = raw_word_vectors(space, words)
    if unknown:
        unknown = list(dict.fromkeys(unknown))
        raise UnknownQueryWords(unknown, suggest(space, unknown), getattr(space, "name", ""))
    return to_target(space, vecs, target) if len(vecs) else vecs


def term_matrix(space, terms, images: Mapping[str, np.ndarray], target: str | None = None) -> np.ndarray:
    """One row per parsed term: words through :func:`word_matrix`, images from ``images``."""
    words = [v for _, k, v in terms if k == "word"]
    wm = word_matrix(space, words, target)
    missing = [v for _, k, v in terms if k == "image" and v not in images]
    if missing:
        raise QueryError(f"unknown image id(s) {', '.join(repr(m) for m in missing[:20])}: not in the index",
                         status=404, code="unknown_images", ids=missing[:20])
    out = np.zeros((len(terms), space.dim), dtype=np.float64)
    wi = 0
    for i, (_, kind, value) in enumerate(terms):
        if kind == "word":
            out[i] = wm[wi]
            wi += 1
        else:
            row = np.asarray(images[value], dtype=np.float64).reshape(-1)
            if row.shape[0] != space.dim:
                raise QueryError(f"image {value!r} has {row.shape[0]} dimensions, the space {space.dim}", status=500,
                                 code="dimension_mismatch")
            out[i] = row
    return out

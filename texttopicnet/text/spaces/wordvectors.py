"""What the word-vector spaces (word2vec, fastText, GloVe) share: a text is a weighted mean of word vectors.

``weighting`` (an option of each of them):

- ``mean``: the plain mean of the vectors of the text's known words, each occurrence
  counted (the TextTopicNet fork and LearnFromWebData's mean);
- ``tfidf``: the mean weighted by ``count x idf``, ``idf = log2(N / df)`` over the texts
  the space was fit on (gensim ``TfidfModel``'s default global weight). LearnFromWebData
  summed the vectors weighted by gensim's L2-normalised tf-idf without dividing: that
  differs from our weighted mean only by a positive factor per text, which cosine
  similarity and both target transforms (targets.py) ignore, so rankings and training
  targets are the same. A known word the fit texts never had (GloVe, fastText subwords)
  gets the largest idf, ``log2(N)`` (as if it were in one text). If every word of a text
  has idf 0 (it is in every fit text), the plain mean is used for that text.

A text with no known word is the zero vector, flagged empty. ``embed_words`` returns the
raw word vectors (no transform), after the space's own normalisation of each word
(``Dogs`` -> ``dog`` with the project's tokenizer); unknown words raise
``UnknownWordsError`` naming every one.

The idf table (a gensim ``Dictionary`` of the fit texts, ``idf.dict``) is saved with the space.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ...core.errors import UserError
from .base import TextSpace, UnknownWordsError

WEIGHTINGS = ("mean", "tfidf")
IDF_NAME = "idf.dict"


class WordVectorSpace(TextSpace):
    kind = "vector"
    has_word_vectors = True

    def __init__(self, options, seed, tokenizer):
        super().__init__(options, seed, tokenizer)
        self.kv = None            # gensim KeyedVectors
        self.idf_dictionary = None
        self._idf: dict[str, float] | None = None
        self._unseen_idf = 0.0

    @classmethod
    def check_options(cls, o):
        if o.get("weighting") not in WEIGHTINGS:
            raise UserError(f"{cls.name}: weighting must be one of {', '.join(WEIGHTINGS)}, got {o.get('weighting')!r}")

    @property
    def dim(self) -> int:
        return int(self.kv.vector_size)

    def vocabulary(self) -> list[str]:
        return list(self.kv.index_to_key)

    def with_weighting(self, weighting: str) -> WordVectorSpace:
        """The same space (same vectors, shared) embedding with another ``weighting``."""
        if weighting not in WEIGHTINGS:
            raise UserError(f"weighting must be one of {', '.join(WEIGHTINGS)}")
        other = copy.copy(self)
        other.options = {**self.options, "weighting": weighting}
        return other

    # --- idf ----------------------------------------------------------------------------
    def _fit_idf(self, token_lists) -> None:
        from gensim.corpora import Dictionary

        self.idf_dictionary = Dictionary(token_lists)
        self._idf = None

    def idf(self) -> dict[str, float]:
        """word -> log2(N / df) over the fit texts (gensim's ``df2idf``)."""
        if self._idf is None:
            from gensim.models.tfidfmodel import df2idf

            d = self.idf_dictionary
            n = max(1, d.num_docs)
            self._idf = {d[i]: float(df2idf(df, n)) for i, df in d.dfs.items()}
            self._unseen_idf = math.log2(n)
        return self._idf

    # --- word lookup (fastText overrides) -------------------------------------------------
    def _known(self, word: str) -> bool:
        """Whether ``embed_words`` can give ``word`` a vector."""
        return word in self.kv.key_to_index

    def _counts_in_texts(self, word: str) -> bool:
        """Whether ``word`` contributes to a text's vector (fastText: only vocabulary words by default)."""
        return self._known(word)

    def _vectors(self, words: list[str]) -> np.ndarray:
        return self.kv[words]

    # --- embedding ----------------------------------------------------------------------
    def _embed(self, token_lists):
        from scipy.sparse import csr_matrix

        # One sparse (texts x distinct words) weight matrix times the words' vectors: the
        # Python loop only counts words; the arithmetic is one product.
        tfidf = self.options["weighting"] == "tfidf"
        idf = self.idf() if tfidf else None
        column: dict[str, int | None] = {}
        used: list[str] = []
        rows, cols, counts_, idfs = [], [], [], []
        for i, toks in enumerate(token_lists):
            for w, c in Counter(toks).items():
                j = column.get(w, -1)
                if j == -1:
                    j = column[w] = len(used) if self._counts_in_texts(w) else None
                    if j is not None:
                        used.append(w)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    counts_.append(c)
                    idfs.append(idf.get(w, self._unseen_idf) if tfidf else 1.0)
        n = len(token_lists)
        counts_a = np.asarray(counts_, dtype=np.float64)
        weights = counts_a * np.asarray(idfs, dtype=np.float64)
        if tfidf:
            # A text whose words all have idf 0 falls back to the plain mean.
            tw_sum = np.bincount(np.asarray(rows, dtype=np.int64), weights=weights, minlength=n)
            weights = np.where(tw_sum[rows] > 0, weights, counts_a) if len(rows) else weights
        w = csr_matrix((weights, (rows, cols)), shape=(n, len(used)))
        total = np.asarray(w.sum(axis=1)).ravel()
        empty = total <= 0
        if not used:
            return np.zeros((n, self.dim), dtype=np.float32), empty
        vecs = np.asarray(self._vectors(used), dtype=np.float64)
        out = np.asarray(w @ vecs) / np.where(empty, 1.0, total)[:, None]
        return out.astype(np.float32), empty

    def embed_words(self, words) -> np.ndarray:
        """float32 ``(len(words), dim)``: each word's vector; :class:`UnknownWordsError` names every unknown word."""
        forms = self.normalise_words(words)
        unknown = [w for w, f in zip(words, forms) if not f or not self._known(f)]
        if unknown:
            raise UnknownWordsError(unknown, self.name)
        if not forms:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self._vectors(forms), dtype=np.float32)

    # --- files --------------------------------------------------------------------------
    def _save_idf(self, folder: Path) -> None:
        self.idf_dictionary.save(str(folder / IDF_NAME))

    def _load_idf(self, folder: Path) -> None:
        from gensim.corpora import Dictionary

        self.idf_dictionary = Dictionary.load(str(folder / IDF_NAME))
        self._idf = None


def prefilter(token_lists, no_below, no_above):
    """The TextTopicNet fork's vocabulary filter before training (``filter_extremes``); None = off."""
    if no_below is None and no_above is None:
        return token_lists
    from gensim.corpora import Dictionary

    d = Dictionary(token_lists)
    d.filter_extremes(no_below=int(no_below or 1), no_above=float(no_above or 1.0), keep_n=None)
    keep = d.token2id
    return [[t for t in toks if t in keep] for toks in token_lists]


def chunked(token_lists, size: int = 10000):
    """Split texts longer than gensim's 10,000-token sentence limit (it would silently cut them)."""
    out = []
    for toks in token_lists:
        if len(toks) <= size:
            out.append(toks)
        else:
            out.extend(toks[i:i + size] for i in range(0, len(toks), size))
    return out

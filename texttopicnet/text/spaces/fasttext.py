"""The ``fasttext`` space: gensim ``FastText`` (word vectors with character n-grams); cosine.

Defaults are the TextTopicNet fork's FastText (../shared/SEED_SYSTEMS.md): 40 dimensions,
``window`` 8, 25 epochs, gensim defaults otherwise (``min_count`` 5, CBOW, n-grams of 3..6
characters hashed into 2,000,000 buckets), and the fork's vocabulary filter before training
(``filter_extremes(no_below=2, no_above=0.5)``; pass ``no_below=None, no_above=None`` for
none). The bucket matrix is ``bucket x dim`` floats (2M x 40 = 320 MB at the defaults);
pass a smaller ``bucket`` for small corpora (the tests use 5,000).

Words: ``embed_words`` gives ANY word that has at least one character n-gram a vector,
from its n-grams (fastText's answer to unknown words); with the default ``min_n`` 3, the
only words that raise ``UnknownWordsError`` are those whose bracketed form ``<word>`` is
shorter than ``min_n`` -- the empty string -- (or every word not in the vocabulary when
``bucket=0`` / ``max_n < min_n`` turn n-grams off). ``nearest_known`` ranks vocabulary
words by the cosine of their vectors with the word's n-gram vector (so a misspelling
finds words sharing its n-grams), the word itself first when it is in the vocabulary. In texts only vocabulary words count
(the fork's choice: it kept dictionary words only); ``oov="subwords"`` also counts the
other words through their n-grams.

Determinism: reproducible with ``workers=1`` (the default), as for word2vec.
Saved folder: ``manifest.json``, ``fasttext.model`` (+ side files), ``idf.dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ...core.errors import DataError, UserError
from .base import register
from .tokenizers import make_tokenizer
from .wordvectors import WordVectorSpace, chunked, prefilter

OOV_MODES = ("skip", "subwords")


@register("fasttext")
class FastTextSpace(WordVectorSpace):
    DEFAULTS: ClassVar[dict] = {
        "dim": 40,             # the fork: size=40
        "window": 8,           # the fork
        "min_count": 5,        # gensim default, as the fork used it
        "epochs": 25,          # the fork: iter=25
        "sg": 0,               # gensim default (CBOW)
        "negative": 5,
        "sample": 1e-3,
        "min_n": 3,            # gensim/fastText defaults for character n-grams
        "max_n": 6,
        "bucket": 2000000,
        "weighting": "mean",   # the fork's mean of word vectors
        "no_below": 2,         # the fork: filter_extremes(no_below=2, no_above=0.5) before training
        "no_above": 0.5,
        "oov": "skip",         # texts: vocabulary words only (the fork); "subwords" also counts the rest
        "workers": 1,          # 1 = reproducible
    }

    def __init__(self, options, seed, tokenizer):
        super().__init__(options, seed, tokenizer)
        self.model = None

    @classmethod
    def check_options(cls, o):
        super().check_options(o)
        if min(int(o["dim"]), int(o["window"]), int(o["min_count"]), int(o["epochs"]), int(o["workers"])) < 1:
            raise UserError(f"{cls.name}: dim, window, min_count, epochs and workers must be >= 1")
        if int(o["bucket"]) < 0 or int(o["min_n"]) < 1:
            raise UserError(f"{cls.name}: bucket must be >= 0 and min_n >= 1")
        if o["oov"] not in OOV_MODES:
            raise UserError(f"{cls.name}: oov must be one of {', '.join(OOV_MODES)}")

    def _fit(self, token_lists):
        from gensim.models import FastText

        o = self.options
        sentences = chunked(prefilter(token_lists, o["no_below"], o["no_above"]))
        model = FastText(vector_size=int(o["dim"]), window=int(o["window"]), min_count=int(o["min_count"]),
                         sg=int(o["sg"]), negative=int(o["negative"]), sample=float(o["sample"]),
                         min_n=int(o["min_n"]), max_n=int(o["max_n"]), bucket=int(o["bucket"]),
                         seed=self.seed, workers=int(o["workers"]), epochs=int(o["epochs"]))
        model.build_vocab(sentences)
        if len(model.wv) == 0:
            raise DataError(f"{self.name}: no word occurs {o['min_count']} times in the {len(token_lists)} texts; "
                            f"pass a smaller min_count")
        model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
        self.model, self.kv = model, model.wv
        self._fit_idf(token_lists)
        self.info.update(vocabulary=len(model.wv))

    # --- words: n-grams make (almost) every word known ------------------------------------
    def _has_ngrams(self, word: str) -> bool:
        from gensim.models.fasttext import ft_ngram_hashes

        kv = self.kv
        return kv.bucket > 0 and len(ft_ngram_hashes(word, kv.min_n, kv.max_n, kv.bucket)) > 0

    def _known(self, word: str) -> bool:
        return word in self.kv.key_to_index or self._has_ngrams(word)

    def _counts_in_texts(self, word: str) -> bool:
        if self.options["oov"] == "subwords":
            return self._known(word)
        return word in self.kv.key_to_index

    def nearest_known(self, word: str, n: int = 5, cutoff: float = 0.6) -> list[str]:
        """Vocabulary words nearest to ``word``'s n-gram vector (cosine); spelling (base class) if it has none."""
        w = self.tokenizer.word(word)
        if not w or not self._known(w):
            return super().nearest_known(word, n, cutoff)
        if w in self.kv.key_to_index:
            similar = [k for k, _ in self.kv.most_similar(w, topn=max(0, n - 1))]
            return ([w] + similar)[:max(0, n)]
        return [k for k, _ in self.kv.similar_by_vector(self.kv.get_vector(w), topn=max(0, n))]

    def _save_files(self, folder: Path) -> None:
        self.model.save(str(folder / "fasttext.model"))
        self._save_idf(folder)

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> FastTextSpace:
        from gensim.models import FastText

        space = cls(manifest["options"], manifest["seed"], make_tokenizer(manifest["tokenizer"]))
        space.model = FastText.load(str(folder / "fasttext.model"))
        space.kv = space.model.wv
        space._load_idf(folder)
        space.info = dict(manifest.get("info") or {})
        return space

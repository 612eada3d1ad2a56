"""The ``word2vec`` space: gensim ``Word2Vec`` trained on the texts; a text is the (tf-idf weighted) mean.

Defaults are the semantic retrieval work's Word2Vec (../shared/SEED_SYSTEMS.md, 002):
400 dimensions, ``min_count`` 5, ``window`` 8, 25 epochs, gensim defaults otherwise (CBOW,
negative sampling 5, ``sample`` 1e-3). The TextTopicNet fork used the same window and
epochs with 40 or 300 dimensions and first kept only the words of the LDA dictionary
(``no_below=20, no_above=0.5``): pass those as options to reproduce it. Small corpora (the
tests) need a smaller ``min_count`` and ``dim``.

Determinism: gensim's Word2Vec is reproducible for a fixed seed only with ONE worker
thread (``workers=1``, the default here); more workers train faster (roughly linearly up
to the core count) but the vectors then depend on thread scheduling. Texts longer than
gensim's 10,000-token limit are split into pieces for training instead of being cut.

Weighting (``mean`` / ``tfidf``) and unknown words: see wordvectors.py.
Saved folder: ``manifest.json``, ``word2vec.model`` (+ side files), ``idf.dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ...core.errors import DataError, UserError
from .base import register
from .tokenizers import make_tokenizer
from .wordvectors import WordVectorSpace, chunked, prefilter


@register("word2vec")
class Word2VecSpace(WordVectorSpace):
    DEFAULTS: ClassVar[dict] = {
        "dim": 400,            # 002: 400-d
        "window": 8,           # 002 and the fork
        "min_count": 5,        # 002 (gensim's default)
        "epochs": 25,          # 002 and the fork: 25 iterations
        "sg": 0,               # gensim default (CBOW), as both used
        "negative": 5,         # gensim default
        "sample": 1e-3,        # gensim default
        "weighting": "mean",   # the fork's target; 002 also used the tf-idf weighted sum
        "no_below": None,      # the fork: 20 (LDA dictionary filter before training); 002: none
        "no_above": None,      # the fork: 0.5
        "workers": 1,          # 1 = reproducible (see the module docstring)
    }

    def __init__(self, options, seed, tokenizer):
        super().__init__(options, seed, tokenizer)
        self.model = None

    @classmethod
    def check_options(cls, o):
        super().check_options(o)
        if min(int(o["dim"]), int(o["window"]), int(o["min_count"]), int(o["epochs"]), int(o["workers"])) < 1:
            raise UserError(f"{cls.name}: dim, window, min_count, epochs and workers must be >= 1")

    def _fit(self, token_lists):
        from gensim.models import Word2Vec

        o = self.options
        sentences = chunked(prefilter(token_lists, o["no_below"], o["no_above"]))
        model = Word2Vec(vector_size=int(o["dim"]), window=int(o["window"]), min_count=int(o["min_count"]),
                         sg=int(o["sg"]), negative=int(o["negative"]), sample=float(o["sample"]),
                         seed=self.seed, workers=int(o["workers"]), epochs=int(o["epochs"]))
        model.build_vocab(sentences)
        if len(model.wv) == 0:
            raise DataError(f"{self.name}: no word occurs {o['min_count']} times in the {len(token_lists)} texts; "
                            f"pass a smaller min_count")
        model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
        self.model, self.kv = model, model.wv
        self._fit_idf(token_lists)
        self.info.update(vocabulary=len(model.wv))

    def _save_files(self, folder: Path) -> None:
        self.model.save(str(folder / "word2vec.model"))
        self._save_idf(folder)

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> Word2VecSpace:
        from gensim.models import Word2Vec

        space = cls(manifest["options"], manifest["seed"], make_tokenizer(manifest["tokenizer"]))
        space.model = Word2Vec.load(str(folder / "word2vec.model"))
        space.kv = space.model.wv
        space._load_idf(folder)
        space.info = dict(manifest.get("info") or {})
        return space

"""The ``lsi`` space: TF-IDF then latent semantic indexing (gensim ``TfidfModel`` + ``LsiModel``); cosine.

Tokens -> gensim ``Dictionary`` filtered like the LDA space (the paper's
``filter_extremes(no_below=20, no_above=0.5)``) -> bag of words -> ``TfidfModel`` (gensim
defaults: raw term frequency x log2(N / df), L2-normalised) -> ``LsiModel`` with
``num_topics`` dimensions (default 40, the paper's topic count, so a CNN predicts the same
output size as for LDA) and ``random_seed`` = the space's seed (gensim's stochastic SVD is
then deterministic). A text is the dense LSI projection of its tf-idf vector; a text with no
dictionary word is the zero vector (flagged empty).

Saved folder: ``manifest.json``, ``dictionary.dict``, ``tfidf.model``, ``lsi.model`` (+ gensim
side files).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ...core.errors import DataError, UserError
from .base import TextSpace, register
from .tokenizers import make_tokenizer


@register("lsi")
class LsiSpace(TextSpace):
    kind = "vector"
    DEFAULTS: ClassVar[dict] = {
        "num_topics": 40,      # the paper's topic count (same CNN output size as the LDA space)
        "no_below": 20,        # the paper's dictionary filter
        "no_above": 0.5,
        "keep_n": 100000,      # gensim's default
        "power_iters": 2,      # gensim defaults for the stochastic SVD
        "extra_samples": 100,
    }

    def __init__(self, options, seed, tokenizer):
        super().__init__(options, seed, tokenizer)
        self.dictionary = self.tfidf = self.lsi = None

    @classmethod
    def check_options(cls, o):
        if int(o["num_topics"]) < 1:
            raise UserError(f"lsi: num_topics must be >= 1, got {o['num_topics']}")
        if int(o["no_below"]) < 1 or not 0 < float(o["no_above"]) <= 1:
            raise UserError("lsi: no_below must be >= 1 and no_above in (0, 1]")

    @property
    def dim(self) -> int:
        return int(self.lsi.num_topics)

    def vocabulary(self) -> list[str]:
        d = self.dictionary
        return [d[i] for i in sorted(d.keys(), key=lambda i: -d.dfs.get(i, 0))]

    def _fit(self, token_lists):
        from gensim.corpora import Dictionary
        from gensim.models import LsiModel, TfidfModel

        o = self.options
        d = Dictionary(token_lists)
        d.filter_extremes(no_below=int(o["no_below"]), no_above=float(o["no_above"]),
                          keep_n=None if o["keep_n"] is None else int(o["keep_n"]))
        if len(d) == 0:
            raise DataError(f"lsi: the dictionary is empty after filter_extremes(no_below={o['no_below']}, "
                            f"no_above={o['no_above']}) over {len(token_lists)} texts; pass a smaller no_below")
        corpus = [b for b in (d.doc2bow(t) for t in token_lists) if b]
        self.dictionary = d
        self.tfidf = TfidfModel(corpus, id2word=d)
        self.lsi = LsiModel(self.tfidf[corpus], id2word=d, num_topics=int(o["num_topics"]),
                            power_iters=int(o["power_iters"]), extra_samples=int(o["extra_samples"]),
                            random_seed=self.seed)
        self.info.update(corpus_documents=len(corpus), vocabulary=len(d))

    def _embed(self, token_lists):
        from gensim.matutils import sparse2full

        k = self.dim
        out = np.zeros((len(token_lists), k), dtype=np.float32)
        empty = np.zeros(len(token_lists), dtype=bool)
        for i, toks in enumerate(token_lists):
            bow = self.dictionary.doc2bow(toks)
            if not bow:
                empty[i] = True
                continue
            out[i] = sparse2full(self.lsi[self.tfidf[bow]], k)
        return out, empty

    def _save_files(self, folder: Path) -> None:
        self.dictionary.save(str(folder / "dictionary.dict"))
        self.tfidf.save(str(folder / "tfidf.model"))
        self.lsi.save(str(folder / "lsi.model"))

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> LsiSpace:
        from gensim.corpora import Dictionary
        from gensim.models import LsiModel, TfidfModel

        space = cls(manifest["options"], manifest["seed"], make_tokenizer(manifest["tokenizer"]))
        space.dictionary = Dictionary.load(str(folder / "dictionary.dict"))
        space.tfidf = TfidfModel.load(str(folder / "tfidf.model"))
        space.lsi = LsiModel.load(str(folder / "lsi.model"))
        space.info = dict(manifest.get("info") or {})
        return space

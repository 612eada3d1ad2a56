"""The ``lda`` space: the paper's LDA topic space (a probability distribution, KL similarity).

It wraps the project's LDA code: ``lda_train.train_lda`` to fit, ``topics.TopicModel`` to
embed (the dense variational topic distribution, each document reseeded with the space's
seed, so a text's vector depends on its text and the seed only). Defaults are the paper's
(../shared/REFERENCE.md, stage 2): 40 topics, ``filter_extremes(no_below=20, no_above=0.5)``
(gensim's ``keep_n=100000`` as the release called it), gensim defaults otherwise (1 pass,
chunksize 2000, 50 iterations), ``LdaMulticore`` over ``workers`` processes, which is NOT
reproducible; ``reproducible=True`` trains the single-process, seeded ``LdaModel``.

The texts are the documents as given: the caller decides per-image or per-article corpus.
Documents with no dictionary word stay in the corpus as empty rows, as the release's
``[dictionary.doc2bow(text) for text in texts]`` (and lda/02) have them.

``embed`` is the dense distribution (rows sum to 1: for KL retrieval); ``label_rows`` is
the release's training label (the 0.01 cut-off, as the labels stage writes it).

Saved folder: ``manifest.json``, ``ldamodel{K}.lda`` (+ gensim side files) and
``dictionary.dict``: the lda/02 layout, so ``TopicModel.load`` reads it too. Conversely
``load_text_space`` reads an lda/02 run folder (``RUN/lda``) or the published
``ldamodel40.lda`` (with ``dictionary.dict`` beside it) as a space: no manifest there, so
the options come from the model and lda/02's ``meta.json``, the preprocessing from that
``meta.json`` (else the release's: WordNet, 174 stop words) and the inference seed is 0
(the labels stage's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ...core.errors import DataError, UserError
from .base import TextSpace, register
from .tokenizers import make_tokenizer


def _preprocessing(tokenizer) -> dict:
    """TopicModel's preprocessing arguments from a project tokenizer spec (unused by other tokenizers)."""
    spec = tokenizer.spec
    if spec.get("name") != "project":
        return {}
    return {k: spec[k] for k in ("lemmatizer", "stop_words") if spec.get(k) is not None}


def _default_workers() -> int:
    from ...core.cli import default_workers

    return default_workers()


@register("lda")
class LdaSpace(TextSpace):
    kind = "distribution"
    DEFAULTS: ClassVar[dict] = {
        "num_topics": 40,        # the paper: best on validation among the sizes tried
        "no_below": 20,          # the release: filter_extremes(no_below=20, no_above=0.5)
        "no_above": 0.5,
        "keep_n": 100000,        # gensim's default, which the release's call used
        "passes": 1,             # gensim default, as the release ran it
        "chunksize": 2000,       # gensim default
        "iterations": 50,        # gensim default
        "reproducible": False,   # the release used LdaMulticore (not reproducible)
        "workers": None,         # None: all cores (LdaMulticore gets cores - 1 workers, gensim's default)
    }

    def __init__(self, options, seed, tokenizer):
        super().__init__(options, seed, tokenizer)
        self.topic_model = None

    @classmethod
    def check_options(cls, o):
        if int(o["num_topics"]) < 2:
            raise UserError(f"lda: num_topics must be >= 2, got {o['num_topics']}")
        if int(o["no_below"]) < 1 or not 0 < float(o["no_above"]) <= 1:
            raise UserError("lda: no_below must be >= 1 and no_above in (0, 1]")
        if min(int(o["passes"]), int(o["chunksize"]), int(o["iterations"])) < 1:
            raise UserError("lda: passes, chunksize and iterations must be >= 1")

    @property
    def dim(self) -> int:
        return self.topic_model.num_topics

    def vocabulary(self) -> list[str]:
        d = self.topic_model.dictionary
        return [d[i] for i in sorted(d.keys(), key=lambda i: -d.dfs.get(i, 0))]

    def _fit(self, token_lists):
        from gensim.corpora import Dictionary

        from ..lda_train import train_lda
        from ..topics import TopicModel

        o = self.options
        dictionary = Dictionary(token_lists)
        dictionary.filter_extremes(no_below=int(o["no_below"]), no_above=float(o["no_above"]),
                                   keep_n=None if o["keep_n"] is None else int(o["keep_n"]))
        if len(dictionary) == 0:
            raise DataError(f"lda: the dictionary is empty after filter_extremes(no_below={o['no_below']}, "
                            f"no_above={o['no_above']}) over {len(token_lists)} texts; pass a smaller no_below")
        # Every document, empty rows included, as the release's [doc2bow(text) for text in texts].
        corpus = [dictionary.doc2bow(t) for t in token_lists]
        if not any(corpus):
            raise DataError("lda: no text has a dictionary word; pass a smaller no_below")
        workers = _default_workers() if o["workers"] is None else int(o["workers"])
        lda, mode = train_lda(corpus, dictionary, int(o["num_topics"]), int(o["passes"]), self.seed, workers,
                              bool(o["reproducible"]), chunksize=int(o["chunksize"]),
                              iterations=int(o["iterations"]))
        self.topic_model = TopicModel(lda, dictionary, **_preprocessing(self.tokenizer))
        self.info.update(lda_mode=mode, corpus_documents=len(corpus),
                         corpus_empty_documents=sum(1 for b in corpus if not b), vocabulary=len(dictionary))

    def _embed(self, token_lists):
        tm = self.topic_model
        bows = [tm.bow(t) for t in token_lists]
        empty = np.array([not b for b in bows], dtype=bool)
        return tm.infer_bow(bows, empty="uniform", seed=self.seed), empty

    def label_rows(self, texts, *, return_empty: bool = False):
        """The release's label rows (``TopicModel`` ``rows="release"``: topics under gensim's 0.01
        cut-off set to 0, rows sum to a little under 1): the CNN's training targets for this space.

        The labels stage (texttopicnet.text.labels) makes the same rows over worker processes.
        """
        tm = self.topic_model
        bows = [tm.bow(t) for t in self.tokenizer.many(texts)]
        empty = np.array([not b for b in bows], dtype=bool)
        out = tm.infer_bow(bows, empty="uniform", seed=self.seed, rows="release")
        out[empty] = self.empty_row()
        return (out, empty) if return_empty else out

    def top_words(self, topic: int, n: int = 10) -> list[tuple[str, float]]:
        return self.topic_model.top_words(topic, n)

    # --- files --------------------------------------------------------------------------
    def _save_files(self, folder: Path) -> None:
        from ..topics import DICTIONARY_NAME, model_filename, save_lda

        save_lda(self.topic_model.lda, folder / model_filename(self.dim))
        self.topic_model.dictionary.save(str(folder / DICTIONARY_NAME))

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> LdaSpace:
        from ..topics import TopicModel

        tokenizer = make_tokenizer(manifest["tokenizer"])
        tm = TopicModel.load(folder, **_preprocessing(tokenizer))
        space = cls(manifest["options"], manifest["seed"], tokenizer)
        space.topic_model = tm
        space.info = dict(manifest.get("info") or {})
        return space

    @classmethod
    def from_model(cls, path: str | Path, seed: int = 0) -> LdaSpace:
        """A space from an LDA model without a manifest: an lda/02 folder or a ``.lda`` file."""
        from ...core.provenance import read_meta
        from ..topics import TopicModel

        tm = TopicModel.load(path)  # preprocessing: what lda/02 recorded, else the release's
        tokenizer = make_tokenizer({"name": "project", "lemmatizer": tm.lemmatizer,
                                    "stop_words": getattr(tm, "stop_words", None)})
        lda = tm.lda
        options = {**cls.DEFAULTS, "num_topics": tm.num_topics, "passes": int(getattr(lda, "passes", 1)),
                   "chunksize": int(getattr(lda, "chunksize", 2000)),
                   "iterations": int(getattr(lda, "iterations", 50))}
        meta = read_meta(tm.source.parent) or {}
        args = meta.get("args") or {}
        for key in ("no_below", "no_above", "keep_n", "reproducible", "workers"):
            if key in args:
                options[key] = args[key]
        space = cls(options, seed, tokenizer)
        space.topic_model = tm
        space.info = {"source": str(tm.source), "lda_mode": meta.get("lda_mode"),
                      "vocabulary": len(tm.dictionary)}
        return space

"""The ``doc2vec`` space: gensim ``Doc2Vec`` paragraph vectors; a text is its inferred vector; cosine.

Defaults are LearnFromWebData's Doc2Vec (../shared/SEED_SYSTEMS.md, 002's authors):
PV-DBOW (``dm=0``), 400 dimensions, ``min_count`` 10, ``window`` 8, 50 epochs, gensim
defaults otherwise. (The TextTopicNet fork used PV-DM with 40 or 300 dimensions, 25 epochs,
window 8 and its LDA-dictionary filter: pass ``dm=1, dim=300, epochs=25, min_count=5,
no_below=20, no_above=0.5`` to reproduce it.) The space has no word vectors (PV-DBOW does
not train them), so no ``embed_words``.

Every text, including the ones the space was fit on, is embedded by inference (gensim's
``infer_vector`` procedure: ``infer_epochs`` passes, default the training epochs, learning
rate from ``alpha`` down to ``min_alpha``), so a vector depends on the text alone. gensim's
own ``infer_vector`` is not deterministic across processes: its starting vector is seeded
with Python's salted ``hash()`` of the text, and its negative sampling draws from the
model's shared random state, so the result depends on PYTHONHASHSEED and on what was
inferred before. Here the same gensim training routine runs from a starting vector and a
random state both seeded with sha256(seed, tokens): the same text and seed give the same
vector in any process, in any order. Training itself is reproducible with ``workers=1``
(default). A text with no vocabulary word is the zero vector (flagged empty).

Saved folder: ``manifest.json``, ``doc2vec.model`` (+ side files).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...core.errors import DataError, UserError
from .base import TextSpace, register
from .tokenizers import make_tokenizer
from .wordvectors import chunked, prefilter


@register("doc2vec")
class Doc2VecSpace(TextSpace):
    kind = "vector"
    DEFAULTS: ClassVar[dict] = {
        "dim": 400,            # LearnFromWebData: size=400
        "dm": 0,               # LearnFromWebData: PV-DBOW (dm=0); the fork: PV-DM (gensim default 1)
        "window": 8,           # both
        "min_count": 10,       # LearnFromWebData
        "epochs": 50,          # LearnFromWebData: iter=50 (the fork: 25)
        "negative": 5,         # gensim defaults
        "sample": 1e-3,
        "infer_epochs": None,  # None: the training epochs (gensim's infer_vector default)
        "no_below": None,      # the fork: 20 / 0.5 (LDA dictionary filter before training)
        "no_above": None,
        "workers": 1,          # 1 = reproducible training
    }

    def __init__(self, options, seed, tokenizer):
        super().__init__(options, seed, tokenizer)
        self.model = None

    @classmethod
    def check_options(cls, o):
        if min(int(o["dim"]), int(o["window"]), int(o["min_count"]), int(o["epochs"]), int(o["workers"])) < 1:
            raise UserError("doc2vec: dim, window, min_count, epochs and workers must be >= 1")
        if int(o["dm"]) not in (0, 1):
            raise UserError("doc2vec: dm must be 0 (PV-DBOW) or 1 (PV-DM)")
        if o["infer_epochs"] is not None and int(o["infer_epochs"]) < 1:
            raise UserError("doc2vec: infer_epochs must be >= 1")

    @property
    def dim(self) -> int:
        return int(self.model.dv.vector_size)

    def vocabulary(self) -> list[str]:
        return list(self.model.wv.index_to_key)

    def _fit(self, token_lists):
        from gensim.models.doc2vec import Doc2Vec, TaggedDocument

        o = self.options
        docs = []
        for i, toks in enumerate(prefilter(token_lists, o["no_below"], o["no_above"])):
            # Texts over gensim's 10,000-token limit become several pieces with the text's own tag.
            docs.extend(TaggedDocument(piece, [i]) for piece in chunked([toks]))
        model = Doc2Vec(vector_size=int(o["dim"]), dm=int(o["dm"]), window=int(o["window"]),
                        min_count=int(o["min_count"]), negative=int(o["negative"]), sample=float(o["sample"]),
                        seed=self.seed, workers=int(o["workers"]), epochs=int(o["epochs"]))
        model.build_vocab(docs)
        if len(model.wv) == 0:
            raise DataError(f"doc2vec: no word occurs {o['min_count']} times in the {len(token_lists)} texts; "
                            f"pass a smaller min_count")
        model.train(docs, total_examples=model.corpus_count, epochs=model.epochs)
        self.model = model
        self.info.update(vocabulary=len(model.wv))

    def _doc_seed(self, tokens: list[str]) -> int:
        h = hashlib.sha256(f"{self.seed}\0".encode() + "\0".join(tokens).encode("utf-8", "surrogatepass"))
        return int.from_bytes(h.digest()[:4], "little")

    def _infer(self, tokens: list[str]) -> np.ndarray:
        """gensim's infer_vector procedure with a seeded start and random state (module docstring)."""
        from gensim import matutils
        from gensim.models.doc2vec_inner import train_document_dbow, train_document_dm

        m = self.model
        epochs = int(self.options["infer_epochs"] or m.epochs)
        seed = self._doc_seed(tokens)
        rng = np.random.default_rng(seed)
        size = m.dv.vector_size
        doctag = ((rng.random(size, dtype=np.float32) - np.float32(0.5)) / np.float32(size)).reshape(1, size)
        lockf = np.ones(1, dtype=np.float32)
        work = np.zeros(m.layer1_size, dtype=np.float32)
        saved_random = m.random
        m.random = np.random.RandomState(seed)
        try:
            alpha, min_alpha = m.alpha, m.min_alpha
            delta = (alpha - min_alpha) / max(epochs - 1, 1)
            for _ in range(epochs):
                if m.sg:  # PV-DBOW
                    train_document_dbow(m, tokens, [0], alpha, work, learn_words=False, learn_hidden=False,
                                        doctag_vectors=doctag, doctags_lockf=lockf)
                else:
                    neu1 = matutils.zeros_aligned(m.layer1_size, dtype=np.float32)
                    train_document_dm(m, tokens, [0], alpha, work, neu1, learn_words=False, learn_hidden=False,
                                      doctag_vectors=doctag, doctags_lockf=lockf)
                alpha -= delta
        finally:
            m.random = saved_random
        return doctag[0]

    def _embed(self, token_lists):
        vocab = self.model.wv.key_to_index
        out = np.zeros((len(token_lists), self.dim), dtype=np.float32)
        empty = np.zeros(len(token_lists), dtype=bool)
        for i, toks in enumerate(token_lists):
            known = [t for t in toks if t in vocab]
            if not known:
                empty[i] = True
                continue
            out[i] = self._infer(toks)
        return out, empty

    def _save_files(self, folder: Path) -> None:
        self.model.save(str(folder / "doc2vec.model"))

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> Doc2VecSpace:
        from gensim.models.doc2vec import Doc2Vec

        space = cls(manifest["options"], manifest["seed"], make_tokenizer(manifest["tokenizer"]))
        space.model = Doc2Vec.load(str(folder / "doc2vec.model"))
        space.info = dict(manifest.get("info") or {})
        return space

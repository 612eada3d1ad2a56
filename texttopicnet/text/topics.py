"""The LDA topic space: load a gensim model (ours or the published one) and infer topic vectors.

:class:`TopicModel` wraps a gensim ``LdaModel`` and its ``Dictionary``. It is what the
label stage, the retrieval experiment and users call::

    from texttopicnet.text.topics import TopicModel
    tm = TopicModel.load("runs/demo/lda")              # folder with ldamodel{K}.lda + dictionary.dict
    tm = TopicModel.load("pretrained/ldamodel40.lda")  # the published files (dictionary.dict beside it)
    vecs = tm.infer(["raw article text ...", ...])     # float32 (N, K), dense rows summing to 1
    rows = tm.infer_bow(bows, rows="release")          # the release's label rows (0.01 cut-off)
    tm.top_words(3, 10)                                # [(word, probability), ...] of topic 3

Inference computes the variational topic distribution ``gamma / sum(gamma)`` exactly as
gensim's ``get_document_topics`` does. ``rows`` (:data:`ROW_MODES`) says what is returned:

- ``"release"``: the release's label rows, ``get_document_topics(bow, minimum_probability=None)``
  written into a K-vector: ``None`` means the model's own ``minimum_probability`` (0.01 by
  default, never below 1e-8), topics with a probability ``>=`` it keep their value, the
  others are 0, and nothing is renormalised, so a row sums to slightly less than 1;
- ``"dense"``: every topic's value (rows sum to 1 up to float rounding).

gensim starts each document's inference from a random point; we reseed it per document
with ``seed``, so a document's vector depends only on its text and the seed, never on
batching, order or worker count.

The release saved ``dictionary.dict`` BEFORE ``filter_extremes`` and its label script
re-applied ``filter_extremes(no_below=20, no_above=0.5)`` after loading it: when a
dictionary is larger than the model's vocabulary, :meth:`TopicModel.load` does the same
(:data:`RELEASE_DICTIONARY_FILTER`) and accepts it only if the result matches the model.

Empty documents (nothing left after preprocessing, or no word in the dictionary) have no
topic evidence. ``empty`` chooses what :meth:`TopicModel.infer` does with them:
``"raise"`` (default: a :class:`DataError` naming them, so nobody gets a silent made-up
vector), ``"uniform"`` (1/K each, what LDA's symmetric prior would give; retrieval uses
this), ``"nan"`` (a NaN row, to filter on).

The published ``ldamodel40.lda`` was pickled by an old gensim under Python 2;
:func:`load_lda` unpickles it with latin-1 strings and fills in the attributes old
versions did not have (see :func:`_patch_old_model`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from gensim import utils as gutils
from gensim.corpora import Dictionary
from gensim.matutils import dirichlet_expectation
from gensim.models.ldamodel import LdaModel, LdaState

from ..core.errors import DataError, UserError

DICTIONARY_NAME = "dictionary.dict"
EMPTY_MODES = ("raise", "uniform", "nan")
ROW_MODES = ("release", "dense")
# The release's filter_extremes call (learn_LDA_model.py and generate_train_labels.py):
# no_below=20, no_above=0.5 and gensim's default keep_n=100000.
RELEASE_DICTIONARY_FILTER = {"no_below": 20, "no_above": 0.5, "keep_n": 100000}
_MODEL_NAME = re.compile(r"^ldamodel(\d+)\.lda$")
log = logging.getLogger(__name__)


def model_filename(num_topics: int) -> str:
    return f"ldamodel{num_topics}.lda"


def find_model_file(path: str | os.PathLike) -> Path:
    """The ``ldamodel{K}.lda`` file named by ``path`` (the file itself or its folder)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no LDA model here (expected a folder with ldamodel<K>.lda + dictionary.dict, "
                        f"or the .lda file); run lda/02_learn_lda.py or pretrained/ to get one")
    found = sorted(p for p in path.iterdir() if _MODEL_NAME.match(p.name))
    if not found:
        raise DataError(f"{path}: no ldamodel<K>.lda file in this folder; run lda/02_learn_lda.py first")
    if len(found) > 1:
        raise UserError(f"{path}: several LDA models ({', '.join(p.name for p in found)}); pass the .lda file itself")
    return found[0]


# Attributes that gensim 4 reads during inference but that older pickles may lack.
_OLD_DEFAULTS = {
    "minimum_probability": 0.01, "minimum_phi_value": 0.01, "per_word_topics": False, "callbacks": None,
    "iterations": 50, "gamma_threshold": 0.001, "decay": 0.5, "offset": 1.0, "chunksize": 2000,
    "passes": 1, "update_every": 1, "eval_every": 10, "distributed": False, "numworkers": 1,
    "dispatcher": None, "num_updates": 0,
}


def _patch_old_model(lda: LdaModel) -> LdaModel:
    """Make a model pickled by an old gensim (or Python 2) usable by gensim 4's inference."""
    for name, value in _OLD_DEFAULTS.items():
        if not hasattr(lda, name):
            setattr(lda, name, value)
    if not hasattr(lda, "dtype"):
        lda.dtype = np.float64  # old gensim computed in numpy's default float64
    if not hasattr(lda, "random_state") or lda.random_state is None:
        lda.random_state = np.random.RandomState(0)
    state = getattr(lda, "state", None)
    if state is not None and not hasattr(state, "dtype"):
        state.dtype = lda.dtype
    if getattr(lda, "expElogbeta", None) is None:
        if state is None:
            raise DataError("the LDA model has neither expElogbeta nor a .state file; cannot infer topics")
        lda.expElogbeta = np.exp(dirichlet_expectation(state.get_lambda())).astype(lda.dtype, copy=False)
    lda.alpha = np.asarray(lda.alpha, dtype=lda.dtype).reshape(-1)
    if lda.alpha.size == 1:
        lda.alpha = np.full(lda.num_topics, float(lda.alpha[0]), dtype=lda.dtype)
    if not hasattr(lda, "num_terms"):
        lda.num_terms = lda.expElogbeta.shape[1]
    return lda


def _patch_old_dictionary(d: Dictionary) -> Dictionary:
    for name, value in (("id2token", {}), ("cfs", {}), ("dfs", {}), ("num_docs", 0), ("num_pos", 0),
                        ("num_nnz", 0)):
        if not hasattr(d, name):
            setattr(d, name, value)
    return d


def _manual_load(path: Path) -> LdaModel:
    """Unpickle an LDA model whose side files (``.expElogbeta.npy`` ...) are partly missing."""
    lda = gutils.unpickle(str(path))  # latin-1: Python 2 pickles
    if not isinstance(lda, LdaModel):
        raise DataError(f"{path}: not a gensim LdaModel pickle (found {type(lda).__name__})")
    for attrib in getattr(lda, "__numpys", []):
        side = Path(f"{path}.{attrib}.npy")
        setattr(lda, attrib, np.load(side) if side.is_file() else None)
    state_path = Path(f"{path}.state")
    if state_path.is_file():
        lda.state = LdaState.load(str(state_path))
    return lda


def load_lda(path: str | os.PathLike) -> LdaModel:
    """Load a gensim LDA model file tolerantly (old gensim, Python 2 pickles, missing side arrays)."""
    path = find_model_file(path)
    try:
        lda = LdaModel.load(str(path))
    except FileNotFoundError:
        lda = _manual_load(path)
    except Exception as exc:  # a damaged or foreign file: UnpicklingError, EOFError, AttributeError, ...
        raise DataError(f"{path}: cannot load the LDA model ({exc.__class__.__name__}: {exc})") from None
    return _patch_old_model(lda)


def load_dictionary(path: str | os.PathLike) -> Dictionary:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: dictionary file not found (it must sit beside the .lda model)")
    try:
        d = Dictionary.load(str(path))
    except Exception as exc:  # damaged pickle
        raise DataError(f"{path}: cannot load the gensim dictionary ({exc.__class__.__name__}: {exc})") from None
    return _patch_old_dictionary(d)


def save_lda(lda: LdaModel, path: str | os.PathLike) -> list[Path]:
    """Save ``lda`` as ``path`` (+ gensim's side files) atomically; returns the files written.

    gensim writes several files itself, so they are written into a temporary folder and
    then renamed into place one by one (the stage's ``meta.json``, written last, is what
    marks the set as complete).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lda-save-", dir=path.parent))
    try:
        lda.save(str(tmp / path.name))
        written = []
        for f in sorted(tmp.iterdir()):
            target = path.parent / f.name
            os.replace(f, target)
            written.append(target)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _recorded(folder: Path, key: str) -> str | None:
    """A preprocessing choice our LDA stage recorded in its meta.json (None for foreign models)."""
    from ..core.provenance import read_meta

    meta = read_meta(folder) or {}
    name = meta.get(key)
    return name if isinstance(name, str) else None


def refilter_release_dictionary(dictionary: Dictionary, num_terms: int, source) -> bool:
    """Re-apply the release's ``filter_extremes`` to an unfiltered ``dictionary`` (in place).

    Returns False when the dictionary already matches the model (nothing done); raises
    :class:`DataError` when even the filtered dictionary does not match ``num_terms``.
    """
    if len(dictionary) <= num_terms and (not dictionary or max(dictionary.keys()) < num_terms):
        return False
    before = len(dictionary)
    if dictionary.num_docs:
        dictionary.filter_extremes(**RELEASE_DICTIONARY_FILTER)
    if len(dictionary) != num_terms:
        raise DataError(f"{source}: dictionary.dict has {before} words and {len(dictionary)} after the release's "
                        f"filter_extremes(no_below=20, no_above=0.5), but the model has {num_terms} terms: "
                        f"dictionary.dict does not belong to this model")
    log.info("%s: re-applied filter_extremes(no_below=20, no_above=0.5) to the unfiltered dictionary "
             "(%d -> %d words), as the release's label script does", source, before, len(dictionary))
    return True


class TopicModel:
    """A gensim LDA model plus its dictionary and the preprocessing that produced its corpus."""

    def __init__(self, lda: LdaModel, dictionary: Dictionary, lemmatizer: str = "wordnet",
                 source: Path | None = None, stop_words: str = "release", dictionary_refiltered: bool = False):
        self.lda = lda
        self.dictionary = dictionary
        self.lda.id2word = dictionary
        self.lemmatizer = lemmatizer
        self.stop_words = stop_words
        self.source = source
        self.dictionary_refiltered = dictionary_refiltered
        if dictionary and max(dictionary.keys()) >= lda.num_terms:
            raise DataError(f"{source or 'model'}: dictionary ids go up to {max(dictionary.keys())} but the model "
                            f"has {lda.num_terms} terms: dictionary.dict does not belong to this model")
        self._prep = None

    @classmethod
    def load(cls, path: str | os.PathLike, lemmatizer: str | None = None,
             stop_words: str | None = None) -> "TopicModel":
        """Load from a folder holding ``ldamodel{K}.lda`` + ``dictionary.dict``, or the ``.lda`` file.

        ``lemmatizer`` and ``stop_words`` default to those recorded by lda/02 (meta.json
        beside the model), else the release's (``wordnet``, ``release``): the published
        model was trained with them. An unfiltered dictionary (the published one) gets the
        release's ``filter_extremes`` again (see the module docstring).
        """
        model_file = find_model_file(path)
        folder = model_file.parent
        lda = load_lda(model_file)
        dictionary = load_dictionary(folder / DICTIONARY_NAME)
        refiltered = refilter_release_dictionary(dictionary, int(lda.num_terms), model_file)
        lem = lemmatizer or _recorded(folder, "lemmatizer") or "wordnet"
        stop = stop_words or _recorded(folder, "stop_words") or "release"
        return cls(lda, dictionary, lemmatizer=lem, source=model_file, stop_words=stop,
                   dictionary_refiltered=refiltered)

    @property
    def num_topics(self) -> int:
        return int(self.lda.num_topics)

    # --- text -> bag of words ---------------------------------------------------------
    def preprocessor(self):
        if self._prep is None:
            from .preprocess import Preprocessor

            self._prep = Preprocessor(self.lemmatizer, self.stop_words)
        return self._prep

    def bow(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        return self.dictionary.doc2bow(list(tokens))

    # --- inference --------------------------------------------------------------------
    @property
    def minimum_probability(self) -> float:
        """The cut-off of ``get_document_topics(minimum_probability=None)``: the model's own, at least 1e-8."""
        return max(float(self.lda.minimum_probability), 1e-8)

    def infer_bow(self, bows: Iterable[Sequence[tuple[int, float]]], empty: str = "raise",
                  seed: int = 0, rows: str = "dense") -> np.ndarray:
        """Topic vectors of bag-of-words documents: float32 ``(N, K)``; see ``empty`` and ``rows`` above."""
        if empty not in EMPTY_MODES:
            raise UserError(f"empty={empty!r}: choose one of {', '.join(EMPTY_MODES)}")
        if rows not in ROW_MODES:
            raise UserError(f"rows={rows!r}: choose one of {', '.join(ROW_MODES)}")
        bows = list(bows)
        k = self.num_topics
        cutoff = self.minimum_probability if rows == "release" else None
        out = np.empty((len(bows), k), dtype=np.float32)
        empty_rows = []
        saved_state = self.lda.random_state
        try:
            for i, bow in enumerate(bows):
                if len(bow) == 0:
                    empty_rows.append(i)
                    out[i] = np.nan if empty == "nan" else 1.0 / k
                    continue
                # Reseeding per document makes the vector a function of (text, seed) alone.
                self.lda.random_state = np.random.RandomState(seed)
                gamma, _ = self.lda.inference([bow])
                # gensim's own normalisation, in the model's dtype: the builtin sum() adds the
                # values one by one, as get_document_topics does, so cut-off decisions agree.
                total = sum(gamma[0])
                if not np.isfinite(total) or total <= 0:
                    raise DataError(f"document {i}: LDA inference gave a degenerate vector (sum {total})")
                dist = gamma[0] / total
                if cutoff is not None:
                    dist = np.where(dist >= cutoff, dist, 0)  # get_document_topics keeps value >= cut-off
                out[i] = dist
        finally:
            self.lda.random_state = saved_state
        if empty_rows and empty == "raise":
            shown = ", ".join(map(str, empty_rows[:10]))
            raise DataError(f"{len(empty_rows)} of {len(bows)} documents have no word in the topic model's "
                            f"dictionary (indices {shown}{'...' if len(empty_rows) > 10 else ''}); pass "
                            f"empty='uniform' or 'nan' to get a vector for them")
        return out

    def infer_tokens(self, token_lists: Iterable[Sequence[str]], empty: str = "raise", seed: int = 0,
                     rows: str = "dense") -> np.ndarray:
        return self.infer_bow((self.bow(t) for t in token_lists), empty=empty, seed=seed, rows=rows)

    def infer(self, raw_texts: Sequence[str], empty: str = "raise", seed: int = 0, rows: str = "dense") -> np.ndarray:
        """Topic vectors of raw texts (wiki markup allowed): float32 ``(N, K)``.

        ``empty``: what to do with a text that has no dictionary word after preprocessing:
        ``"raise"`` (DataError), ``"uniform"`` (1/K row) or ``"nan"`` (NaN row). ``rows``:
        ``"dense"`` (rows sum to 1) or ``"release"`` (the 0.01 cut-off, see the module docstring).
        """
        if isinstance(raw_texts, str):
            raise UserError("TopicModel.infer takes a list of texts, not one string")
        prep = self.preprocessor()
        return self.infer_tokens((prep(t or "") for t in raw_texts), empty=empty, seed=seed, rows=rows)

    # --- inspection -------------------------------------------------------------------
    def top_words(self, topic: int, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` most probable words of ``topic`` as ``(word, probability)``, most probable first."""
        if not 0 <= topic < self.num_topics:
            raise UserError(f"topic {topic} out of range 0..{self.num_topics - 1}")
        return [(str(w), float(p)) for w, p in self.lda.show_topic(topic, topn=n)]

    def topics(self, n: int = 10) -> list[list[tuple[str, float]]]:
        return [self.top_words(t, n) for t in range(self.num_topics)]

    def __repr__(self) -> str:
        return (f"TopicModel(num_topics={self.num_topics}, vocabulary={len(self.dictionary)}, "
                f"lemmatizer={self.lemmatizer!r}, stop_words={self.stop_words!r}, "
                f"source={str(self.source) if self.source else None!r})")

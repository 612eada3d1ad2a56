"""Text spaces: one interface for every way of turning texts into training targets and retrieval vectors.

Spaces (one module each, registered by name): ``lda`` (the paper's, default), ``lsi``
(TF-IDF + LSI), ``word2vec``, ``doc2vec``, ``fasttext``, ``glove`` (vectors from a file).
All on gensim. See base.py for the contract, targets.py for the CNN training targets,
similarity.py for scoring, docs/text_spaces.md for the benchmark.

Use::

    import texttopicnet
    space = texttopicnet.fit_text_space("word2vec", train_texts, seed=0, dim=100, weighting="tfidf")
    X = space.embed(test_texts)                     # float32 (N, space.dim), never NaN
    X, empty = space.embed(test_texts, return_empty=True)
    space.kind, space.similarity, space.dim        # "vector", "cosine", 100
    space.embed_words(["dog", "park"])              # word vectors (word2vec / fasttext / glove)
    space.nearest_known("dgo")                      # ['dog', ...]
    space.save("runs/demo/space")                   # a folder: manifest.json + gensim files
    same = texttopicnet.load_text_space("runs/demo/space")
    lda = texttopicnet.load_text_space("runs/demo/lda")   # an lda/02 folder (or ldamodel40.lda)
    glove = texttopicnet.fit_text_space("glove", train_texts, vectors="glove.6B.50d.txt")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ...core.errors import DataError, UserError
from . import doc2vec, fasttext, glove, lda, lsi, word2vec  # noqa: F401  (registers the spaces)
from .base import MANIFEST, REGISTRY, TextSpace, UnknownWordsError, read_manifest, register
from .similarity import distance_matrix, leave_one_out_map
from .targets import check_targets, default_target, make_targets

SPACES = tuple(REGISTRY)
DEFAULT_SPACE = "lda"


def space_class(kind: str) -> type[TextSpace]:
    if kind not in REGISTRY:
        raise UserError(f"unknown text space {kind!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[kind]


def default_options(kind: str) -> dict:
    """The options a space is fit with when none are given (paper / related-work values)."""
    return dict(space_class(kind).DEFAULTS)


def fit_text_space(kind: str, texts: Sequence[str], seed: int = 0, **options) -> TextSpace:
    """Fit space ``kind`` on raw ``texts`` (a list of str); ``options`` are the space's (see its module).

    Every space also takes ``tokenizer=`` ("project" default, "instacities", "simple",
    "whitespace") and ``lemmatizer=`` (project tokenizer). For ``glove``, ``vectors=PATH``.
    """
    return space_class(kind).fit(texts, seed=seed, **options)


def fit_text_space_tokens(kind: str, token_lists, seed: int = 0, **options) -> TextSpace:
    """Fit on texts already tokenised by the tokenizer ``tokenizer=`` names (e.g. lda/02's tokens.txt)."""
    return space_class(kind).fit_tokens(token_lists, seed=seed, **options)


def load_text_space(path: str | os.PathLike, verify: bool = True) -> TextSpace:
    """A space saved by ``space.save(path)``, or an LDA model folder / ``.lda`` file (lda/02, published).

    ``verify`` checks every saved file against the sha256 in the manifest.
    """
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        manifest = read_manifest(path, verify=verify)
        space = REGISTRY[manifest["space"]]._load_files(path, manifest)
        if space.dim != manifest.get("dim"):
            raise DataError(f"{path}: the saved model has {space.dim} dimensions, the manifest says {manifest.get('dim')}")
        return space
    if not path.exists():
        raise UserError(f"{path}: no text space here (not found)")
    try:
        return lda.LdaSpace.from_model(path)
    except DataError as exc:
        raise DataError(f"{path}: neither a saved text space ({MANIFEST}) nor an LDA model ({exc})") from None


__all__ = (
    "DEFAULT_SPACE",
    "SPACES",
    "TextSpace",
    "UnknownWordsError",
    "check_targets",
    "default_options",
    "default_target",
    "distance_matrix",
    "fit_text_space",
    "fit_text_space_tokens",
    "leave_one_out_map",
    "load_text_space",
    "make_targets",
    "register",
    "space_class",
)

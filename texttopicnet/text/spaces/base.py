"""The text-space interface, its registry, and the saved-folder format every space shares.

A *text space* maps texts to fixed-size float32 vectors. Every implementation (one module
per space in this package) subclasses :class:`TextSpace` and registers itself with
``@register("name")``. What they share:

- ``kind``: ``"distribution"`` (rows are probability distributions: LDA) or ``"vector"``
  (real vectors: LSI, word2vec, doc2vec, fastText, GloVe); ``similarity``: ``"kl"`` for
  distributions (the paper's KL(query || item)), ``"cosine"`` for vectors;
- ``embed(texts)`` -> float32 ``(N, dim)``, never NaN. A text with no usable word (empty,
  only stop words, no word the space knows) gets the *empty row*: the uniform
  distribution ``1/K`` for distributions, the zero vector for vectors; ``embed(texts,
  return_empty=True)`` also returns the boolean mask of those rows so callers can drop them;
- ``embed_words(words)`` (spaces with word vectors only: word2vec, fastText, GloVe) ->
  float32 ``(len(words), dim)``; unknown words raise :class:`UnknownWordsError` (a
  ``KeyError``) naming all of them; ``nearest_known(word, n)`` suggests known words;
- ``save(path)`` writes a folder atomically: ``manifest.json`` (space, kind, similarity,
  dim, seed, options, tokenizer, library versions, sha256 of every file) plus the
  gensim files; ``load_text_space(path)`` reads any of them back with identical embeddings.

Tokenisation is the same for every space by default (the project's preprocessing, see
``tokenizers.py``); the tokenizer spec is an option recorded in the manifest.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import DataError, UserError
from ...core.io import read_json, sha256_file, write_json
from .tokenizers import Tokenizer, check_texts, check_token_lists, make_tokenizer

KINDS = ("distribution", "vector")
SIMILARITY = {"distribution": "kl", "vector": "cosine"}
MANIFEST = "manifest.json"
FORMAT = "texttopicnet-text-space"
FORMAT_VERSION = 1
VERSION_LIBS = ("numpy", "scipy", "gensim", "nltk", "simplemma", "stop-words")
# Options every space takes (how texts become tokens); the rest are the space's own.
TOKENIZER_OPTIONS = ("tokenizer", "lemmatizer", "stop_words")

REGISTRY: dict[str, type[TextSpace]] = {}


def register(name: str):
    """Class decorator: make a :class:`TextSpace` subclass available as ``fit_text_space(name, ...)``."""
    def deco(cls):
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"text space {name!r} registered twice")
        if cls.kind not in KINDS:
            raise ValueError(f"text space {name!r}: kind must be one of {KINDS}")
        cls.name = name
        cls.similarity = SIMILARITY[cls.kind]
        REGISTRY[name] = cls
        return cls
    return deco


class UnknownWordsError(KeyError):
    """Words the space has no vector for. ``.words`` lists every one of them, in input order."""

    def __init__(self, words: Sequence[str], space: str = ""):
        self.words = list(words)
        self.space = space
        shown = ", ".join(repr(w) for w in self.words[:50])
        more = f" (and {len(self.words) - 50} more)" if len(self.words) > 50 else ""
        where = f" the {space} space" if space else " this space"
        super().__init__(f"{len(self.words)} word(s) unknown to{where}: {shown}{more}; "
                         f"nearest_known(word) suggests known words")

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])


class TextSpace:
    """Base class; see the module docstring for the contract. Subclasses fill in the ``_`` hooks."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "vector"
    # "kl" for distributions (the paper's retrieval score), "cosine" for vectors; set by @register.
    similarity: ClassVar[str] = "cosine"
    has_word_vectors: ClassVar[bool] = False
    # Option defaults, each from the paper or the related work (the module says which).
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: dict, seed: int, tokenizer: Tokenizer):
        self.options = dict(options)
        self.seed = int(seed)
        self.tokenizer = tokenizer
        self.info: dict[str, Any] = {}

    # --- what a space is ------------------------------------------------------------------
    @property
    def dim(self) -> int:
        raise NotImplementedError

    def vocabulary(self) -> list[str]:
        """The words the space knows (most frequent first where the model keeps an order)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, dim={self.dim}, seed={self.seed}, "
                f"tokenizer={self.tokenizer.spec})")

    # --- fitting ------------------------------------------------------------------------
    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        """The defaults updated with ``options``; an unknown option is a :class:`UserError`."""
        unknown = sorted(set(options) - set(cls.DEFAULTS))
        if unknown:
            raise UserError(f"{cls.name} space: unknown option(s) {', '.join(unknown)}; it takes "
                            f"{', '.join(sorted(cls.DEFAULTS))} (and tokenizer=, lemmatizer=, stop_words=)")
        opts = {**cls.DEFAULTS, **options}
        cls.check_options(opts)
        return opts

    @classmethod
    def check_options(cls, opts: dict) -> None:
        """Raise :class:`UserError` for a bad option value (subclasses extend)."""

    @classmethod
    def fit(cls, texts: Sequence[str], seed: int = 0, **options) -> TextSpace:
        """Fit on raw texts. ``tokenizer=`` (name or spec), ``lemmatizer=``, ``stop_words=`` choose the tokens."""
        texts = check_texts(texts)
        tokenizer = make_tokenizer(_tokenizer_spec(options))
        return cls._fit_tokens(tokenizer.many(texts), seed, options, tokenizer)

    @classmethod
    def fit_tokens(cls, token_lists: Iterable[Sequence[str]], seed: int = 0, **options) -> TextSpace:
        """Fit on texts already tokenised by the tokenizer that ``tokenizer=`` names (recorded as such).

        For a stage that has its tokens already (lda/02's ``tokens.txt``); ``embed`` on raw
        texts later uses that tokenizer, so it must be the one that made the tokens.
        """
        tokenizer = make_tokenizer(_tokenizer_spec(options))
        return cls._fit_tokens(check_token_lists(token_lists), seed, options, tokenizer)

    @classmethod
    def _fit_tokens(cls, token_lists: list[list[str]], seed: int, options: dict, tokenizer: Tokenizer):
        if not token_lists:
            raise UserError(f"{cls.name} space: no texts to fit on")
        space = cls(cls.resolve_options(options), seed, tokenizer)
        t0 = time.perf_counter()
        space._fit(token_lists)
        space.info.update(fit_seconds=round(time.perf_counter() - t0, 3), fit_texts=len(token_lists),
                          fit_texts_without_tokens=sum(1 for t in token_lists if not t),
                          fit_tokens=sum(len(t) for t in token_lists))
        return space

    def _fit(self, token_lists: list[list[str]]) -> None:
        raise NotImplementedError

    # --- embedding ----------------------------------------------------------------------
    def embed(self, texts: Sequence[str], *, return_empty: bool = False):
        """float32 ``(N, dim)`` for raw texts; with ``return_empty`` also the bool mask of empty rows."""
        texts = check_texts(texts)
        return self.embed_tokens(self.tokenizer.many(texts), return_empty=return_empty)

    def embed_tokens(self, token_lists: Iterable[Sequence[str]], *, return_empty: bool = False):
        """:meth:`embed` for texts already tokenised by this space's tokenizer."""
        token_lists = check_token_lists(token_lists)
        if not token_lists:
            out, empty = np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=bool)
        else:
            out, empty = self._embed(token_lists)
            out = np.ascontiguousarray(out, dtype=np.float32)
            empty = np.asarray(empty, dtype=bool)
            out[empty] = self.empty_row()
            if not np.isfinite(out).all():  # a model bug, never the user's input
                raise DataError(f"{self.name} space produced non-finite values for "
                                f"{int((~np.isfinite(out)).any(axis=1).sum())} text(s)")
        return (out, empty) if return_empty else out

    def _embed(self, token_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors (N, dim), empty mask (N,)); rows flagged empty are overwritten by the base."""
        raise NotImplementedError

    def empty_row(self) -> np.ndarray:
        """The row given to a text with no usable word: uniform for distributions, zeros for vectors."""
        if self.kind == "distribution":
            return np.full(self.dim, 1.0 / self.dim, dtype=np.float32)
        return np.zeros(self.dim, dtype=np.float32)

    def distances(self, queries: np.ndarray, items: np.ndarray) -> np.ndarray:
        """float64 ``(n_queries, n_items)``, smaller = closer, by this space's similarity."""
        from .similarity import distance_matrix

        return distance_matrix(self.similarity, queries, items)

    # --- words --------------------------------------------------------------------------
    def nearest_known(self, word: str, n: int = 5, cutoff: float = 0.6) -> list[str]:
        """Up to ``n`` known words closest in spelling to ``word`` (difflib ratio >= ``cutoff``).

        Best first; ties go to the more frequent word; a known word comes back first itself.
        The word is first normalised as the space's texts are (``Dogs`` -> ``dog``). Candidates
        are the :data:`CANDIDATES` vocabulary words sharing the most character bigrams with
        it (an inverted index built on the first call), so a query over GloVe's 400k words
        takes milliseconds; difflib then ranks them.
        """
        w = self.tokenizer.word(word)
        if not w or n <= 0:
            return []
        index = self._bigram_index()
        grams = [g for g in set(_bigrams(w)) if g in index.postings]
        if not grams:
            return []
        shared = np.bincount(np.concatenate([index.postings[g] for g in grams]), minlength=len(index.words))
        dice = 2.0 * shared / (len(set(_bigrams(w))) + index.sizes)
        top = np.argpartition(-dice, min(CANDIDATES, len(dice) - 1))[:CANDIDATES]
        sm = difflib.SequenceMatcher(autojunk=False)
        sm.set_seq2(w)
        scored = []
        for i in top.tolist():
            if shared[i] == 0:
                continue
            sm.set_seq1(index.words[i])
            r = sm.ratio()
            if r >= cutoff:
                scored.append((-r, i, index.words[i]))
        scored.sort()
        return [c for _, _, c in scored[:n]]

    def _bigram_index(self) -> _BigramIndex:
        index = getattr(self, "_bigrams_cache", None)
        if index is None:
            index = self._bigrams_cache = _BigramIndex(self.vocabulary())
        return index

    def normalise_words(self, words: Sequence[str]) -> list[str]:
        if isinstance(words, str):
            raise UserError("embed_words takes a list of words, not one string")
        return [self.tokenizer.word(str(w)) for w in words]

    # --- saving -------------------------------------------------------------------------
    def _save_files(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> TextSpace:
        raise NotImplementedError

    def manifest(self, files: dict[str, str]) -> dict:
        from ...core.provenance import library_versions

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "space": self.name, "kind": self.kind,
                "similarity": self.similarity, "dim": self.dim, "seed": self.seed, "options": self.options,
                "tokenizer": self.tokenizer.spec, "info": self.info,
                "versions": library_versions(VERSION_LIBS),
                "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 (py3.9)
                "files": files}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the space to folder ``path`` atomically (temp folder, then rename); returns ``path``.

        An existing saved space at ``path`` is replaced; any other existing folder with
        files in it is refused (a stage folder, for example, is never overwritten).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: exists and is not a folder; a text space is saved as a folder")
        if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
            raise UserError(f"{path}: folder exists and is not a saved text space (no {MANIFEST}); not overwriting")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            self._save_files(tmp)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            write_json(tmp / MANIFEST, self.manifest(files))
            if path.exists():
                old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(path, old)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old, path)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path


def _tokenizer_spec(options: dict) -> dict:
    """Take ``tokenizer=``, ``lemmatizer=``, ``stop_words=`` out of ``options`` (mutates it); default: the project's."""
    tok = options.pop("tokenizer", None)
    spec = {"name": "project"} if tok is None else ({"name": tok} if isinstance(tok, str) else dict(tok))
    for key in TOKENIZER_OPTIONS[1:]:
        value = options.pop(key, None)
        if value is not None:
            spec[key] = value
    return spec


def read_manifest(folder: Path, verify: bool = True) -> dict:
    """The manifest of a saved space; with ``verify`` every listed file's sha256 is checked."""
    try:
        manifest = read_json(folder / MANIFEST)
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder / MANIFEST}: cannot read the text-space manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{folder / MANIFEST}: not a text-space manifest (format {manifest.get('format')!r})"
                        if isinstance(manifest, dict) else f"{folder / MANIFEST}: not a JSON object")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{folder}: saved by a newer version (format {manifest['format_version']}); upgrade")
    if manifest.get("space") not in REGISTRY:
        raise DataError(f"{folder}: unknown text space {manifest.get('space')!r}; known: {', '.join(REGISTRY)}")
    if verify:
        for name, digest in (manifest.get("files") or {}).items():
            f = folder / name
            if not f.is_file():
                raise DataError(f"{f}: missing from the saved text space")
            if sha256_file(f) != digest:
                raise DataError(f"{f}: changed since the space was saved (sha256 mismatch)")
    return manifest


CANDIDATES = 200  # vocabulary words (most shared character bigrams) that nearest_known ranks with difflib


def _bigrams(word: str) -> list[str]:
    padded = f"<{word}>"  # the first and last letters count as much as the others
    return [padded[i:i + 2] for i in range(len(padded) - 1)]


class _BigramIndex:
    """Inverted index character bigram -> ids of the vocabulary words holding it (vocabulary order)."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        postings: dict[str, list[int]] = {}
        sizes = np.zeros(len(self.words), dtype=np.float64)
        for i, w in enumerate(self.words):
            grams = set(_bigrams(w))
            sizes[i] = len(grams)
            for g in grams:
                postings.setdefault(g, []).append(i)
        self.sizes = sizes
        self.postings = {g: np.asarray(ids, dtype=np.int64) for g, ids in postings.items()}

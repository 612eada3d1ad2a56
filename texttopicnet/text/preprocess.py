"""Article text preprocessing for the LDA topic space, exactly as the paper does it, but fast.

The steps, in the paper's order (see ../shared/REFERENCE.md, "Stage 2"):

1. gensim's ``filter_wiki`` (wiki markup removal);
2. a regex that drops wiki-table attribute runs (``{| class="x"``, ``|- style=...``,
   ``| align="left" |``) that ``filter_wiki`` leaves behind;
3. lower-case; 4. tokens are ``\\w+`` runs; 5. drop English stop words (the
   ``stop-words`` package list); 6. lemmatise (noun POS); 7. strip every character
   outside ``[a-z]``; 8. keep tokens longer than 2 characters.

Steps 5-8 depend on the token alone, so :class:`Preprocessor` caches the final
result per distinct token: each word form is lemmatised once per process, not once
per occurrence (Zipf: a 35k-article corpus has ~50M tokens but ~1M forms).
:func:`preprocess_many` spreads documents over worker processes.

Lemmatisers (``--lemmatizer``): ``wordnet`` is the paper's NLTK WordNetLemmatizer
and needs the WordNet data (``python -m nltk.downloader wordnet``); ``simplemma``
is a pip-only lemmatiser with its dictionary inside the wheel (works offline);
``none`` skips lemmatisation; ``auto`` picks WordNet when its data is installed,
else simplemma, else none (with a warning). The choice is recorded by the stages.

Use::

    from texttopicnet.text.preprocess import preprocess, Preprocessor
    preprocess("The '''cats''' sat on [[mat|mats]].")        # ['cat', 'sat', 'mat']
    prep = Preprocessor("simplemma"); prep(raw_text)
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import re
import sys
import warnings
from typing import Callable, Iterable, Iterator, Sequence

from gensim.corpora.wikicorpus import filter_wiki
from stop_words import get_stop_words

from ..core.errors import UserError

LEMMATIZERS = ("auto", "wordnet", "simplemma", "none")

# A table delimiter ({| |- |} | !) followed by one or more key=value attributes, plus the
# cell separator that closes the run. filter_wiki keeps these inside cells and they
# would otherwise become tokens such as "wikitable", "align", "style".
TABLE_ATTRIBUTES = re.compile(
    r"(?:\{\||\|-|\|\}|\|\||\||!)"
    r"(?:\s*[\w-]+\s*=\s*(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s|!]+))+"
    r"\s*(?:\|(?!\|))?",
    re.UNICODE)
TOKEN = re.compile(r"\w+", re.UNICODE)
NON_ASCII_LETTERS = re.compile(r"[^a-z]")
MIN_LENGTH = 3  # the paper keeps tokens longer than 2 characters

# Above this many cached forms the cache is cleared (bounded memory on huge corpora;
# one entry is ~150 bytes, so 2M forms is ~300 MB per worker at most).
CACHE_LIMIT = 2_000_000


@functools.lru_cache(maxsize=1)
def stop_words_en() -> frozenset[str]:
    """The ``stop-words`` package's English list, as a set (O(1) membership)."""
    return frozenset(get_stop_words("en"))


def wordnet_available() -> bool:
    """True when NLTK and its WordNet data can be used here (nothing is downloaded)."""
    try:
        from nltk.stem import WordNetLemmatizer

        WordNetLemmatizer().lemmatize("dogs")
        return True
    except (ImportError, LookupError, OSError):
        return False


def simplemma_available() -> bool:
    try:
        import simplemma  # noqa: F401
        return True
    except ImportError:
        return False


def resolve_lemmatizer(name: str = "auto") -> str:
    """Turn ``auto`` into a concrete lemmatiser name; check that the requested one works."""
    if name not in LEMMATIZERS:
        raise UserError(f"unknown lemmatizer {name!r}; choose one of {', '.join(LEMMATIZERS)}")
    if name == "auto":
        if wordnet_available():
            return "wordnet"
        if simplemma_available():
            return "simplemma"
        warnings.warn("neither NLTK WordNet data nor simplemma is installed: preprocessing without "
                      "lemmatisation (pip install simplemma, or python -m nltk.downloader wordnet)")
        return "none"
    if name == "wordnet" and not wordnet_available():
        raise UserError("--lemmatizer wordnet needs NLTK's WordNet data: run `python -m nltk.downloader wordnet` "
                        "(needs internet once), or use --lemmatizer simplemma (pip-only, offline)")
    if name == "simplemma" and not simplemma_available():
        raise UserError("--lemmatizer simplemma needs the simplemma package: pip install simplemma")
    return name


def make_lemmatize(name: str) -> Callable[[str], str]:
    """A one-token lemmatise function for a concrete lemmatiser name (no ``auto``)."""
    if name == "wordnet":
        from nltk.stem import WordNetLemmatizer

        return WordNetLemmatizer().lemmatize  # default POS is noun, as in the paper
    if name == "simplemma":
        from simplemma import Lemmatizer

        # simplemma's own LRU cache is redundant with ours: keep it small. It restores the
        # dictionary's capitals ("zealand" -> "Zealand"); WordNet returns lower case, and the
        # paper's [^a-z] strip would turn "Zealand" into "ealand", so lower-case the lemma.
        lem = Lemmatizer(cache_max_size=1024)
        return lambda token: lem.lemmatize(token, "en").lower()
    if name == "none":
        return lambda token: token
    raise UserError(f"unknown lemmatizer {name!r}; choose one of {', '.join(LEMMATIZERS)}")


def clean_markup(raw: str) -> str:
    """Steps 1-3: wiki markup and table attributes removed, lower-cased."""
    text = filter_wiki(raw)
    text = TABLE_ATTRIBUTES.sub(" ", text)
    return text.lower()


class Preprocessor:
    """The paper's preprocessing with a per-token cache; call it on a raw article text.

    ``lemmatizer`` is one of :data:`LEMMATIZERS`; ``self.lemmatizer`` is the resolved name.
    """

    def __init__(self, lemmatizer: str = "auto"):
        self.lemmatizer = resolve_lemmatizer(lemmatizer)
        self._lemmatize = make_lemmatize(self.lemmatizer)
        self._stop = stop_words_en()
        # raw lower-case token -> final token, or "" when it is dropped
        self._cache: dict[str, str] = {}

    def token(self, tok: str) -> str | None:
        """Steps 5-8 for one lower-case ``\\w+`` token (uncached)."""
        if tok in self._stop:
            return None
        lemma = NON_ASCII_LETTERS.sub("", self._lemmatize(tok))
        return lemma if len(lemma) >= MIN_LENGTH else None

    def tokens(self, text: str) -> list[str]:
        """Steps 4-8 on already cleaned, lower-cased text."""
        cache = self._cache
        toks = TOKEN.findall(text)
        missing = set(toks).difference(cache)
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                cache.clear()
                missing = set(toks)
            for tok in missing:
                cache[tok] = self.token(tok) or ""  # "" marks a dropped token
        # Every token is now cached: one C-level pass maps and drops ("" is falsy).
        return list(filter(None, map(cache.__getitem__, toks)))

    def __call__(self, raw: str) -> list[str]:
        if not raw:
            return []
        return self.tokens(clean_markup(raw))


@functools.lru_cache(maxsize=None)
def _shared_preprocessor(lemmatizer: str) -> Preprocessor:
    return Preprocessor(lemmatizer)


def preprocess(raw: str, lemmatizer: str = "auto") -> list[str]:
    """Tokens of one raw article text (wiki markup allowed), as the paper preprocesses it.

    Returns ``[]`` for a text with no content words; never raises on odd characters.
    """
    return _shared_preprocessor(lemmatizer)(raw)


# --- parallel preprocessing -------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(lemmatizer: str, reader: Callable[[str], str] | None) -> None:
    _WORKER["prep"] = Preprocessor(lemmatizer)
    _WORKER["reader"] = reader


def _work(task: tuple[int, str]) -> tuple[int, list[str] | None, str | None]:
    index, payload = task
    reader = _WORKER["reader"]
    try:
        raw = reader(payload) if reader is not None else payload
    except (OSError, ValueError) as exc:  # unreadable file: reported, never a crash
        return index, None, f"{exc.__class__.__name__}: {exc}"
    return index, _WORKER["prep"](raw), None


def mp_context():
    """``fork`` where available (cheap start, workers inherit loaded modules), else ``spawn``."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() and sys.platform != "darwin" else "spawn")


def preprocess_many(items: Iterable[str], lemmatizer: str = "auto", workers: int = 1,
                    reader: Callable[[str], str] | None = None, chunksize: int = 8
                    ) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Preprocess many documents, in order, over ``workers`` processes.

    ``items`` are raw texts, or paths when ``reader`` (a module-level function such as
    ``imageclef.read_article``) is given. Yields ``(index, tokens, error)``: ``tokens`` is
    ``None`` and ``error`` a message when the reader failed with an ``OSError``/``ValueError``.
    Memory stays bounded: items are consumed lazily and results streamed in order.
    """
    lemmatizer = resolve_lemmatizer(lemmatizer)
    tasks = enumerate(items)
    if workers <= 1:
        _init_worker(lemmatizer, reader)
        for task in tasks:
            yield _work(task)
        return
    with mp_context().Pool(workers, initializer=_init_worker, initargs=(lemmatizer, reader)) as pool:
        yield from pool.imap(_work, tasks, chunksize=chunksize)


class _RegexpTokenizer:
    """The original's ``nltk.RegexpTokenizer(r'\\w+')`` as NLTK had it then: stdlib ``re``, compiled per instance.

    NLTK >= 3.10 compiles caller patterns with the third-party ``regex`` engine, whose
    ``\\w`` also matches combining marks, so "İstanbul".lower() ("i" + U+0307 ...) stays one
    token there but is split by ``re`` (and by the NLTK/Python 2 the paper used).
    """

    def __init__(self, pattern: str):
        self._regexp = re.compile(pattern, re.UNICODE | re.MULTILINE | re.DOTALL)

    def tokenize(self, text: str) -> list[str]:
        return self._regexp.findall(text)


def naive_preprocess(raw: str, lemmatizer: str) -> list[str]:
    """The original script's structure, kept as the benchmark baseline and a reference.

    Tokenizer, lemmatiser and stop-word list are created per document, stop words are a
    list (linear membership), and every token occurrence is lemmatised again.
    Returns the same tokens as :func:`preprocess` with the same lemmatiser.
    """
    tokenizer = _RegexpTokenizer(r"\w+")
    if lemmatizer == "simplemma":
        from simplemma import Lemmatizer

        lem = Lemmatizer(cache_max_size=0)  # no caching, like WordNetLemmatizer
        lemmatize = lambda t: lem.lemmatize(t, "en").lower()  # noqa: E731
    else:
        lemmatize = make_lemmatize(lemmatizer)
    en_stop = list(get_stop_words("en"))
    text = filter_wiki(raw)
    text = TABLE_ATTRIBUTES.sub(" ", text)
    tokens = tokenizer.tokenize(text.lower())
    tokens = [t for t in tokens if t not in en_stop]
    tokens = [lemmatize(t) for t in tokens]
    tokens = [re.sub(r"[^a-z]", "", t) for t in tokens]
    return [t for t in tokens if len(t) > 2]


__all__: Sequence[str] = ("preprocess", "Preprocessor", "preprocess_many", "resolve_lemmatizer", "LEMMATIZERS",
                          "clean_markup", "naive_preprocess", "stop_words_en", "wordnet_available")

"""Article text preprocessing for the LDA topic space, exactly as the release does it, but fast.

The steps, in the release's order (see ../shared/REFERENCE.md, "Stage 2"):

1. gensim's ``filter_wiki`` (wiki markup removal);
2. the release's ``filter_more`` regex (:data:`TABLE_ATTRIBUTES`: a table delimiter
   ``{| |- |} | !`` followed by ``key=value`` attributes), matches REMOVED (replaced by "");
3. lower-case; 4. tokens are ``\\w+`` runs; 5. drop English stop words; 6. lemmatise
   (noun POS); 7. strip every character outside ``[a-z]``; 8. keep tokens longer than 2
   characters. Stop words go before lemmatising, so a lemma may be a stop word
   ("dates" -> "date") and "was" becomes "wa": the release's real behaviour.

Steps 5-8 depend on the token alone, so :class:`Preprocessor` caches the final
result per distinct token: each word form is lemmatised once per process, not once
per occurrence (Zipf: a 35k-article corpus has ~50M tokens but ~1M forms).
:func:`preprocess_many` spreads documents over worker processes.

Stop words (``--stop-words``, registry :data:`STOP_LISTS`): ``release`` (default) is the
``stop-words`` package's English list of the release's era (versions 2015.x to 2018.7.23,
174 words), recorded in ``stop_words_en_2018.txt`` beside this module so the default does
not depend on the installed version; ``package`` is whatever the installed ``stop-words``
returns (1,333 words in 2025.11.4: a different vocabulary, different topics).

Lemmatisers (``--lemmatizer``, :data:`LEMMATIZERS`): ``wordnet`` (default) is the release's
NLTK WordNetLemmatizer; it needs WordNet data on NLTK's search path (``$NLTK_DATA``
first), which ``python -m texttopicnet.text.wordnet --install`` provides offline from
Debian's packages (or with ``nltk.download``). Without the data ``wordnet`` FAILS with a
:class:`UserError` naming the fix, never silently. ``auto`` uses WordNet when present,
else falls back to simplemma (else none) WITH a warning, and the stages record the
fallback in meta.json. ``simplemma`` (pip-only, offline) also lemmatises verbs and
adjectives ("came" -> "come"), so it changes the vocabulary; ``none`` skips lemmatising.

Use::

    from texttopicnet.text.preprocess import preprocess, Preprocessor
    preprocess("The '''cats''' sat on [[mat|mats]].")        # ['cat', 'sat', 'mat']
    prep = Preprocessor("wordnet", stop_words="release"); prep(raw_text)
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from gensim.corpora.wikicorpus import filter_wiki

from ..core.errors import UserError
from . import wordnet

DEFAULT_LEMMATIZER = "wordnet"   # the release's NLTK WordNetLemmatizer (noun POS)
DEFAULT_STOP_WORDS = "release"   # the 174-word list of stop-words 2015.x-2018.7.23
LEMMATIZERS = ("wordnet", "auto", "simplemma", "none")

# The release's ``filter_more``, flags included: a table delimiter ({| |- |} | !), one or
# more ``key=value`` attributes (the value "quoted", lazily and across lines under
# DOTALL, or a run of characters other than whitespace and |), then an optional
# delimiter. The release replaces every match with "" (:data:`TABLE_REPLACEMENT`).
TABLE_ATTRIBUTES = re.compile(
    r"(?:\{\||\|-|\|\}|\||!)"
    r"(?:\s*\w+=(?:\".*?\"|[^ \t\n\r\f\v|]+)\s*)+"
    r"(?:\{\||\|-|\|\}|\|)?",
    re.UNICODE | re.DOTALL | re.MULTILINE)
TABLE_REPLACEMENT = ""
TOKEN = re.compile(r"\w+", re.UNICODE)
NON_ASCII_LETTERS = re.compile(r"[^a-z]")
MIN_LENGTH = 3  # the release keeps tokens longer than 2 characters

# Above this many cached forms the cache is cleared (bounded memory on huge corpora;
# one entry is ~150 bytes, so 2M forms is ~300 MB per worker at most).
CACHE_LIMIT = 2_000_000

RELEASE_STOP_FILE = Path(__file__).with_name("stop_words_en_2018.txt")


# --- stop words -------------------------------------------------------------------------

def _release_stop_words() -> list[str]:
    # Byte-identical to stop_words/stop-words/english.txt of the stop-words 2018.7.23 sdist;
    # get_stop_words('en') of that version returns these lines, stripped.
    return [w.strip() for w in RELEASE_STOP_FILE.read_text(encoding="utf-8").splitlines() if w.strip()]


def _package_stop_words() -> list[str]:
    try:
        from stop_words import get_stop_words
    except ImportError:
        raise UserError("--stop-words package needs the stop-words package: pip install stop-words") from None
    return list(get_stop_words("en"))


def _package_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("stop-words")
    except metadata.PackageNotFoundError:
        return None


# name -> (loader, description recorded in meta.json)
STOP_LISTS: dict[str, tuple[Callable[[], list[str]], Callable[[], str]]] = {
    "release": (_release_stop_words, lambda: "stop-words 2018.7.23 English list (the release's era, 2015.x-"
                                             "2018.7.23), recorded in texttopicnet/text/stop_words_en_2018.txt"),
    "package": (_package_stop_words, lambda: f"the installed stop-words {_package_version()} English list"),
}


@functools.lru_cache(maxsize=None)
def stop_words_en(name: str = DEFAULT_STOP_WORDS) -> frozenset[str]:
    """The named English stop list (:data:`STOP_LISTS`), as a set (O(1) membership)."""
    if name not in STOP_LISTS:
        raise UserError(f"unknown stop-word list {name!r}; choose one of {', '.join(STOP_LISTS)}")
    return frozenset(STOP_LISTS[name][0]())


def stop_words_record(name: str = DEFAULT_STOP_WORDS) -> dict:
    """What the stages write into meta.json about the stop list they used."""
    return {"stop_words": name, "stop_words_count": len(stop_words_en(name)),
            "stop_words_source": STOP_LISTS[name][1]()}


# --- lemmatisers ------------------------------------------------------------------------

def wordnet_available() -> bool:
    """True when NLTK's WordNetLemmatizer finds its data on NLTK's search path (nothing is downloaded)."""
    return wordnet.nltk_wordnet_works()


def simplemma_available() -> bool:
    try:
        import simplemma  # noqa: F401
        return True
    except ImportError:
        return False


WORDNET_MISSING = ("NLTK's WordNet data is not on NLTK's search path (nltk.data.path, $NLTK_DATA first); install "
                   "it with `python -m texttopicnet.text.wordnet --install` (copies Debian's wordnet-base + "
                   "wordnet-sense-index, else uses nltk.download)")


def resolve_lemmatizer_noted(name: str = DEFAULT_LEMMATIZER) -> tuple[str, str | None]:
    """``(concrete lemmatiser, fallback note or None)``; the stages record both in meta.json.

    ``wordnet`` without its data raises :class:`UserError`; ``auto`` then falls back to
    simplemma (else none) with a warning, and returns the reason as the note.
    """
    if name not in LEMMATIZERS:
        raise UserError(f"unknown lemmatizer {name!r}; choose one of {', '.join(LEMMATIZERS)}")
    if name == "auto":
        if wordnet_available():
            return "wordnet", None
        fallback = "simplemma" if simplemma_available() else "none"
        note = (f"--lemmatizer auto fell back to {fallback}: {WORDNET_MISSING}. The tokens differ from the "
                f"release's (simplemma also lemmatises verbs and adjectives)")
        warnings.warn(note, stacklevel=2)
        return fallback, note
    if name == "wordnet" and not wordnet_available():
        raise UserError(f"--lemmatizer wordnet (the release's, the default): {WORDNET_MISSING}; or pass "
                        f"--lemmatizer auto or simplemma to run with another lemmatiser (recorded in meta.json)")
    if name == "simplemma" and not simplemma_available():
        raise UserError("--lemmatizer simplemma needs the simplemma package: pip install simplemma")
    return name, None


def resolve_lemmatizer(name: str = DEFAULT_LEMMATIZER) -> str:
    """Turn ``auto`` into a concrete lemmatiser name; check that the requested one works."""
    return resolve_lemmatizer_noted(name)[0]


def _simplemma_lemmatize() -> Callable[[str], str]:
    from simplemma import Lemmatizer

    # simplemma's own LRU cache is redundant with ours: keep it small. It restores the
    # dictionary's capitals ("zealand" -> "Zealand"); WordNet returns lower case, and the
    # release's [^a-z] strip would turn "Zealand" into "ealand", so lower-case the lemma.
    lem = Lemmatizer(cache_max_size=1024)
    return lambda token: lem.lemmatize(token, "en").lower()


def _wordnet_lemmatize() -> Callable[[str], str]:
    # NLTK's WordNetLemmatizer().lemmatize with the noun POS (the release's call), through a
    # reader that skips NLTK's unused multilingual sense map (15 s per process otherwise)
    return wordnet.noun_lemmatizer()


_LEMMATIZE_FACTORIES: dict[str, Callable[[], Callable[[str], str]]] = {
    "wordnet": _wordnet_lemmatize,
    "simplemma": _simplemma_lemmatize,
    "none": lambda: (lambda token: token),
}


def make_lemmatize(name: str) -> Callable[[str], str]:
    """A one-token lemmatise function for a concrete lemmatiser name (no ``auto``)."""
    if name not in _LEMMATIZE_FACTORIES:
        raise UserError(f"unknown lemmatizer {name!r}; choose one of {', '.join(_LEMMATIZE_FACTORIES)}")
    return _LEMMATIZE_FACTORIES[name]()


# --- the steps --------------------------------------------------------------------------

def clean_markup(raw: str) -> str:
    """Steps 1-3: wiki markup and the release's table attributes removed, lower-cased."""
    text = filter_wiki(raw)
    text = TABLE_ATTRIBUTES.sub(TABLE_REPLACEMENT, text)
    return text.lower()


class Preprocessor:
    """The release's preprocessing with a per-token cache; call it on a raw article text.

    ``lemmatizer`` is one of :data:`LEMMATIZERS` (``self.lemmatizer`` is the resolved name),
    ``stop_words`` one of :data:`STOP_LISTS`.
    """

    def __init__(self, lemmatizer: str = DEFAULT_LEMMATIZER, stop_words: str = DEFAULT_STOP_WORDS):
        self.lemmatizer = resolve_lemmatizer(lemmatizer)
        self.stop_words = stop_words
        self._lemmatize = make_lemmatize(self.lemmatizer)
        self._stop = stop_words_en(stop_words)
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
def _shared_preprocessor(lemmatizer: str, stop_words: str) -> Preprocessor:
    return Preprocessor(lemmatizer, stop_words)


def preprocess(raw: str, lemmatizer: str = DEFAULT_LEMMATIZER, stop_words: str = DEFAULT_STOP_WORDS) -> list[str]:
    """Tokens of one raw article text (wiki markup allowed), as the release preprocesses it.

    Returns ``[]`` for a text with no content words; never raises on odd characters.
    """
    return _shared_preprocessor(lemmatizer, stop_words)(raw)


# --- parallel preprocessing -------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(lemmatizer: str, reader: Callable[[str], str] | None, stop_words: str = DEFAULT_STOP_WORDS) -> None:
    _WORKER["prep"] = Preprocessor(lemmatizer, stop_words)
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


def preprocess_many(items: Iterable[str], lemmatizer: str = DEFAULT_LEMMATIZER, workers: int = 1,
                    reader: Callable[[str], str] | None = None, chunksize: int = 8,
                    stop_words: str = DEFAULT_STOP_WORDS) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Preprocess many documents, in order, over ``workers`` processes.

    ``items`` are raw texts, or paths when ``reader`` (a module-level function such as
    ``imageclef.read_article``) is given. Yields ``(index, tokens, error)``: ``tokens`` is
    ``None`` and ``error`` a message when the reader failed with an ``OSError``/``ValueError``.
    Memory stays bounded: items are consumed lazily and results streamed in order.
    """
    lemmatizer = resolve_lemmatizer(lemmatizer)
    stop_words_en(stop_words)  # an unknown list fails here, in this process
    tasks = enumerate(items)
    if workers <= 1:
        _init_worker(lemmatizer, reader, stop_words)
        for task in tasks:
            yield _work(task)
        return
    with mp_context().Pool(workers, initializer=_init_worker, initargs=(lemmatizer, reader, stop_words)) as pool:
        yield from pool.imap(_work, tasks, chunksize=chunksize)


class _RegexpTokenizer:
    """The original's ``nltk.RegexpTokenizer(r'\\w+')`` as NLTK had it then: stdlib ``re``, compiled per instance.

    NLTK >= 3.10 compiles caller patterns with the third-party ``regex`` engine, whose
    ``\\w`` also matches combining marks, so "İstanbul".lower() ("i" + U+0307 ...) stays one
    token there but is split by ``re`` (and by the NLTK/Python 2 the release used).
    """

    def __init__(self, pattern: str):
        self._regexp = re.compile(pattern, re.UNICODE | re.MULTILINE | re.DOTALL)

    def tokenize(self, text: str) -> list[str]:
        return self._regexp.findall(text)


def naive_preprocess(raw: str, lemmatizer: str, stop_words: str = DEFAULT_STOP_WORDS) -> list[str]:
    """The original script's structure, kept as the benchmark baseline.

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
    en_stop = list(STOP_LISTS[stop_words][0]())
    text = filter_wiki(raw)
    text = TABLE_ATTRIBUTES.sub(TABLE_REPLACEMENT, text)
    tokens = tokenizer.tokenize(text.lower())
    tokens = [t for t in tokens if t not in en_stop]
    tokens = [lemmatize(t) for t in tokens]
    tokens = [re.sub(r"[^a-z]", "", t) for t in tokens]
    return [t for t in tokens if len(t) > 2]


__all__: Sequence[str] = ("preprocess", "Preprocessor", "preprocess_many", "resolve_lemmatizer",
                          "resolve_lemmatizer_noted", "LEMMATIZERS", "STOP_LISTS", "clean_markup",
                          "naive_preprocess", "stop_words_en", "stop_words_record", "wordnet_available")

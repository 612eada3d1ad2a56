"""Tokenisers for the text spaces: every space turns raw texts into tokens through one of these.

``project`` (the default) is the paper's preprocessing, :class:`texttopicnet.text.preprocess.Preprocessor`
with its default settings, so every space sees exactly the tokens the LDA stage sees. The
others exist because the related work tokenised differently (../shared/SEED_SYSTEMS.md, 002):

- ``instacities``: the InstaCities1M caption preprocessing of the semantic retrieval work:
  ``#`` becomes a space, every character outside ``[A-Za-z0-9 ]`` is dropped (newlines too,
  so the last word of a line and the first of the next are glued together, as there),
  lower case, gensim ``simple_preprocess`` (2..15 characters), then the English stop
  list of the work's era (the project's ``release`` list: stop-words 2018, 174 words) plus
  the work's own words (:data:`INSTACITIES_EXTRA_STOP_WORDS`) removed;
- ``simple``: gensim ``simple_preprocess`` alone;
- ``whitespace``: ``str.split()``, for texts that are already tokens joined by spaces.

A tokeniser is described by a small JSON-able spec (``{"name": "project", "lemmatizer": ...,
"stop_words": ...}``) that a saved space records, so a loaded space tokenises exactly as it
did when it was fit. The project tokenizer takes ``lemmatizer=`` and ``stop_words=`` (the
Preprocessor's defaults otherwise: WordNet and the release's stop list); ``auto`` is
resolved to a concrete lemmatiser (wordnet / simplemma / none) at fit time.

Use::

    tok = make_tokenizer({"name": "project"})       # or make_tokenizer("instacities")
    tok("The cats sat.")                            # ['cat', 'sat'] with a lemmatiser
    tok.word("Dogs")                                # 'dog': one query word, normalised
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from ...core.errors import UserError

PROJECT_OPTIONS = ("lemmatizer", "stop_words")  # passed to Preprocessor; its defaults otherwise
# The semantic retrieval work's own stop words, added to the stop-words package's English list.
INSTACITIES_EXTRA_STOP_WORDS = ("rt", "http", "t", "gt", "co", "s", "https", "tweet", "markars_", "photo",
                                "pictur", "picture", "say", "much", "now", "blog")
_NOT_WHITELISTED = re.compile(r"[^A-Za-z0-9 ]+")


class Tokenizer:
    """A named tokeniser: ``tok(text) -> list[str]``, ``tok.word(w) -> str``, ``tok.spec`` (recorded)."""

    name = "base"

    def __init__(self, spec: dict):
        self.spec = dict(spec)

    def __call__(self, text: str) -> list[str]:
        raise NotImplementedError

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(t or "") for t in texts]

    def word(self, word: str) -> str:
        """One query word in the space's vocabulary form (``Dogs`` -> ``dog``).

        When the tokeniser turns the word into exactly one token, that token; otherwise
        (a stop word, a too-short word, several tokens) the lower-cased word as given,
        so that an unknown-word error names something the user recognises.
        """
        tokens = self(word)
        return tokens[0] if len(tokens) == 1 else word.strip().lower()


class ProjectTokenizer(Tokenizer):
    """The project's preprocessing (the paper's): texttopicnet.text.preprocess.Preprocessor."""

    name = "project"

    def __init__(self, spec: dict):
        from ..preprocess import Preprocessor

        kwargs = {k: spec[k] for k in ("lemmatizer", "stop_words") if spec.get(k) is not None}
        self._prep = Preprocessor(**kwargs)  # the project's defaults for what is not given
        # Record the concrete choices (auto -> wordnet/simplemma/none) so a reload is identical.
        super().__init__({"name": self.name, "lemmatizer": self._prep.lemmatizer,
                          "stop_words": self._prep.stop_words})

    def __call__(self, text: str) -> list[str]:
        return self._prep(text or "")

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self._prep(t or "") for t in texts]


class InstaCitiesTokenizer(Tokenizer):
    """The InstaCities1M caption preprocessing (SEED_SYSTEMS.md, 002); see the module docstring."""

    name = "instacities"

    def __init__(self, spec: dict):
        from gensim.utils import simple_preprocess

        from ..preprocess import stop_words_en

        super().__init__({"name": self.name})
        self._simple = simple_preprocess
        self._stop = frozenset(stop_words_en("release")) | frozenset(INSTACITIES_EXTRA_STOP_WORDS)

    def __call__(self, text: str) -> list[str]:
        kept = _NOT_WHITELISTED.sub("", (text or "").replace("#", " ")).lower()
        return [t for t in self._simple(kept) if t not in self._stop]


class SimpleTokenizer(Tokenizer):
    """gensim ``simple_preprocess`` (lower case, 2..15 characters, accents kept)."""

    name = "simple"

    def __init__(self, spec: dict):
        from gensim.utils import simple_preprocess

        super().__init__({"name": self.name})
        self._simple = simple_preprocess

    def __call__(self, text: str) -> list[str]:
        return self._simple(text or "")


class WhitespaceTokenizer(Tokenizer):
    """``str.split()``: the text is already tokens (case kept)."""

    name = "whitespace"

    def __init__(self, spec: dict):
        super().__init__({"name": self.name})

    def __call__(self, text: str) -> list[str]:
        return (text or "").split()

    def word(self, word: str) -> str:
        return word.strip()


TOKENIZERS: dict[str, Callable[[dict], Tokenizer]] = {
    cls.name: cls for cls in (ProjectTokenizer, InstaCitiesTokenizer, SimpleTokenizer, WhitespaceTokenizer)}


def make_tokenizer(spec: str | dict | None = None) -> Tokenizer:
    """A tokeniser from its name or its recorded spec (``None`` = the project's preprocessing)."""
    if spec is None:
        spec = {"name": "project"}
    elif isinstance(spec, str):
        spec = {"name": spec}
    name = spec.get("name", "project")
    if name not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
    allowed = set(PROJECT_OPTIONS) if name == "project" else set()
    extra = sorted(k for k in set(spec) - {"name"} - allowed if spec[k] is not None)
    if extra:
        raise UserError(f"tokenizer {name!r} takes no option {', '.join(extra)}"
                        + ("" if name == "project" else " (lemmatizer= and stop_words= are the project tokenizer's)"))
    return TOKENIZERS[name](spec)


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """A list of strings (``None`` counts as an empty text); one string alone is a mistake."""
    if isinstance(texts, (str, bytes)):
        raise UserError(f"{what}: expected a list of texts, got a single string")
    out = []
    for i, t in enumerate(texts):
        if t is None:
            t = ""
        if not isinstance(t, str):
            raise UserError(f"{what}[{i}]: expected a str, got {type(t).__name__}")
        out.append(t)
    return out


def check_token_lists(token_lists: Iterable[Sequence[str]], what: str = "token lists") -> list[list[str]]:
    out = []
    for i, toks in enumerate(token_lists):
        if isinstance(toks, str):
            raise UserError(f"{what}[{i}]: expected a list of tokens, got a string")
        out.append([str(t) for t in toks])
    return out

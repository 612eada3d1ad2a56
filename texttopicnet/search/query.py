"""The search query language: words and images mixed with ``+``, ``-`` and weights.

Grammar (whitespace is allowed between any two tokens)::

    query  := [sign] term { (sign | whitespace) term }
    sign   := "+" | "-"
    term   := [weight "*"] atom
    weight := a positive decimal number: "2", "0.5", ".5" (no exponent), at most MAX_WEIGHT
    atom   := image | word
    image  := "[img:" ID "]"        ID: 1..MAX_ID_CHARS characters, none of "]" or control characters
    word   := a run of characters other than whitespace and + - * [ ]

- Two terms side by side without a sign are added: ``red car`` is ``red + car``.
- ``-`` is always an operator, so ``beach-sunrise`` is ``beach - sunrise`` (as the original
  demo read it); a hyphenated word cannot be written (the spaces split such words anyway).
- Repetition is a weight: ``park + park`` is ``2*park``. Terms with the same kind and
  value are merged (weights summed, first occurrence's place kept); terms whose weights
  cancel (``park - park``) are dropped, and a query with nothing left is an error.
- Image terms name an image of the index by its id (``[img:17]``); ids starting with
  ``@`` are the server's uploaded images (``[img:@upload]``, see the server).
- The text is NFKC-normalised first (full-width ``＋`` is ``+``; the minus sign U+2212
  is ``-``); words are kept as typed otherwise (the text space normalises them).
- Limits: :data:`MAX_QUERY_CHARS` characters and :data:`MAX_TERMS` terms (counted before
  merging), else :class:`QueryError` with status 413; empty or malformed queries: 400.

:func:`parse_query` returns ``[(weight, kind, value), ...]`` with ``kind`` ``"word"`` or
``"image"``, e.g. ``parse_query("2*park-[img:17]") == [(2.0, "word", "park"), (-1.0, "image", "17")]``.

Combination (:func:`combine`, used by :func:`query_vector`); each term is first a vector of
the text space (``words.py``: how words become vectors; images: their index rows):

- vector spaces (cosine): every term is L2-normalised, ``q = sum_i w_i u_i``, then
  ``q / |q|``. Since images are unit rows too, ranking by ``cos(q, x)`` ranks by the
  weighted sum of the terms' cosines. ``|q| = 0`` (terms cancel) is an error.
- distribution spaces (KL): subtraction is done in log space, so the result stays a
  distribution: each term is smoothed, ``p~ = (1 - SMOOTHING) p + SMOOTHING / K`` (so no
  log is -inf and dividing by a term cannot blow up a topic that is ~0 in both), then
  ``log q = sum_i a_i log p~_i`` with ``a_i = w_i / sum_{w_j > 0} w_j`` (the positive
  weights sum to 1; a query with only negative terms uses ``sum |w_j|``), and ``q`` is
  renormalised (``softmax``). ``a + b`` is the normalised geometric mean of ``a`` and
  ``b`` (topics both share), ``a - b`` is ``a / b`` renormalised (topics of ``a`` that
  ``b`` lacks), ``2*a + b`` is ``a^(2/3) b^(1/3)``; one term alone is itself (smoothed).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np

from ..core.errors import UserError

MAX_QUERY_CHARS = 1000   # a query box, not a document: 1000 characters is ~150 words
MAX_TERMS = 64           # before merging; the original demo's queries had 1-3 terms
MAX_WEIGHT = 100.0
MAX_ID_CHARS = 200
SMOOTHING = 0.01         # distribution terms mixed with 1% of the uniform distribution before the log
IMAGE_OPEN = "[img:"
UPLOAD_PREFIX = "@"      # image ids the server gives uploaded images
_OPERATORS = "+-*[]"
_SIGNS = {"+": 1.0, "-": -1.0}
# Characters NFKC leaves alone that people type as a minus.
_MINUS_LIKE = {"\u2212": "-", "\u2796": "-", "\u2795": "+"}

Term = tuple  # (weight: float, kind: "word" | "image", value: str)


class QueryError(UserError):
    """A query that cannot be run; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_query", position: int | None = None,
                 **details):
        Exception.__init__(self, message)  # not super(): a subclass may also be a KeyError (words.py)
        self.message, self.status, self.code, self.position = message, status, code, position
        self.details = details

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict:
        out = {"error": self.code, "message": self.message}
        if self.position is not None:
            out["position"] = self.position
        out.update(self.details)
        return out


def normalise_text(text: str) -> str:
    if not isinstance(text, str):
        raise QueryError(f"a query is a string, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text)
    return "".join(_MINUS_LIKE.get(c, c) for c in text)


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and not c.isspace()


class _Scanner:
    def __init__(self, text: str):
        self.text, self.i = text, 0

    def skip_space(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def error(self, message: str, at: int | None = None) -> QueryError:
        pos = self.i if at is None else at
        return QueryError(f"{message} at character {pos + 1}", position=pos, code="syntax")

    def number(self) -> float | None:
        """A decimal number followed by ``*`` (a weight), else None with the position unchanged."""
        start, j, t = self.i, self.i, self.text
        while j < len(t) and t[j].isdigit() and t[j].isascii():
            j += 1
        if j < len(t) and t[j] == ".":
            j += 1
            while j < len(t) and t[j].isdigit() and t[j].isascii():
                j += 1
        literal = t[start:j]
        if not literal.strip(".") or not any(c.isdigit() for c in literal):
            return None
        k = j
        while k < len(t) and t[k].isspace():
            k += 1
        if k >= len(t) or t[k] != "*":
            return None  # a number without "*" is a word ("2017")
        self.i = k + 1
        w = float(literal)
        if not (w > 0):
            raise self.error("a weight must be greater than 0", start)
        if w > MAX_WEIGHT or not math.isfinite(w):
            raise QueryError(f"weight {literal} is larger than {MAX_WEIGHT:g}", position=start, code="syntax")
        return w

    def atom(self) -> tuple[str, str]:
        t, start = self.text, self.i
        if t.startswith(IMAGE_OPEN, start):
            end = t.find("]", start)
            if end < 0:
                raise self.error("image term not closed: write [img:ID]", start)
            ident = t[start + len(IMAGE_OPEN):end]
            if not ident.strip():
                raise self.error("empty image id in [img:]", start)
            if len(ident) > MAX_ID_CHARS:
                raise self.error(f"image id longer than {MAX_ID_CHARS} characters", start)
            self.i = end + 1
            return "image", ident.strip()
        c = self.peek()
        if c == "":
            raise self.error("a term is missing")
        if c == "[":
            raise self.error("image terms are written [img:ID]")
        if c in _OPERATORS:
            raise self.error(f"unexpected {c!r}")
        j = start
        while j < len(t) and not t[j].isspace() and t[j] not in _OPERATORS:
            j += 1
        self.i = j
        word = t[start:j]
        if j < len(t) and t[j] == "*":
            raise self.error("weights go before the term, as in 2*park", j)
        return "word", word


def parse_terms(text: str) -> list[Term]:
    """Every term in order, before merging (see :func:`parse_query`)."""
    text = normalise_text(text)
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"query too long: {len(text)} characters (at most {MAX_QUERY_CHARS})", status=413,
                         code="too_long", limit=MAX_QUERY_CHARS)
    bad = next((i for i, c in enumerate(text) if _is_control(c)), None)
    if bad is not None:
        raise QueryError(f"control character U+{ord(text[bad]):04X} at character {bad + 1}", position=bad,
                         code="syntax")
    if not text.strip():
        raise QueryError("empty query: type words, [img:ID] terms, + and -", code="empty")
    s = _Scanner(text)
    terms: list[Term] = []
    s.skip_space()
    while True:
        sign = 1.0
        if s.peek() in _SIGNS:
            sign = _SIGNS[s.peek()]
            s.i += 1
            s.skip_space()
            if s.peek() in _SIGNS:
                raise s.error("two signs in a row")
        elif terms and s.peek() == "*":
            raise s.error("weights go before the term, as in 2*park")
        weight = s.number()
        s.skip_space()
        kind, value = s.atom()
        terms.append((sign * (weight if weight is not None else 1.0), kind, value))
        if len(terms) > MAX_TERMS:
            raise QueryError(f"too many terms (more than {MAX_TERMS})", status=413, code="too_many_terms",
                             limit=MAX_TERMS)
        s.skip_space()
        if s.peek() == "":
            return terms


def merge_terms(terms: Sequence[Term]) -> list[Term]:
    """Same (kind, value) merged, weights summed, first place kept; cancelled terms dropped."""
    order: dict[tuple[str, str], float] = {}
    for w, kind, value in terms:
        key = (kind, value)
        order[key] = order.get(key, 0.0) + float(w)
    return [(w, k, v) for (k, v), w in order.items() if abs(w) > 1e-12]


def parse_query(text: str) -> list[Term]:
    """``[(weight, kind, value), ...]``: the terms of ``text`` (grammar in the module docstring)."""
    terms = merge_terms(parse_terms(text))
    if not terms:
        raise QueryError("the query's terms cancel out (their weights sum to 0)", code="cancelled")
    return terms


def combine(kind: str, weights: Sequence[float], vectors: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """The combined query vector (float64) of term ``vectors`` (n, D) for a space of ``kind``.

    ``kind`` is ``"distribution"`` or ``"vector"``; see the module docstring for the rules.
    """
    w = np.asarray(weights, dtype=np.float64)
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(w) != len(v) or len(w) == 0:
        raise QueryError("no term to combine", code="empty")
    if kind == "vector":
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        if (norms <= 0).any():
            raise QueryError("a term has the zero vector (no usable word)", status=422, code="zero_term")
        q = (w[:, None] * (v / norms)).sum(axis=0)
        n = np.linalg.norm(q)
        if not n > 1e-9:
            raise QueryError("the query's terms cancel out", code="cancelled")
        return q / n
    if kind != "distribution":
        raise UserError(f"unknown space kind {kind!r}")
    if (v < 0).any() or not np.isfinite(v).all():
        raise UserError("distribution terms must be non-negative and finite")
    sums = v.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise QueryError("a term has no probability mass", status=422, code="zero_term")
    k = v.shape[1]
    p = (1.0 - smoothing) * (v / sums) + smoothing / k
    pos = w[w > 0].sum()
    a = w / (pos if pos > 0 else np.abs(w).sum())
    logq = (a[:, None] * np.log(p)).sum(axis=0)
    logq -= logq.max()
    q = np.exp(logq)
    return q / q.sum()


def query_vector(space, text, images: Mapping[str, np.ndarray] | None = None, *, target: str | None = None,
                 smoothing: float = SMOOTHING) -> np.ndarray:
    """The combined vector (float32, ``(space.dim,)``) of query ``text`` (or an already parsed term list).

    ``images`` maps image ids to their embeddings (index rows: distributions for KL spaces,
    any non-zero vector for cosine spaces). Unknown words raise
    :class:`~texttopicnet.search.words.UnknownQueryWords` (status 422, names every one and
    suggests known words); unknown image ids a :class:`QueryError` with status 404. Nothing
    is run on a guess. ``target``: the training-target transform the network was trained
    with (default: the space's, ``text.spaces.targets.default_target``).
    """
    from .words import term_matrix

    terms = parse_query(text) if isinstance(text, str) else merge_terms(text)
    if not terms:
        raise QueryError("the query's terms cancel out (their weights sum to 0)", code="cancelled")
    vectors = term_matrix(space, terms, images or {}, target=target)
    return combine(space.kind, [t[0] for t in terms], vectors, smoothing).astype(np.float32)


def format_terms(terms: Sequence[Term]) -> str:
    """The canonical text of parsed terms (``parse_query(format_terms(t)) == merge_terms(t)``)."""
    parts = []
    for i, (w, kind, value) in enumerate(terms):
        sign = "-" if w < 0 else ("+" if i else "")
        mag = abs(float(w))
        weight = "" if mag == 1.0 else f"{mag:g}*"
        atom = f"{IMAGE_OPEN}{value}]" if kind == "image" else value
        parts.append(f"{sign}{weight}{atom}")
    return " ".join(parts)

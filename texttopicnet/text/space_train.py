"""Fitting a text space other than LDA on the text stage's tokens (``lda/02_learn_lda.py --space NAME``).

The documents are those the LDA stage would train on: the preprocessed articles of
``tokens.txt`` (made by ``lda_train.tokenize_articles`` with the stage's lemmatiser and stop
words), one document per image (``--corpus-unit image``, the release's corpus) or per
article. The space is fit with ``fit_text_space_tokens`` and the project tokenizer of those
same settings, so that embedding an article later (lda/03, retrieval) tokenises it exactly
as it was tokenised here.

Memory: the space libraries (gensim Word2Vec, Doc2Vec, FastText, LSI) take the whole token
lists, which ``fit_text_space_tokens`` holds as one Python list (it cannot stream). Here each
token string is read once and interned (one string object per distinct word, shared by
every occurrence: an un-interned token costs ~55 bytes) and each article's token list is
built once, however many images repeat it; the space then copies one pointer per token per
document. Measured: 8.5 bytes per token of the documents (per image: every image counts its
article's tokens again) plus 11 per token of the unique articles. The ImageCLEF per-image
corpus (100,785 documents over 35,582 articles) at 1,000 tokens per article needs about
1.25 GB (a Wikipedia-dataset text has ~300 tokens after preprocessing), more while a space
that prefilters its vocabulary (``no_below``/``no_above``) builds filtered copies.
``--corpus-unit article`` holds only the unique articles.

Use::

    from texttopicnet.text import space_train
    opts = space_train.parse_options(["dim=50", "weighting=tfidf"])
    space = space_train.fit_space("word2vec", "runs/demo/lda/tokens.txt", doc_articles, seed=0,
                                  tokenizer={"name": "project", "lemmatizer": "wordnet", "stop_words": "release"},
                                  options=opts)
    space.save("runs/demo/space")
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..core.errors import UserError

# Set by the stage from its own flags (--lemmatizer, --stop-words): never a space option.
STAGE_TOKENIZER_OPTIONS = ("tokenizer", "lemmatizer", "stop_words")
_WORDS = {"none": None, "null": None, "true": True, "false": False}


def parse_options(items: Sequence[str] | None) -> dict:
    """``["dim=50", "weighting=tfidf", "no_below=none"]`` -> ``{"dim": 50, "weighting": "tfidf", "no_below": None}``.

    A value is read as JSON when it parses (numbers, ``null``, ``true``), as ``none`` /
    ``true`` / ``false`` in any case, else kept as the string given. A repeated key is an error.
    """
    out: dict = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UserError(f"--space-option {item!r}: expected KEY=VALUE (e.g. dim=100)")
        if key in out:
            raise UserError(f"--space-option {key} given twice")
        if key in STAGE_TOKENIZER_OPTIONS:
            raise UserError(f"--space-option {key}: the text stage tokenises every space as it tokenises for LDA; "
                            f"use --lemmatizer / --stop-words")
        raw = raw.strip()
        if raw.lower() in _WORDS:
            out[key] = _WORDS[raw.lower()]
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key] = value if isinstance(value, (int, float, str)) or value is None else raw
    return out


def article_tokens(tokens_path: str | Path) -> list[list[str]]:
    """Line i of ``tokens.txt`` as a list of interned tokens (one string object per distinct word)."""
    intern = sys.intern
    out = []
    with open(tokens_path, encoding="utf-8") as fh:
        for line in fh:
            out.append([intern(t) for t in line.split()])
    return out


def documents(per_article: list[list[str]], doc_articles: Sequence[int]) -> Iterator[list[str]]:
    """The documents in order: article ``doc_articles[i]``'s token list (the same list object when repeated)."""
    for a in doc_articles:
        yield per_article[a]


def fit_space(name: str, tokens_path: str | Path, doc_articles: Sequence[int], seed: int, tokenizer: dict,
              options: dict):
    """Fit space ``name`` on the documents; returns the space (``space.save(folder)`` writes it)."""
    from .spaces import fit_text_space_tokens, space_class

    space_class(name).resolve_options(dict(options))  # an unknown option fails before reading the tokens
    per_article = article_tokens(tokens_path)
    if doc_articles and max(doc_articles) >= len(per_article):
        raise UserError(f"{tokens_path}: {len(per_article)} tokenised articles, but a document names article "
                        f"{max(doc_articles)}; rerun lda/02 with --force")
    return fit_text_space_tokens(name, documents(per_article, doc_articles), seed, tokenizer=dict(tokenizer),
                                 **options)


def space_files(folder: str | Path) -> list[Path]:
    """Every file of a saved space folder (what the stage records as its outputs)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file())

"""The ``glove`` space: pre-trained word vectors from a file (GloVe or word2vec format); cosine.

The vectors are trained elsewhere (e.g. Stanford's GloVe 6B) and loaded with gensim
``KeyedVectors.load_word2vec_format``; "fitting" only learns the idf weights from the
texts (for ``weighting="tfidf"``, see wordvectors.py). ``vectors=PATH`` is required;
``format``:

- ``glove``: GloVe's text format, one ``word v1 ... vD`` line per word, no header
  (loaded with ``no_header=True``);
- ``word2vec``: the same lines after a ``count dim`` header line;
- ``word2vec_binary``: the header, then per word ``word<space>`` and D little-endian float32;
- ``auto`` (default): a first line of two integers is a word2vec header, and the second
  line then tells text (D + 1 fields that parse as numbers) from binary; anything else is GloVe text.

``limit=N`` keeps the first N vectors of the file (GloVe files are sorted by frequency).
The related work's GloVe (002: 400-d trained on its own captions with glove-python) is a
different model; a file in either format from any GloVe trainer works here.

Saved folder: ``manifest.json``, ``vectors.kv`` (+ ``vectors.kv.vectors.npy``: gensim's own
format, so the saved space does not depend on the original file), ``idf.dict``. The
manifest records the source file's path, sha256 and detected format.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ...core.errors import DataError, UserError
from ...core.io import sha256_file
from .base import register
from .tokenizers import make_tokenizer
from .wordvectors import WordVectorSpace

FORMATS = ("auto", "glove", "word2vec", "word2vec_binary")


def _is_number(s: bytes) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def detect_format(path: str | Path) -> str:
    """``glove``, ``word2vec`` or ``word2vec_binary`` from the first two lines of a vectors file."""
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16).split()
        if not first:
            raise DataError(f"{path}: empty vectors file")
        if len(first) != 2 or not all(p.isdigit() for p in first):
            return "glove"
        dim = int(first[1])
        second = fh.readline(max(1 << 16, 64 * dim))
    fields = second.split()
    try:
        second.decode("utf-8")
        text = len(fields) == dim + 1 and all(_is_number(f) for f in fields[1:])
    except UnicodeDecodeError:
        text = False
    return "word2vec" if text else "word2vec_binary"


def load_vectors(path: str | Path, fmt: str = "auto", limit: int | None = None):
    """gensim ``KeyedVectors`` from a GloVe / word2vec file; returns ``(kv, format used)``."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: vectors file not found (glove needs vectors=PATH to a GloVe .txt or word2vec file)")
    fmt = detect_format(path) if fmt == "auto" else fmt
    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=fmt == "word2vec_binary", no_header=fmt == "glove",
                                               limit=limit)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: a word is not valid UTF-8 ({exc}); re-encode the file") from None
    except (ValueError, EOFError, IndexError) as exc:
        raise DataError(f"{path}: not a readable {fmt} vectors file ({exc.__class__.__name__}: {exc})") from None
    if len(kv) == 0:
        raise DataError(f"{path}: no vectors in the file")
    return kv, fmt


@register("glove")
class GloveSpace(WordVectorSpace):
    DEFAULTS: ClassVar[dict] = {
        "vectors": None,       # required: the vectors file
        "format": "auto",
        "limit": None,         # keep only the first N vectors
        "weighting": "mean",   # 002 also used the tf-idf weighting with GloVe
    }

    @classmethod
    def check_options(cls, o):
        super().check_options(o)
        if not o.get("vectors"):
            raise UserError("glove needs vectors=PATH: a GloVe text file (no header) or a word2vec text/binary file")
        if o["format"] not in FORMATS:
            raise UserError(f"glove: format must be one of {', '.join(FORMATS)}, got {o['format']!r}")
        if o["limit"] is not None and int(o["limit"]) < 1:
            raise UserError("glove: limit must be >= 1")
        o["vectors"] = str(Path(o["vectors"]).expanduser().absolute())

    def _fit(self, token_lists):
        o = self.options
        self.kv, fmt = load_vectors(o["vectors"], o["format"], None if o["limit"] is None else int(o["limit"]))
        self._fit_idf(token_lists)
        self.info.update(vectors_format=fmt, vectors_sha256=sha256_file(o["vectors"]), vocabulary=len(self.kv))

    def _save_files(self, folder: Path) -> None:
        self.kv.save(str(folder / "vectors.kv"))
        self._save_idf(folder)

    @classmethod
    def _load_files(cls, folder: Path, manifest: dict) -> GloveSpace:
        from gensim.models import KeyedVectors

        space = cls(manifest["options"], manifest["seed"], make_tokenizer(manifest["tokenizer"]))
        space.kv = KeyedVectors.load(str(folder / "vectors.kv"))
        space._load_idf(folder)
        space.info = dict(manifest.get("info") or {})
        return space

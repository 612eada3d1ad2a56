"""Reader for the ImageCLEF Wikipedia Retrieval 2010 collection (TextTopicNet's training data).

Layout (relative to the collection root, ``data/ImageCLEF_Wikipedia/``)::

    images/<subdir>/<id>.<ext>      237,434 images (JPEG, ~30k PNG, a few GIF/SVG...)
    metadata/<subdir>/<id>.xml      one metadata file per image
    <article path>                  the article texts, named by the metadata

A metadata file's root has one child per language, each with an ``xml:lang``
attribute (``en``, ``de``, ``fr``); inside the English child a ``<caption>``
element's ``article`` attribute is the path of the article, relative to the
collection root (the original code opened ``root + caption@article`` as is). The
authors' 2.3 GB "streamlined" copy keeps this layout (``images/``, ``metadata/``
and an ``_text/`` folder of English articles, images re-encoded as 256x256 JPEGs);
because its exact article paths are not documented, :func:`resolve_article`
also tries the ``text/`` <-> ``_text/`` spelling and the name with a ``.xml`` /
``.txt`` extension before giving up (see data/README.md).

Use::

    from texttopicnet.data.readers import imageclef
    root = imageclef.find_collection_root("data")
    for item in imageclef.list_imageclef(root):
        if item.problem is None: text = imageclef.read_article(item.article_path)

:func:`list_imageclef` is one ``os.scandir`` pass per folder, one small XML parse per
image and cached article lookups: about 60-70 us of CPU per image on the 2-core
development machine, i.e. under half a minute for the 237k images. That is ~1.3x the
CPU of the original script's bare loop (``benchmarks/bench_datasets.py``), which builds
no records, says nothing about skipped images and stops at the first malformed file.
Every function is module level (picklable) so callers can parallelise.
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import DataError

FOLDER_NAME = "ImageCLEF_Wikipedia"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".svg", ".webp"})
PROBLEMS = ("no_metadata", "bad_metadata", "no_english_article")

HOW_TO_GET = ("the ImageCLEF Wikipedia Retrieval 2010 collection requires registration at imageclef.org "
              "(http://www.imageclef.org/wikidata); see data/README.md, or run "
              "`python data/make_synthetic.py --out data` for the small demo corpus")


@dataclass(frozen=True)
class ImageCLEFItem:
    image_path: Path            # absolute
    metadata_id: str            # the <id> of images/<subdir>/<id>.<ext>
    metadata_path: Path | None  # None when there is no metadata file
    article_path: Path | None   # absolute path named by the English caption@article (may not exist), None if none
    problem: str | None         # None | "no_metadata" | "bad_metadata" | "no_english_article"


def _is_collection(path: Path) -> bool:
    return (path / "images").is_dir() or (path / "metadata").is_dir()


def find_collection_root(path: str | os.PathLike) -> Path:
    """The collection root: ``path`` itself, or its ``ImageCLEF_Wikipedia`` child (``path`` = ``data/``)."""
    path = Path(path).expanduser()
    for cand in (path, path / FOLDER_NAME, path / FOLDER_NAME.lower()):
        if cand.is_dir() and _is_collection(cand):
            return cand.absolute()
    if not path.exists():
        raise DataError(f"{path}: folder not found; expected the ImageCLEF Wikipedia collection "
                        f"(images/, metadata/); {HOW_TO_GET}")
    raise DataError(f"{path}: neither it nor {path / FOLDER_NAME} holds an ImageCLEF Wikipedia collection "
                    f"(images/ and metadata/ folders); {HOW_TO_GET}")


def english_article(metadata_path: str | os.PathLike) -> tuple[str | None, str | None]:
    """``(caption@article, problem)`` from one metadata file.

    ``problem`` is ``"bad_metadata"`` for a file that is not well-formed XML (or
    unreadable), ``"no_english_article"`` when no English child carries a non-empty
    ``caption@article`` (non-English-only entries are common in the collection).
    """
    try:
        with open(metadata_path, "rb") as fh:
            data = fh.read()
        root = ET.fromstring(data)
    except (ET.ParseError, OSError, ValueError):
        return None, "bad_metadata"
    for child in root:
        lang = child.get(XML_LANG) or child.get("lang")
        if lang is None or lang.strip().lower() != "en":
            continue
        for caption in child.iter("caption"):
            article = (caption.get("article") or "").strip()
            if article:
                return article, None
    return None, "no_english_article"


class ArticleResolver:
    """Maps ``caption@article`` values to absolute paths, with one directory listing per folder.

    Many images share an article and many articles share a folder, so answers and
    folder listings are cached: 237k lookups cost a few thousand ``listdir`` calls
    instead of up to six ``stat`` calls each.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(Path(root).absolute())
        self._listing: dict[str, frozenset[str]] = {}
        self._answer: dict[str, Path] = {}

    def _names(self, folder: str) -> frozenset[str]:
        names = self._listing.get(folder)
        if names is None:
            try:
                names = frozenset(os.listdir(folder))
            except OSError:
                names = frozenset()
            self._listing[folder] = names
        return names

    def __call__(self, article: str) -> Path:
        hit = self._answer.get(article)
        if hit is None:
            hit = self._answer[article] = Path(self._resolve(article))
        return hit

    def _resolve(self, article: str) -> str:
        rel = os.path.normpath(article.replace("\\", "/").lstrip("/"))
        variants = [rel]
        first, sep, rest = rel.partition("/")
        if sep and first in ("text", "_text"):
            variants.append(("_text" if first == "text" else "text") + "/" + rest)
        for v in variants:
            folder, name = os.path.split(os.path.join(self.root, v))
            names = self._names(folder)
            for suffix in ("", ".xml", ".txt"):
                if name + suffix in names:
                    return os.path.join(folder, name + suffix)
        return os.path.join(self.root, rel)


def resolve_article(root: str | os.PathLike, article: str) -> Path:
    """Absolute path of ``caption@article``; tries the streamlined copy's spellings when absent.

    Returns the literal path (which may not exist) when no variant is on disk, so
    callers can count missing articles. For many lookups use one :class:`ArticleResolver`.
    """
    return ArticleResolver(root)(article)


def _scan_files(folder: Path) -> dict[str, list[os.DirEntry]]:
    """``{subdir name ('' for the folder itself): [file entries]}`` in one scandir pass per folder."""
    out: dict[str, list[os.DirEntry]] = {}
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                with os.scandir(entry.path) as sub:
                    out[entry.name] = [e for e in sub if not e.name.startswith(".") and e.is_file()]
            elif entry.is_file():
                out.setdefault("", []).append(entry)
    return out


def list_imageclef(root: str | os.PathLike) -> list[ImageCLEFItem]:
    """One item per image file under ``images/`` (sorted by path), with its English article.

    Raises :class:`DataError` when ``images/`` or ``metadata/`` is missing. A missing
    or malformed metadata file is recorded in ``item.problem``, never raised.
    """
    root = Path(root).absolute()
    images, metadata = root / "images", root / "metadata"
    for folder in (images, metadata):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found in the ImageCLEF Wikipedia collection at {root}; "
                            f"{HOW_TO_GET}")
    # One listing of metadata/ turns 237k existence checks into set lookups; paths stay
    # strings until the end (pathlib objects cost more than the XML parse on 237k files).
    meta_names = {sub: {e.name for e in entries} for sub, entries in _scan_files(metadata).items()}
    resolve = ArticleResolver(root)
    rows = []
    for sub, entries in _scan_files(images).items():
        known = meta_names.get(sub, ())
        # Children of a folder Path are cheap; parsing a full path string per file is not.
        img_dir, meta_dir = (images / sub, metadata / sub) if sub else (images, metadata)
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            if stem + ".xml" not in known:
                rows.append((entry.path, img_dir, entry.name, stem, None, None, "no_metadata"))
                continue
            meta_path = os.path.join(meta_dir, stem + ".xml")
            article, problem = english_article(meta_path)
            rows.append((entry.path, img_dir, entry.name, stem, meta_dir,
                         resolve(article) if article else None, problem))
    rows.sort(key=lambda r: r[0])
    return [ImageCLEFItem(img_dir / name, stem, meta_dir / (stem + ".xml") if meta_dir is not None else None,
                          art, problem)
            for _, img_dir, name, stem, meta_dir, art, problem in rows]


_TEXT_BODY = re.compile(rb"<text\b[^>]*>(.*?)(?:</text\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_BODY = re.compile(rb"<body\b[^>]*>(.*?)(?:</body\s*>|\Z)", re.DOTALL | re.IGNORECASE)


def read_article(path: str | os.PathLike) -> str:
    """The article's text, decoded leniently (invalid UTF-8 bytes become U+FFFD).

    Raw wiki markup is returned as is (the LDA stage strips markup). An XML or HTML
    wrapper (``<?xml ...?><article><text>...</text></article>`` or ``<html><body>``)
    is reduced to its ``<text>`` / ``<body>`` content with entities decoded.
    OSErrors (missing, unreadable file) propagate unchanged so callers count them.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    head = data[:512].lstrip().lower()
    if head.startswith((b"<?xml", b"<article", b"<html", b"<!doctype html", b"<document")):
        match = _TEXT_BODY.search(data) or _BODY.search(data)
        if match is not None:
            return html.unescape(match.group(1).decode("utf-8", errors="replace")).strip()
    return data.decode("utf-8", errors="replace")

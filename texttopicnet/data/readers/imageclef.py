"""Reader for the ImageCLEF Wikipedia Retrieval 2010 collection (TextTopicNet's training data).

Layout (relative to the collection root, ``data/ImageCLEF_Wikipedia/``)::

    images/<subdir>/<id>.<ext>      237,434 images (JPEG, ~30k PNG, a few GIF/SVG...)
    metadata/<subdir>/<id>.xml      one metadata file per image
    <article path>                  the article texts, named by the metadata

A metadata file's root has one child per language, each with an ``xml:lang``
attribute (``en``, ``de``, ``fr``); inside the English child a ``<caption>``
element's ``article`` attribute is the path of the article, relative to the
collection root.

Which files are read, and how, is a :class:`KeepRule` (registry :data:`KEEP_RULES`):

- ``release`` (default): the original ``generate_train_dict.py``. Every file under
  ``images/`` (all depths, symlinked folders not followed, as ``os.walk``) whose SECOND
  dot-separated part is exactly ``jpg`` or ``jpeg`` (``a.jpg`` yes; ``a.JPG``,
  ``a.b.jpg``, ``a.png`` and names without a dot no; ``a.jpg.png`` yes); its metadata is
  ``metadata/<name of the image's folder>/<first dot-part>.xml``; the article is the
  FIRST direct ``caption`` child of the first root child whose attributes are exactly
  ``{xml:lang: "en"}`` that has one, and an empty or absent ``article`` drops the image.
- ``ours``: the rules this toolkit used before: any image extension (any case,
  ``os.path.splitext``), ``xml:lang`` or ``lang`` equal to ``en`` in any case and extra
  attributes allowed, the first non-empty ``caption@article`` anywhere in the English
  child; :mod:`texttopicnet.data.pairs` then also demands JPEG bytes and a non-empty article.

Paths never leave the collection: a ``caption@article`` (``../../etc/passwd``, an
absolute path, a symlink out) that resolves outside the root, and a file or metadata
entry under ``images/`` / ``metadata/`` that is a symlink leading out of the collection
root and of that folder, are refused and recorded as ``outside_collection``
(:data:`texttopicnet.core.paths.OUTSIDE`), never read. The authors' 2.3 GB "streamlined"
copy keeps this layout with an ``_text/`` folder of English articles; because its exact
article paths are not documented, the resolver also tries the ``text/`` <-> ``_text/``
spelling and the name plus ``.xml`` / ``.txt`` (each candidate checked the same way).

Use::

    from texttopicnet.data.readers import imageclef
    root = imageclef.find_collection_root("data")
    for item in imageclef.list_imageclef(root):            # rule="release"
        if item.problem is None: text = imageclef.read_article(item.article_path)

:func:`list_imageclef` is one ``os.scandir`` pass per folder, one small XML parse per
image and cached article lookups (symlinks, known from the directory entries, are the
only files resolved one by one): about 60-70 us of CPU per image on the 2-core
development machine, under half a minute for the 237k images; ``benchmarks/bench_datasets.py``
compares it with the original script's bare loop. Functions are module level
(picklable) so callers can parallelise.
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import DataError
from ...core.paths import OUTSIDE, inside, is_inside

FOLDER_NAME = "ImageCLEF_Wikipedia"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".svg", ".webp"})
RELEASE_EXTENSIONS = ("jpg", "jpeg")  # compared with name.split('.')[1], case-sensitive, as the release did
EXTENSION = "extension"
PROBLEMS = (EXTENSION, "no_metadata", "bad_metadata", "no_english_article", OUTSIDE)

HOW_TO_GET = ("the ImageCLEF Wikipedia Retrieval 2010 collection requires registration at imageclef.org "
              "(http://www.imageclef.org/wikidata); see data/README.md, or run "
              "`python data/make_synthetic.py --out data` for the small demo corpus")


# --- keep rules ----------------------------------------------------------------------------

def release_stem(name: str) -> str | None:
    """The release's file test: the first dot-part when the second is exactly 'jpg'/'jpeg', else None.

    (A name without a dot crashed the release with an IndexError; here it is just not kept.)
    """
    parts = name.split(".")
    return parts[0] if len(parts) > 1 and parts[1] in RELEASE_EXTENSIONS else None


def ours_stem(name: str) -> str | None:
    """Any image extension in any case; the stem is everything before the last dot."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else None


def release_caption(root: ET.Element) -> str | None:
    """The release's lookup: first direct ``caption`` of the first exact ``{xml:lang: 'en'}`` child having one.

    ``None`` when there is none, or when that caption's ``article`` is absent or ``''``
    (the release skipped those, or crashed on an absent attribute).
    """
    for child in root:
        if child.attrib == {XML_LANG: "en"}:
            for sub in child:
                if sub.tag == "caption":
                    return sub.get("article") or None
    return None


def ours_caption(root: ET.Element) -> str | None:
    """Lenient lookup: ``xml:lang`` or ``lang`` == en (any case), first non-blank ``caption@article`` at any depth."""
    for child in root:
        lang = child.get(XML_LANG) or child.get("lang")
        if lang is None or lang.strip().lower() != "en":
            continue
        for caption in child.iter("caption"):
            article = (caption.get("article") or "").strip()
            if article:
                return article
    return None


@dataclass(frozen=True)
class KeepRule:
    name: str
    stem: Callable[[str], str | None]                 # file name -> metadata id, None = not read
    caption: Callable[[ET.Element], str | None]       # metadata root -> caption@article
    jpeg_bytes: bool    # pairs: also demand JPEG content (magic bytes), whatever the name says
    article_text: bool  # pairs: also demand a non-empty article file
    help: str


KEEP_RULES = {r.name: r for r in (
    KeepRule("release", release_stem, release_caption, jpeg_bytes=False, article_text=False,
             help="the original generate_train_dict.py: name.split('.')[1] in (jpg, jpeg), exact "
                  "{xml:lang: en} child, its first caption; PIL-readable content of any format"),
    KeepRule("ours", ours_stem, ours_caption, jpeg_bytes=True, article_text=True,
             help="any image extension, lenient language/caption lookup, JPEG magic bytes, non-empty article"),
)}


def keep_rule(name: str | KeepRule) -> KeepRule:
    if isinstance(name, KeepRule):
        return name
    try:
        return KEEP_RULES[name]
    except KeyError:
        raise DataError(f"unknown keep rule {name!r}; choose one of {', '.join(KEEP_RULES)}") from None


# --- records -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageCLEFItem:
    image_path: Path            # absolute
    metadata_id: str            # the metadata file's stem (the rule's reading of the image name)
    metadata_path: Path | None  # None when there is no (usable) metadata file
    article_path: Path | None   # absolute path named by the English caption@article (may not exist), None if none
    problem: str | None         # None or one of PROBLEMS


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


def english_article(metadata_path: str | os.PathLike, rule: str | KeepRule = "release"
                    ) -> tuple[str | None, str | None]:
    """``(caption@article, problem)`` from one metadata file, read with ``rule``.

    ``problem`` is ``"bad_metadata"`` for a file that is not well-formed XML (or
    unreadable), ``"no_english_article"`` when the rule finds no English article
    (non-English-only entries are common in the collection).
    """
    try:
        with open(metadata_path, "rb") as fh:
            data = fh.read()
        root = ET.fromstring(data)
    except (ET.ParseError, OSError, ValueError):
        return None, "bad_metadata"
    article = keep_rule(rule).caption(root)
    return (article, None) if article else (None, "no_english_article")


class ArticleResolver:
    """Maps ``caption@article`` values to absolute paths inside the root (``None``: refused, outside).

    The value is joined to the root as the release did (``root + '/' + article``). Answers
    and folder listings are cached: many images share an article and many articles share a
    folder, so 237k lookups cost a few thousand ``scandir`` calls. A folder is judged once
    (symlinks resolved); a file is resolved one by one only when its entry is a symlink.
    """

    SUFFIXES = ("", ".xml", ".txt")

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(Path(root).absolute())
        self._listing: dict[str, tuple[frozenset[str], frozenset[str]] | None] = {}
        self._answer: dict[str, Path | None] = {}

    def _entries(self, folder: str) -> tuple[frozenset[str], frozenset[str]] | None:
        """``(names, names that are symlinks)`` of a folder inside the root, ``None`` for one outside."""
        if folder not in self._listing:
            if not is_inside(self.root, folder):
                self._listing[folder] = None
            else:
                names, links = set(), set()
                try:
                    with os.scandir(folder) as it:
                        for e in it:
                            names.add(e.name)
                            if e.is_symlink():
                                links.add(e.name)
                except OSError:
                    pass
                self._listing[folder] = (frozenset(names), frozenset(links))
        return self._listing[folder]

    def __call__(self, article: str) -> Path | None:
        if article not in self._answer:
            self._answer[article] = self._resolve(article)
        return self._answer[article]

    def _resolve(self, article: str) -> Path | None:
        rel = article.replace("\\", "/").lstrip("/")
        variants = [rel]
        first, sep, rest = rel.partition("/")
        if sep and first in ("text", "_text"):
            variants.append(("_text" if first == "text" else "text") + "/" + rest)
        refused = False
        for v in variants:
            folder, name = os.path.split(os.path.join(self.root, v))
            entries = self._entries(folder)
            if entries is None:
                refused = True
                continue
            names, links = entries
            for suffix in self.SUFFIXES:
                cand = name + suffix
                if cand in names:
                    if cand in links and inside(self.root, os.path.join(folder, cand)) is None:
                        refused = True
                        continue
                    return Path(folder, cand)
        if refused:
            return None
        # Not on disk under any spelling: the literal path, so callers count it as missing.
        folder, name = os.path.split(os.path.join(self.root, rel))
        if name in ("", ".", ".."):
            return None if inside(self.root, rel) is None else Path(self.root, os.path.normpath(rel))
        return Path(folder, name)  # its folder was judged inside the root above (first variant)


def resolve_article(root: str | os.PathLike, article: str) -> Path | None:
    """Absolute path of ``caption@article`` (tries the streamlined copy's spellings); ``None`` when outside root.

    Returns the literal path (which may not exist) when no variant is on disk, so
    callers can count missing articles. For many lookups use one :class:`ArticleResolver`.
    """
    return ArticleResolver(root)(article)


# --- listing -------------------------------------------------------------------------------

class _Folders:
    """Whether a symlinked entry under ``images/`` or ``metadata/`` stays in the collection.

    A link is accepted when it resolves inside the collection root or inside the real
    ``images/`` / ``metadata/`` folder (which a user may have placed on another disk).
    """

    def __init__(self, root: Path, top: Path):
        self.roots = (os.fspath(root), os.path.realpath(top))

    def ok(self, path: str) -> bool:
        return any(is_inside(r, path) for r in self.roots)


def _walk(folder: str):
    """``(folder path, [file DirEntry])`` for ``folder`` and every sub-folder, as ``os.walk`` (links not followed)."""
    stack = [folder]
    while stack:
        current = stack.pop()
        files = []
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    if not is_dir:
                        files.append(entry)
                    elif not entry.is_symlink():
                        stack.append(entry.path)
        except OSError:
            continue
        yield current, files


def _metadata_listing(folder: Path, guard: _Folders) -> tuple[frozenset[str], frozenset[str], bool]:
    """``(names, symlink names, folder ok)`` of one ``metadata/<name>`` folder (empty when absent)."""
    try:
        with os.scandir(folder) as it:
            entries = [(e.name, e.is_symlink()) for e in it]
    except OSError:
        return frozenset(), frozenset(), True
    return (frozenset(n for n, _ in entries), frozenset(n for n, link in entries if link),
            guard.ok(os.fspath(folder)))


def list_imageclef(root: str | os.PathLike, rule: str | KeepRule = "release") -> list[ImageCLEFItem]:
    """One item per file under ``images/`` (sorted by path), with its English article read by ``rule``.

    Raises :class:`DataError` when ``images/`` or ``metadata/`` is missing. Everything
    else (a name the rule does not read, missing or malformed metadata, a path leading
    out of the collection) is recorded in ``item.problem`` in this order, never raised.
    """
    rule = keep_rule(rule)
    root = Path(root).absolute()
    images, metadata = root / "images", root / "metadata"
    for folder in (images, metadata):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found in the ImageCLEF Wikipedia collection at {root}; "
                            f"{HOW_TO_GET}")
    image_guard, meta_guard = _Folders(root, images), _Folders(root, metadata)
    meta_folders: dict[str, tuple[frozenset[str], frozenset[str], bool]] = {}
    resolve = ArticleResolver(root)
    rows = []
    top = os.fspath(images)
    for folder, entries in _walk(top):
        # The release looked for metadata/<basename of the image's folder>/ ('' for images/ itself).
        sub = "" if folder == top else os.path.basename(folder)
        meta_dir = metadata / sub if sub else metadata
        if sub not in meta_folders:
            meta_folders[sub] = _metadata_listing(meta_dir, meta_guard)
        names, links, folder_ok = meta_folders[sub]
        img_dir = Path(folder)
        for entry in entries:
            image_outside = entry.is_symlink() and not image_guard.ok(entry.path)
            stem = rule.stem(entry.name)
            meta_path = article = None
            if stem is None:
                problem = EXTENSION
            elif stem + ".xml" not in names:
                problem = "no_metadata"
            elif not folder_ok or (stem + ".xml" in links
                                   and not meta_guard.ok(os.path.join(meta_dir, stem + ".xml"))):
                problem = OUTSIDE
            else:
                meta_path = stem + ".xml"
                text, problem = english_article(os.path.join(meta_dir, meta_path), rule)
                if problem is None:
                    article = resolve(text)
                    if article is None:
                        problem = OUTSIDE
                if problem is None and image_outside:
                    problem = OUTSIDE
            mid = stem if stem is not None else os.path.splitext(entry.name)[0]
            rows.append((entry.path, img_dir, entry.name, mid, meta_dir / meta_path if meta_path else None,
                         article, problem))
    rows.sort(key=lambda r: r[0])
    return [ImageCLEFItem(img_dir / name, stem, meta_path, article, problem)
            for _, img_dir, name, stem, meta_path, article, problem in rows]


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

"""Image collections to index: a manifest, a folder of images, or the Wikipedia dataset layout.

Each source returns the collection's root folder and :class:`Item` records (id, path
relative to the root, categories, tags). Ids are what users type in queries (``[img:ID]``)
and what ``/api/image/ID`` serves:

- ``manifest:PATH`` (``data.readers.manifest``; any corpus reader writes one): the
  manifest's ids, categories and tags; root = the manifest's folder;
- ``folder:DIR``: every image file below DIR (``data.readers.folder`` extensions), in
  sorted path order, ids ``1``..``N``; with ``categories_from_folders`` the first folder
  level is the category;
- ``wikipedia:DIR``: the Wikipedia cross-modal dataset layout (both splits), id = the
  image id, category = its category (the layout the demo corpus writes too).

Ids that cannot be typed in a query (empty, ``]``, control characters, leading/trailing
spaces, a leading ``@`` reserved for uploads, longer than ``query.MAX_ID_CHARS``) and
paths with a newline are refused and counted (``bad_id``); paths leaving the root are
refused by the readers (``outside_collection``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import UserError
from ..core.paths import OUTSIDE, inside
from .query import MAX_ID_CHARS, UPLOAD_PREFIX, _is_control


@dataclass(frozen=True)
class Item:
    id: str
    rel: str                        # posix path relative to the root
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass
class Collection:
    kind: str
    root: Path
    items: list[Item]
    counts: dict = field(default_factory=dict)
    source: str = ""


def valid_id(ident: str) -> bool:
    return (bool(ident) and ident == ident.strip() and len(ident) <= MAX_ID_CHARS and "]" not in ident
            and not ident.startswith(UPLOAD_PREFIX) and not any(_is_control(c) or c in "\n\r" for c in ident))


def _checked(kind: str, root: Path, raw: list[Item], counts: Counter, source: str) -> Collection:
    items, seen = [], set()
    for it in raw:
        if not valid_id(it.id) or "\n" in it.rel or "\r" in it.rel or it.id in seen:
            counts["bad_id"] += 1
            continue
        seen.add(it.id)
        items.append(it)
    if not items:
        raise UserError(f"{source}: no image to index ({dict(counts)})")
    counts["images"] = len(items)
    return Collection(kind, root, items, dict(counts), source)


def from_manifest(path: str | os.PathLike) -> Collection:
    from ..data.readers.manifest import read_manifest

    records, mcounts = read_manifest(path)
    root = Path(path).resolve().parent
    counts = Counter({f"manifest_{k}": v for k, v in mcounts["skipped"].items() if v})
    raw = [Item(r.id, r.image.relative_to(root).as_posix(), tuple(r.categories), tuple(r.tags)) for r in records]
    return _checked("manifest", root, raw, counts, str(path))


def from_folder(path: str | os.PathLike, categories_from_folders: bool = False) -> Collection:
    from ..data.readers.folder import IMAGE_EXTENSIONS

    root = Path(path).resolve()
    if not root.is_dir():
        raise UserError(f"{path}: image folder not found")
    counts: Counter = Counter()
    rels = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS or name.startswith("."):
                continue
            p = inside(root, Path(dirpath) / name)
            if p is None:
                counts[OUTSIDE] += 1
                continue
            rels.append(p.relative_to(root).as_posix())
    rels.sort()
    raw = [Item(str(i + 1), rel, (rel.split("/")[0],) if categories_from_folders and "/" in rel else ())
           for i, rel in enumerate(rels)]
    return _checked("folder", root, raw, counts, str(path))


def from_wikipedia(path: str | os.PathLike) -> Collection:
    from ..data.readers.wikipedia import find_wikipedia_root, load_wikipedia

    root = find_wikipedia_root(path).resolve()
    counts: Counter = Counter()
    raw = []
    for split in ("train", "test"):
        refused: dict = {}
        for p in load_wikipedia(root, split, refused=refused):
            if p.image_path is None:
                counts["missing_images"] += 1
                continue
            real = inside(root, p.image_path)
            if real is None:
                counts[OUTSIDE] += 1
                continue
            raw.append(Item(p.image_id, real.relative_to(root).as_posix(), (p.category_name,)))
        for k, v in refused.items():
            counts[k] += int(v) if isinstance(v, int) else 0
    return _checked("wikipedia", root, raw, counts, str(path))


SOURCES = {"manifest": from_manifest, "folder": from_folder, "wikipedia": from_wikipedia}


def open_source(spec: str, **options) -> Collection:
    """``KIND:PATH`` (kinds: manifest, folder, wikipedia) -> :class:`Collection`."""
    kind, sep, path = str(spec).partition(":")
    if not sep or kind not in SOURCES or not path:
        raise UserError(f"image source {spec!r}: write KIND:PATH with KIND one of {', '.join(SOURCES)} "
                        "(e.g. folder:runs/demo/data or manifest:data/MIRFLICKR25K/manifest.jsonl)")
    if options and kind != "folder":
        options = {}
    return SOURCES[kind](path, **options)

"""The manifest format: any captioned-image corpus as JSON lines, one object per image.

Each line is a JSON object::

    {"image": "img/london/123.jpg", "text": "big ben at night #london"}
    {"image": "img/1.jpg", "text_file": "captions/1.txt", "id": "1", "tags": ["sky"],
     "categories": ["clouds"], "split": "train"}

- ``image`` (required): the image path; ``text`` (the caption itself) or ``text_file``
  (a path to it): exactly one of the two.
- optional ``id`` (default: the image path), ``tags`` and ``categories`` (lists of
  strings), ``split`` (a string such as ``train``/``val``/``test``).
- Paths are relative to the manifest's folder and never leave it (``..``, absolute paths
  and symlinks out of the folder are refused and counted as ``outside_collection``).

Lines that cannot be used are skipped and counted by reason (:data:`REASONS`), never
raised; :func:`read_manifest` returns the records and the counts. Writers
(:func:`write_manifest`) store paths relative to the manifest's folder, atomically.

Use::

    from texttopicnet.data.readers.manifest import read_manifest, read_text
    records, counts = read_manifest("corpus/manifest.jsonl")
    caption = read_text(records[0])

Stage 1 reads a manifest with ``lda/01_build_train_dict.py --corpus manifest:PATH``;
``data/make_manifest.py`` writes one from InstaCities1M, MIRFlickr-25K or a folder of
images with captions.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ...core.errors import DataError
from ...core.io import atomic_open
from ...core.paths import OUTSIDE, inside

# Why a manifest line is skipped, in the order the checks run.
REASONS = (
    "bad_json",          # not valid JSON (or not UTF-8)
    "not_an_object",     # valid JSON but not an object
    "no_image",          # no non-empty "image" string
    "no_text",           # neither a non-empty "text" nor a "text_file" (or both given)
    "bad_field",         # id/tags/categories/split of the wrong type
    OUTSIDE,             # image or text_file resolves outside the manifest's folder
    "duplicate_id",      # an id seen on an earlier line
)
KEYS = ("id", "image", "text", "text_file", "tags", "categories", "split")
EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class ManifestRecord:
    id: str
    image: Path                      # absolute, resolved, inside the manifest's folder
    text: str | None = None          # the caption itself, or
    text_file: Path | None = None    # a file holding it (absolute, inside the folder)
    tags: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    split: str | None = None


@dataclass
class ManifestCounts:
    lines: int = 0
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(where)

    def as_dict(self) -> dict:
        return {"lines": self.lines, "records": self.records,
                "skipped": {r: self.skipped.get(r, 0) for r in REASONS},
                "skipped_total": sum(self.skipped.values()), "examples": self.examples}


def _strings(value) -> tuple[str, ...] | None:
    """A list of strings as a tuple; a single string as a one-tuple; None when malformed."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def parse_line(obj, root: Path) -> tuple[ManifestRecord | None, str | None]:
    """One decoded JSON value -> ``(record, None)`` or ``(None, reason)``."""
    if not isinstance(obj, dict):
        return None, "not_an_object"
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        return None, "no_image"
    text, text_file = obj.get("text"), obj.get("text_file")
    has_text = isinstance(text, str) and text.strip() != ""
    has_file = isinstance(text_file, str) and text_file.strip() != ""
    if has_text == has_file:  # neither, or both (ambiguous: which one is the caption?)
        return None, "no_text"
    tags, cats = _strings(obj.get("tags")), _strings(obj.get("categories"))
    split, rid = obj.get("split"), obj.get("id", image)
    if tags is None or cats is None or not (split is None or isinstance(split, str)) \
            or not isinstance(rid, (str, int)) or isinstance(rid, bool):
        return None, "bad_field"
    image_path = inside(root, image.strip())
    file_path = inside(root, text_file.strip()) if has_file else None
    if image_path is None or (has_file and file_path is None):
        return None, OUTSIDE
    return ManifestRecord(id=str(rid), image=image_path, text=text if has_text else None, text_file=file_path,
                          tags=tags, categories=cats, split=split), None


def read_manifest(path: str | os.PathLike) -> tuple[list[ManifestRecord], dict]:
    """All usable records of a manifest, in file order, and the counts of skipped lines.

    Raises :class:`DataError` only when the file itself is missing, unreadable or holds
    no usable record; a bad line is counted, never raised.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (a JSON-lines file; see data/README.md, 'Manifest corpora')")
    root = path.parent.resolve()
    counts = ManifestCounts()
    records: list[ManifestRecord] = []
    seen: set[str] = set()
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                counts.lines += 1
                where = f"{path.name}:{lineno}"
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    counts.skip("bad_json", where)
                    continue
                rec, reason = parse_line(obj, root)
                if rec is not None and rec.id in seen:
                    rec, reason = None, "duplicate_id"
                if rec is None:
                    counts.skip(reason, where)
                    continue
                seen.add(rec.id)
                records.append(rec)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    counts.records = len(records)
    if not records:
        raise DataError(f"{path}: no usable line in the manifest ({counts.lines} lines; skipped: "
                        f"{dict((k, v) for k, v in counts.skipped.items() if v)})")
    return records, counts.as_dict()


def read_text(record: ManifestRecord) -> str:
    """The caption of a record: ``text``, or ``text_file`` decoded as UTF-8.

    Raises ``OSError`` for a missing/unreadable file and ``ValueError`` for bytes that are
    not UTF-8 (callers count both; a caption is never silently mangled).
    """
    if record.text is not None:
        return record.text
    with open(record.text_file, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{record.text_file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _relative(root: Path, value: str | os.PathLike) -> str:
    p = inside(root, value)
    if p is None:
        raise DataError(f"{value}: outside the manifest's folder {root}; a manifest only names files below it")
    return p.relative_to(root).as_posix()


def write_manifest(path: str | os.PathLike, entries: Iterable[Mapping]) -> int:
    """Write entries (dicts with the keys above; paths absolute or relative to the manifest's folder).

    Paths are stored relative to the manifest's folder; a path outside it is a
    :class:`DataError` (a writer bug, not a data problem). Returns the number of lines.
    """
    path = Path(path)
    root = path.parent.resolve()
    n = 0
    with atomic_open(path, "w") as fh:
        for e in entries:
            unknown = set(e) - set(KEYS)
            if unknown:
                raise DataError(f"manifest entry has unknown keys {sorted(unknown)}")
            out = {k: e[k] for k in KEYS if e.get(k) not in (None, (), [])}
            out["image"] = _relative(root, e["image"])
            if "text_file" in out:
                out["text_file"] = _relative(root, out["text_file"])
            for k in ("tags", "categories"):
                if k in out:
                    out[k] = list(out[k])
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")
            n += 1
    return n

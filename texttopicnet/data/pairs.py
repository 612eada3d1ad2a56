"""Training pairs: which ImageCLEF Wikipedia images the paper trains on, and why the others are not.

An image is kept when (REFERENCE.md, "Stage 1"):

- its metadata names an English article (``caption@article`` in the ``xml:lang="en"`` child),
- that article exists and is not empty (whitespace only counts as empty),
- the file really is a JPEG (magic bytes, not the extension: the collection has PNGs
  named ``.jpg``), readable, and
- both sides are >= 256 px (read from the header, no decoding).

Each removed image is counted under the first reason that applies, in the order of
:data:`REASONS`. Checks run in worker processes (``check_items``); nothing raises on a
bad file.

Use::

    from texttopicnet.data.readers import imageclef
    from texttopicnet.data import pairs
    items = imageclef.list_imageclef(imageclef.find_collection_root("data"))
    kept, counts = pairs.filter_items(items, workers=2)
    pairs.write_pairs_tsv(path, kept); pairs.read_pairs_tsv(path)
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..core.errors import DataError
from ..core.io import atomic_open
from .images import ImageReadError, probe

MIN_SIDE = 256  # the paper keeps images whose width and height are both >= 256 px

# Removal reasons, in the order they are checked (an image counts under the first one).
REASONS = (
    "no_metadata",          # no metadata XML for the image
    "bad_metadata",         # metadata XML is malformed or unreadable
    "no_english_article",   # no English caption@article
    "article_missing",      # caption@article names a file that does not exist
    "article_empty",        # the article file is empty or whitespace only (or unreadable)
    "corrupt",              # the image header cannot be read (truncated, garbage, empty)
    "not_jpeg",             # readable, but not JPEG content (PNG, GIF, ...) whatever its extension
    "too_small",            # width or height < 256 px
)
EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class Pair:
    image_path: Path
    article_path: Path
    metadata_id: str


def article_problem(path: Path | None) -> str | None:
    """``None`` when the article is usable, else ``article_missing`` / ``article_empty``."""
    if path is None or not path.is_file():
        return "article_missing"
    try:
        if path.stat().st_size == 0:
            return "article_empty"
        with open(path, "rb") as fh:
            # A non-empty file is usable as soon as one non-whitespace byte shows up.
            while True:
                block = fh.read(1 << 16)
                if not block:
                    return "article_empty"
                if block.strip():
                    return None
    except OSError:
        return "article_empty"


def image_problem(path: Path, min_side: int = MIN_SIDE) -> str | None:
    """``None`` for a readable JPEG with both sides >= ``min_side``, else the reason."""
    try:
        info = probe(path)
    except ImageReadError:
        return "corrupt"
    if not info.is_jpeg:
        return "not_jpeg"
    if info.width < min_side or info.height < min_side:
        return "too_small"
    return None


def check_item(item, min_side: int = MIN_SIDE) -> str | None:
    """The removal reason for one ``ImageCLEFItem``, or ``None`` when the paper keeps it."""
    if item.problem is not None:
        return item.problem
    reason = article_problem(item.article_path)
    if reason is not None:
        return reason
    return image_problem(item.image_path, min_side)


def _check_chunk(args: tuple[Sequence, int]) -> list[str | None]:
    items, min_side = args
    return [check_item(it, min_side) for it in items]


def check_items(items: Sequence, workers: int = 1, min_side: int = MIN_SIDE, chunk: int = 256,
                progress: bool = True) -> list[str | None]:
    """``check_item`` for every item, in order, over ``workers`` processes (with a progress bar)."""
    from tqdm import tqdm

    from ..text.preprocess import mp_context

    chunks = [(items[i:i + chunk], min_side) for i in range(0, len(items), chunk)]
    bar = tqdm(total=len(items), desc="checking images", unit="img", disable=not progress)
    out: list[str | None] = []
    try:
        if workers <= 1 or len(chunks) <= 1:
            for c in chunks:
                out.extend(_check_chunk(c))
                bar.update(len(c[0]))
        else:
            with mp_context().Pool(workers) as pool:
                for c, res in zip(chunks, pool.imap(_check_chunk, chunks)):
                    out.extend(res)
                    bar.update(len(c[0]))
    finally:
        bar.close()
    return out


def filter_items(items: Sequence, workers: int = 1, min_side: int = MIN_SIDE,
                 progress: bool = True) -> tuple[list[Pair], dict]:
    """Keep the paper's images. Returns ``(pairs, counts)``; ``counts`` is what filter_counts.json holds."""
    reasons = check_items(items, workers=workers, min_side=min_side, progress=progress)
    kept: list[Pair] = []
    removed: Counter = Counter()
    examples: dict[str, list[str]] = {r: [] for r in REASONS}
    for item, reason in zip(items, reasons):
        if reason is None:
            kept.append(Pair(Path(item.image_path), Path(item.article_path), item.metadata_id))
            continue
        removed[reason] += 1
        ex = examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(str(item.image_path))
    counts = {
        "images": len(items),
        "kept": len(kept),
        "removed": {r: removed.get(r, 0) for r in list(REASONS) + sorted(set(removed) - set(REASONS))},
        "removed_total": sum(removed.values()),
        "unique_articles": len({p.article_path for p in kept}),
        "min_side": min_side,
        "order": "each removed image is counted under the first failing check, in the order of 'removed'",
        "examples": {r: ex for r, ex in examples.items() if ex},
    }
    return kept, counts


def format_counts(counts: dict) -> str:
    """A short human summary of filter counts (printed by lda/01)."""
    lines = [f"{counts['images']} images listed, {counts['kept']} kept "
             f"({counts['unique_articles']} unique articles), {counts['removed_total']} removed:"]
    for reason, n in counts["removed"].items():
        if n:
            lines.append(f"  {reason:<20} {n}")
    return "\n".join(lines)


# --- pairs.tsv / train_dict json --------------------------------------------------------

def write_pairs_tsv(path: str | os.PathLike, pairs: Iterable[Pair]) -> None:
    """``image_path<TAB>article_path<TAB>metadata_id`` per line, absolute paths (atomic write)."""
    with atomic_open(path, "w") as fh:
        for p in pairs:
            fields = (str(p.image_path), str(p.article_path), p.metadata_id)
            if any(("\t" in f or "\n" in f) for f in fields):
                raise DataError(f"cannot store a path with a tab or newline in pairs.tsv: {fields!r}")
            fh.write("\t".join(fields) + "\n")


def read_pairs_tsv(path: str | os.PathLike) -> list[Pair]:
    """Read ``pairs.tsv``; a missing or malformed file is a :class:`DataError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pairs file not found; run lda/01_build_train_dict.py first (or pass --pairs)")
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise DataError(f"{path}:{n}: expected 3 tab-separated fields, found {len(fields)}")
            out.append(Pair(Path(fields[0]), Path(fields[1]), fields[2]))
    if not out:
        raise DataError(f"{path}: no training pairs (every image was filtered out?); see filter_counts.json")
    return out


def unique_articles(pairs: Sequence[Pair]) -> list[Path]:
    """Distinct article paths, in order of first appearance."""
    return list(dict.fromkeys(p.article_path for p in pairs))


def train_dict(pairs: Iterable[Pair], root: Path) -> dict[str, str]:
    """The original's ``train_dict_ImageCLEF_Wikipedia.json``: image path -> article path, relative to ``root``."""
    def rel(p: Path) -> str:
        try:
            return Path(os.path.relpath(p, root)).as_posix()
        except ValueError:  # another drive on Windows
            return str(p)
    return {rel(p.image_path): rel(p.article_path) for p in pairs}


def inputs_unchanged(stage_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> bool:
    """True when the inputs a finished stage recorded in meta.json still have the same checksums.

    A later stage is stale when an earlier one was redone (new pairs, new model), even if
    its own outputs are intact.
    """
    from ..core.provenance import file_checksums, read_meta

    meta = read_meta(stage_dir) or {}
    recorded = meta.get("inputs") or {}
    current = file_checksums(inputs)
    return all(recorded.get(path) == digest for path, digest in current.items()) and len(current) == len(inputs)

"""A plain folder of images with their captions -> a manifest (for users with their own corpus).

Every image file below ``root`` (``.jpg``, ``.jpeg``, ``.png``, ``.gif``, ``.bmp``,
``.webp``, ``.tif``/``.tiff``) whose caption file exists becomes one manifest line. The
caption is ``<stem>.txt`` beside the image, or, with ``captions=DIR``, the same relative
path under ``DIR`` with a ``.txt`` suffix. The first folder level below ``root`` is
recorded as the image's category when ``categories_from_folders`` is set. Symlinks are
followed only while they stay inside ``root``.

Use::

    from texttopicnet.data.readers import folder
    counts = folder.build_manifest("my_corpus")            # writes my_corpus/manifest.jsonl
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ...core.errors import DataError
from ...core.paths import OUTSIDE, inside
from .manifest import write_manifest

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


def list_entries(root: str | os.PathLike, captions: str | os.PathLike | None = None,
                 categories_from_folders: bool = False) -> tuple[list[dict], dict]:
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    cap_root = Path(captions).resolve() if captions else None
    if cap_root is not None and inside(root, cap_root) is None:
        raise DataError(f"{cap_root}: the captions folder must lie inside {root}")
    counts: Counter = Counter()
    entries = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        here = Path(dirpath)
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            image = inside(root, here / name)
            if image is None:  # a symlink out of the root
                counts[OUTSIDE] += 1
                continue
            rel = image.relative_to(root)
            caption = (cap_root / rel).with_suffix(".txt") if cap_root else here / f"{stem}.txt"
            if not caption.is_file():
                counts["image_without_caption"] += 1
                continue
            if inside(root, caption) is None:
                counts[OUTSIDE] += 1
                continue
            entry = {"id": rel.as_posix(), "image": image, "text_file": caption}
            if categories_from_folders and len(rel.parts) > 1:
                entry["categories"] = [rel.parts[0]]
            entries.append(entry)
    if not entries:
        raise DataError(f"{root}: no image with a caption file (<stem>.txt beside it"
                        f"{' or under ' + str(cap_root) if cap_root else ''})")
    return entries, {"images": len(entries), **counts}


def build_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None, **options) -> dict:
    root = Path(root).resolve()
    entries, counts = list_entries(root, **options)
    out = Path(out) if out else root / "manifest.jsonl"
    write_manifest(out, entries)
    return {**counts, "manifest": str(out)}

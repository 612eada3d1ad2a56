"""InstaCities1M (Gomez et al. 2018): Instagram images and captions of 10 cities -> a manifest.

Layout (the authors' release; data/README.md): one image folder and one caption folder
per city, a caption ``.txt`` per image with the same stem::

    <root>/img_resized_1M/cities_instagram/<city>/<id>.jpg
    <root>/captions_resized_1M/cities_instagram/<city>/<id>.txt

The image and caption trees are found under the usual names (``img_resized_1M``,
``img_resized``, ``img``, ``images`` and ``captions_resized_1M``, ``captions_resized``,
``captions``, each optionally followed by ``cities_instagram``), or named explicitly.
An image without a caption (or a caption without an image) is counted, not listed.

Split: the authors' scripts split each city's files into test (first 15%), val (next
5%) and train (the rest) in the order their file system listed them; that order is not
recorded, so we sort ids per city and apply the same fractions (documented difference).

Use::

    from texttopicnet.data.readers import instacities
    counts = instacities.build_manifest("data/InstaCities1M")   # writes data/InstaCities1M/manifest.jsonl
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ...core.errors import DataError
from ...core.paths import inside
from .manifest import write_manifest

CITIES = ("london", "newyork", "sydney", "losangeles", "chicago", "melbourne", "miami", "toronto", "singapore",
          "sanfrancisco")
IMAGE_DIRS = ("img_resized_1M", "img_resized", "img", "images")
CAPTION_DIRS = ("captions_resized_1M", "captions_resized", "captions")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TEST_FRACTION, VAL_FRACTION = 0.15, 0.05  # the authors' per-city split (15% test, 5% val, 80% train)


def _city_tree(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for cand in (root / name / "cities_instagram", root / name):
            if cand.is_dir() and any(p.is_dir() for p in cand.iterdir()):
                return cand
    return None


def find_trees(root: str | os.PathLike, images: str | os.PathLike | None = None,
               captions: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The image and caption trees (folders holding one sub-folder per city)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: InstaCities1M folder not found (see data/README.md, 'InstaCities1M')")
    img = Path(images).resolve() if images else _city_tree(root, IMAGE_DIRS)
    cap = Path(captions).resolve() if captions else _city_tree(root, CAPTION_DIRS)
    if img is None or cap is None:
        raise DataError(f"{root}: expected {'|'.join(IMAGE_DIRS)}/[cities_instagram/]<city>/<id>.jpg and "
                        f"{'|'.join(CAPTION_DIRS)}/[cities_instagram/]<city>/<id>.txt; found "
                        f"{sorted(p.name for p in root.iterdir())[:10]}")
    for tree in (img, cap):
        if inside(root, tree) is None:
            raise DataError(f"{tree}: must lie inside {root} (the manifest names files relative to it)")
    return img, cap


def split_of(rank: int, n: int) -> str:
    """The authors' per-city split rule for the ``rank``-th of ``n`` sorted ids."""
    if rank < n * TEST_FRACTION:
        return "test"
    if rank < n * (TEST_FRACTION + VAL_FRACTION):
        return "val"
    return "train"


def list_entries(root: str | os.PathLike, images: str | os.PathLike | None = None,
                 captions: str | os.PathLike | None = None) -> tuple[list[dict], dict]:
    """Manifest entries (city = category) and counts of unpaired files."""
    img_tree, cap_tree = find_trees(root, images, captions)
    entries: list[dict] = []
    counts: Counter = Counter()
    cities = sorted(p.name for p in img_tree.iterdir() if p.is_dir())
    for city in cities:
        imgs = {os.path.splitext(e.name)[0]: e.name for e in os.scandir(img_tree / city)
                if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS}
        cap_dir = cap_tree / city
        caps = {os.path.splitext(e.name)[0] for e in os.scandir(cap_dir)
                if e.is_file() and e.name.endswith(".txt")} if cap_dir.is_dir() else set()
        counts["image_without_caption"] += len(set(imgs) - caps)
        counts["caption_without_image"] += len(caps - set(imgs))
        ids = sorted(set(imgs) & caps)
        for rank, stem in enumerate(ids):
            entries.append({"id": f"{city}/{stem}", "image": img_tree / city / imgs[stem],
                            "text_file": cap_dir / f"{stem}.txt", "categories": [city],
                            "split": split_of(rank, len(ids))})
    if not entries:
        raise DataError(f"{img_tree}: no image has a caption in {cap_tree}")
    unknown = sorted(set(cities) - set(CITIES))
    return entries, {"images": len(entries), "cities": cities, "unknown_cities": unknown, **counts}


def build_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None, **trees) -> dict:
    """Write ``out`` (default ``<root>/manifest.jsonl``); returns the counts."""
    root = Path(root).resolve()
    entries, counts = list_entries(root, **trees)
    out = Path(out) if out else root / "manifest.jsonl"
    write_manifest(out, entries)
    return {**counts, "manifest": str(out)}

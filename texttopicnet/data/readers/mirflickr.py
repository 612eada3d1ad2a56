"""MIRFlickr-25K (Huiskes and Lew 2008): 25,000 Flickr images, their tags and 24 concepts -> a manifest.

Layout (the official archives, extracted; data/README.md)::

    <root>/mirflickr/im<N>.jpg                   N = 1..25000 (or the images directly in <root>)
    <root>/mirflickr/meta/tags/tags<N>.txt       the image's tags, one per line (lower-cased by Flickr)
    <root>/<annotations folder>/<concept>.txt    numbers of the images showing <concept>, one per line
    <root>/<annotations folder>/<concept>_r1.txt the "relevant" (strict) subset of the same concept

The annotation folder (``mirflickr25k_annotations_v080`` in the official zip) is found
anywhere below ``root`` by its concept files. Each image becomes one manifest line:
``text`` = its tags joined by spaces (LearnFromWebData's captions were the tags), ``tags``,
``categories`` = the concepts it is annotated with, plus ``<concept>_r1`` where it is in the
strict list (see :func:`list_entries`), ``id`` = N. Images without any tag have no caption:
they are left out of the manifest and counted (``images_without_tags``).

Use::

    from texttopicnet.data.readers import mirflickr
    counts = mirflickr.build_manifest("data/MIRFLICKR25K")      # writes data/MIRFLICKR25K/manifest.jsonl
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ...core.errors import DataError
from .manifest import write_manifest

CONCEPTS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
            "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
            "tree", "water")
_IMAGE = re.compile(r"^im(\d+)\.jpg$")


def find_image_dir(root: Path) -> Path:
    for cand in (root / "mirflickr", root):
        if cand.is_dir() and any(_IMAGE.match(e.name) for e in os.scandir(cand)):
            return cand
    raise DataError(f"{root}: no im<N>.jpg files in it or in mirflickr/ (see data/README.md, 'MIRFlickr-25K')")


def find_annotations(root: Path) -> Path | None:
    """The folder holding ``<concept>.txt`` files (None when the annotations are not installed)."""
    for dirpath, _dirs, files in os.walk(root):
        if sum(f"{c}.txt" in files for c in CONCEPTS) >= len(CONCEPTS) // 2:
            return Path(dirpath)
    return None


def _numbers(path: Path, counts: Counter) -> set[int]:
    out = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if line.isdigit():
                out.add(int(line))
            else:
                counts["bad_annotation_lines"] += 1
    return out


def read_tags(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [t.strip() for t in fh if t.strip()]


def list_entries(root: str | os.PathLike, test_fraction: float = 0.0, seed: int = 0) -> tuple[list[dict], dict]:
    """Manifest entries for every image, and counts.

    ``categories`` holds the concepts (``<concept>.txt``); images in a concept's strict
    ``_r1`` list also get ``<concept>_r1`` in ``categories`` so protocols can use either.
    ``test_fraction`` > 0 assigns a seeded random ``split`` (``train``/``test``).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: MIRFlickr-25K folder not found (see data/README.md)")
    img_dir = find_image_dir(root)
    tag_dir = img_dir / "meta" / "tags"
    counts: Counter = Counter()
    ann_dir = find_annotations(root)
    labels: dict[int, list[str]] = {}
    if ann_dir is None:
        counts["no_annotations_folder"] = 1
    else:
        for concept in CONCEPTS:
            for name in (concept, f"{concept}_r1"):
                f = ann_dir / f"{name}.txt"
                if f.is_file():
                    for n in sorted(_numbers(f, counts)):
                        labels.setdefault(n, []).append(name)
                elif name == concept:
                    counts["missing_concept_files"] += 1
    numbers = sorted(int(m.group(1)) for e in os.scandir(img_dir) if (m := _IMAGE.match(e.name)))
    rng = np.random.RandomState(seed)
    is_test = rng.rand(len(numbers)) < test_fraction if test_fraction > 0 else np.zeros(len(numbers), bool)
    entries = []
    for n, test in zip(numbers, is_test):
        tags = read_tags(tag_dir / f"tags{n}.txt")
        if not tags:
            counts["images_without_tags"] += 1
        entry = {"id": str(n), "image": img_dir / f"im{n}.jpg", "text": " ".join(tags), "tags": tags,
                 "categories": labels.get(n, [])}
        if test_fraction > 0:
            entry["split"] = "test" if test else "train"
        entries.append(entry)
    counts["images"] = len(entries)
    counts["annotated_images"] = sum(1 for n in numbers if n in labels)
    return entries, dict(counts)


def build_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None, test_fraction: float = 0.0,
                   seed: int = 0) -> dict:
    """Write ``out`` (default ``<root>/manifest.jsonl``); returns the counts.

    Images without tags have no caption (a manifest line needs one): they are left out and
    counted as ``images_without_tags``.
    """
    root = Path(root).resolve()
    entries, counts = list_entries(root, test_fraction=test_fraction, seed=seed)
    kept = [e for e in entries if e["text"]]
    out = Path(out) if out else root / "manifest.jsonl"
    write_manifest(out, kept)
    return {**counts, "written": len(kept), "manifest": str(out), "test_fraction": test_fraction, "seed": seed}

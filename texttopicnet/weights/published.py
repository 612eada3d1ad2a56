"""The artefacts TextTopicNet's authors published, and the conversion of their training labels.

:data:`ARTEFACTS` lists the published files with their Google Drive ids (REFERENCE.md);
``pretrained/download.py`` fetches them. :func:`convert_training_labels` turns the
published ``training_labels40.json`` ({image path: [40 floats]}) into our labels stage
format (``RUN/labels/``: ``labels.npy`` float32 (N, K), ``index.txt`` aligned image paths,
``meta.json``), so ``cnn/01_pack_images.py`` can train on the authors' exact targets. The
rows are kept as published: the release's 0.01 cut-off leaves them summing to a little
less than 1, and they are not renormalised unless ``renormalize=True``. With a
collection, every key must resolve inside it (symlinks included); keys that leave it are
refused and counted as ``outside_collection``::

    from texttopicnet.weights.published import convert_training_labels
    convert_training_labels("pretrained/training_labels40.json", "runs/published/labels",
                            collection="data/ImageCLEF_Wikipedia")
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import provenance
from ..core.errors import DataError
from ..core.io import save_npy, sha256_file, write_lines
from ..core.paths import OUTSIDE, inside

LABELS_STAGE = "labels"  # the stage name lda/03_generate_labels.py records: downstream stages accept either
SUM_TOLERANCE = 1e-5     # a row may sum to at most 1 + this (float rounding in the JSON)


@dataclass(frozen=True)
class Artefact:
    name: str
    drive_id: str
    group: str  # "model" | "voc" | "lda" | "labels" (pretrained/download.py --only)


ARTEFACTS = (
    Artefact("TextTopicNet_Wikipedia_ImageCLEF_40Topics.caffemodel", "0B52HmBFhEpdCTldNYjk5TnFTTDA", "model"),
    Artefact("TextTopicNet_finetuned_VOC2007.caffemodel", "0B52HmBFhEpdCUElJVVZKU1FibTA", "voc"),
    Artefact("ldamodel40.lda", "0B52HmBFhEpdCZUM1MXNoR1h3RFU", "lda"),
    Artefact("ldamodel40.lda.state", "0B52HmBFhEpdCWDV6SXZGaDlYcWs", "lda"),
    Artefact("dictionary.dict", "0B52HmBFhEpdCTVJKa3hnS3VRVkE", "lda"),
    Artefact("training_labels40.json", "0B52HmBFhEpdCTDZTSDFMVWswNEU", "labels"),
)
GROUPS = ("model", "voc", "lda", "labels")
# fc8 outputs of the published networks: 40 LDA topics; 20 VOC classes after fine-tuning.
EXPECTED_OUTPUTS = {"TextTopicNet_Wikipedia_ImageCLEF_40Topics.caffemodel": 40,
                    "TextTopicNet_finetuned_VOC2007.caffemodel": 20}


def _resolve(key: str, collection: Path) -> tuple[Path | None, str | None]:
    """The image file a published key names under ``collection``: ``(path, None)`` or ``(None, reason)``.

    Keys may be relative to the collection root (what the original wrote) or absolute
    paths from the authors' machine; for the latter the part from the last ``images``
    folder on is looked up under ``collection``. A key that resolves outside the
    collection (``..``, an absolute path elsewhere, a symlink leading out) is refused:
    reason ``outside_collection``; a key inside it that names no file: ``image_not_found``.
    """
    rel = key.replace("\\", "/")
    if os.path.isabs(rel) and inside(collection, rel) is None:
        parts = rel.split("/")
        if "images" not in parts:
            return None, OUTSIDE
        i = len(parts) - 1 - parts[::-1].index("images")
        rel = "/".join(parts[i:])
    found = inside(collection, rel)
    if found is None:
        return None, OUTSIDE
    if not found.is_file():
        return None, "image_not_found"
    return found, None


def _unsafe_without_root(key: str) -> bool:
    """Without a collection nothing is read, but a key that climbs (``..``) is still refused."""
    return ".." in key.replace("\\", "/").split("/")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: file not found (fetch it with: python pretrained/download.py --only labels)")
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc}); the download may be incomplete") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty JSON object {{image path: [topic probabilities]}}")
    return data


def _row(value) -> tuple[np.ndarray | None, str | None]:
    if not isinstance(value, list) or not value:
        return None, "not_a_list"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None, "not_numbers"
    if not all(math.isfinite(v) for v in value):
        return None, "nan_or_inf"
    row = np.asarray(value, dtype=np.float64)
    if (row < 0).any():
        return None, "negative"
    total = row.sum()
    if total <= 0:
        return None, "zero_sum"
    if total > 1.0 + SUM_TOLERANCE:
        return None, "sum_above_one"
    return row, None


def convert_training_labels(json_path: str | os.PathLike, out_dir: str | os.PathLike,
                            collection: str | os.PathLike | None = None, force: bool = False,
                            log=print, renormalize: bool = False) -> dict:
    """Write ``out_dir/{labels.npy,index.txt,meta.json}`` from the published labels JSON.

    Rows that are not K finite, non-negative numbers summing to a value in (0, 1] are
    skipped and counted by reason. Kept rows are written as published (the release's
    rows leave out topics under its 0.01 cut-off, so they sum to a little less than 1);
    ``renormalize=True`` scales each to sum 1 instead. With ``collection``, keys are
    resolved to absolute image paths inside it: keys leaving it are refused
    (``outside_collection``) and images not found there skipped (both counted); without
    it the keys are written as they are (those climbing with ``..`` refused). Returns the
    counts. Idempotent: a finished conversion of the same file is kept unless ``force``.
    """
    json_path, out_dir = Path(json_path), Path(out_dir)
    source_sha = sha256_file(json_path) if json_path.is_file() else None
    meta = provenance.read_meta(out_dir)
    if (not force and provenance.stage_is_done(out_dir, LABELS_STAGE) and meta
            and meta.get("source_sha256") == source_sha and bool(meta.get("renormalized")) == renormalize
            and meta.get("collection") == (str(Path(collection).absolute()) if collection else None)):
        log(f"already done: {out_dir} holds the labels converted from {json_path.name} (--force redoes it)")
        return meta["counts"]
    data = _read_json(json_path)
    coll = Path(collection).absolute() if collection else None
    if coll is not None and not coll.is_dir():
        raise DataError(f"{coll}: collection folder not found (pass the ImageCLEF_Wikipedia root with --collection)")

    lengths = Counter(len(v) for v in data.values() if isinstance(v, list))
    if not lengths:
        raise DataError(f"{json_path}: no value is a list of topic probabilities")
    k = lengths.most_common(1)[0][0]
    skipped: Counter = Counter()
    rows, paths = [], []
    for key, value in data.items():
        row, problem = _row(value)
        if problem is None and row.size != k:
            problem = "wrong_length"
        if problem is None and coll is not None:
            found, problem = _resolve(key, coll)
            if found is not None:
                key = str(found)
        elif problem is None and _unsafe_without_root(key):
            problem = OUTSIDE
        if problem is not None:
            skipped[problem] += 1
            continue
        if "\n" in key:
            skipped["bad_path"] += 1
            continue
        rows.append(row / row.sum() if renormalize else row)
        paths.append(key)
    counts = {"entries": len(data), "kept": len(rows), "num_topics": k, "skipped": dict(sorted(skipped.items())),
              OUTSIDE: skipped.get(OUTSIDE, 0)}
    for reason, n in sorted(skipped.items()):
        log(f"skipped {n} of {len(data)} entries: {reason}")
    if not rows:
        where = f" under {coll}" if coll is not None else ""
        raise DataError(f"{json_path}: no usable entry{where} (skipped: {dict(skipped)})")

    labels = np.stack(rows).astype(np.float32)
    provenance.invalidate(out_dir)
    save_npy(out_dir / "labels.npy", labels)
    write_lines(out_dir / "index.txt", paths)
    provenance.write_meta(out_dir, LABELS_STAGE, {"json": str(json_path), "collection": str(coll) if coll else None},
                          inputs=[json_path], outputs=[out_dir / "labels.npy", out_dir / "index.txt"],
                          extra={"source": "published", "source_sha256": source_sha,
                                 "collection": str(coll) if coll else None, "num_topics": k, "counts": counts,
                                 "renormalized": renormalize,
                                 "label_rows": "dense (renormalised)" if renormalize else "release (as published)",
                                 "row_sums": {"min": float(labels.astype(np.float64).sum(axis=1).min()),
                                              "max": float(labels.astype(np.float64).sum(axis=1).max())},
                                 "paths_resolved": coll is not None,
                                 "note": "no articles.txt: the published JSON does not name the articles"})
    log(f"wrote {out_dir / 'labels.npy'} {labels.shape} and index.txt"
        + ("" if coll else " (paths as in the JSON; pass --collection to resolve them)"))
    return counts

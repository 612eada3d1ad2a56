"""The search index: every image of a collection embedded in a text space by a trained network.

Folder layout (``RUN/search/`` for the pipeline's demo)::

    embeddings.npy   float32 or float16 (N, D): index rows (distributions for KL spaces,
                     L2-normalised for cosine spaces; see embedding.py)
    ids.txt          N image ids, aligned with the rows (what queries and /api/image use)
    paths.txt        N image paths relative to the collection root (posix separators)
    labels.jsonl     N lines {"categories": [...], "tags": [...]} when the source has them
    index.json       format, counts, dtype, the collection root (absolute and relative to
                     this folder), the text space (path, name, kind, similarity, dim,
                     sha256) and the network (sha256, file, arch, outputs); written last:
                     an index without it is incomplete
    meta.json        provenance (search/01_build_index.py)
    .partial/        resume parts of an interrupted build (removed when complete)

Building is batched (thread-decoded images, one forward pass per batch), shows a progress
bar, and saves every ``part_images`` images atomically under ``.partial/<key>/``: a rerun
with the same network, space and image list continues after the last finished part, and
gives the same rows as a build that was never stopped. Unreadable images are skipped and
counted by reason.

Use::

    from texttopicnet.search.index import build_index, load_index
    idx = load_index("runs/demo/search")
    idx.ids[:3], idx.embeddings.shape, idx.image_path(idx.ids[0])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import io
from ..core.errors import DataError, UserError
from ..core.paths import inside
from .sources import Collection

FORMAT = "texttopicnet-search-index"
FORMAT_VERSION = 1
INDEX_JSON = "index.json"
FILES = ("embeddings.npy", "ids.txt", "paths.txt")
LABELS = "labels.jsonl"
DTYPES = ("float32", "float16")


def space_checksum(path: str | os.PathLike) -> str:
    """sha256 naming a saved text space: over its manifest's file digests, or its LDA model files."""
    path = Path(path)
    h = hashlib.sha256()
    manifest = path / "manifest.json" if path.is_dir() else None
    if manifest is not None and manifest.is_file():
        files = io.read_json(manifest).get("files") or {}
        h.update(json.dumps(files, sort_keys=True).encode())
        return h.hexdigest()
    from ..text.topics import DICTIONARY_NAME, find_model_file

    model = find_model_file(path)
    for f in sorted(model.parent.iterdir()):
        if f.is_file() and (f.name.startswith(model.name) or f.name == DICTIONARY_NAME):
            h.update(f.name.encode() + b"\0" + io.sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def _list_digest(items) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it.id}\t{it.rel}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _save_part(folder: Path, index: int, rows: np.ndarray, kept: list[int], bad: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    io.write_json(folder / f"part_{index:06d}.skipped.json", bad)
    with io.atomic_path(folder / f"part_{index:06d}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, rows=rows, kept=np.asarray(kept, dtype=np.int64))


def _load_part(folder: Path, index: int):
    f, sk = folder / f"part_{index:06d}.npz", folder / f"part_{index:06d}.skipped.json"
    if not (f.is_file() and sk.is_file()):
        return None
    try:
        with np.load(f, allow_pickle=False) as z:
            return z["rows"], z["kept"].tolist(), io.read_json(sk)
    except (OSError, ValueError, KeyError):
        return None  # a damaged part is redone


class BuildInterrupted(UserError):
    """Raised by ``stop_after_parts`` (tests): the finished parts are kept for the rerun."""


def build_index(out_dir: str | os.PathLike, collection: Collection, embedder, *, network: dict, space: dict,
                dtype: str = "float32", batch_size: int = 32, workers: int = 2, part_images: int = 1024,
                progress: bool = True, stop_after_parts: int | None = None) -> dict:
    """Embed ``collection`` with ``embedder`` (embedding.ImageEmbedder) and write the index to ``out_dir``.

    ``network``: ``{"sha256", "source", "arch", "num_outputs", ...}`` (load_network's info);
    ``space``: ``{"path", "name", "kind", "similarity", "dim", "sha256", "target"}``.
    Returns the summary written to ``index.json``.
    """
    from tqdm import tqdm

    from .embedding import iter_batches

    if dtype not in DTYPES:
        raise UserError(f"index dtype must be one of {DTYPES}, got {dtype!r}")
    if int(network["num_outputs"]) != int(space["dim"]):
        raise UserError(f"the network has {network['num_outputs']} outputs but the text space {space['path']} has "
                        f"{space['dim']} dimensions: the network must be trained on that space")
    out = Path(out_dir)
    items = collection.items
    key = hashlib.sha256(json.dumps([network["sha256"], space["sha256"], _list_digest(items), space["kind"],
                                     int(part_images)]).encode()).hexdigest()[:16]
    partial = out / ".partial" / key
    (out / INDEX_JSON).unlink(missing_ok=True)  # incomplete from here on
    paths = [str(collection.root / it.rel) for it in items]
    chunks, kept_all, skipped, resumed = [], [], [], 0
    n_parts = -(-len(items) // part_images)
    bar = tqdm(total=len(items), desc="embedding images", unit="img", disable=not progress)
    for p in range(n_parts):
        lo, hi = p * part_images, min(len(items), (p + 1) * part_images)
        got = _load_part(partial, p)
        if got is None:
            rows, kept, bad = [], [], []
            for k, r, b in iter_batches(embedder, paths[lo:hi], batch_size, workers):
                if r is not None:
                    rows.append(r)
                kept += [lo + i for i in k]
                bad += [[lo + i, reason, msg] for i, reason, msg in b]
                bar.update(len(k) + len(b))
            dim = int(space["dim"])
            got = (np.concatenate(rows) if rows else np.zeros((0, dim), np.float32), kept, bad)
            _save_part(partial, p, *got)
            if stop_after_parts is not None and p + 1 >= stop_after_parts and p + 1 < n_parts:
                bar.close()
                raise BuildInterrupted(f"stopped after {p + 1} of {n_parts} parts (finished parts kept)")
        else:
            resumed += hi - lo
            bar.update(hi - lo)
        chunks.append(got[0])
        kept_all += list(got[1])
        skipped += [list(b) for b in got[2]]
    bar.close()
    if not kept_all:
        raise DataError(f"none of the {len(items)} images could be read "
                        f"(first: {skipped[0][2] if skipped else '?'})")
    rows = np.concatenate(chunks)
    summary = write_index(out, rows, [items[i] for i in kept_all], collection, network=network, space=space,
                          dtype=dtype, skipped=skipped, resumed=resumed)
    shutil.rmtree(out / ".partial", ignore_errors=True)
    return summary


def write_index(out: str | os.PathLike, rows: np.ndarray, items: list, collection: Collection, *, network: dict,
                space: dict, dtype: str = "float32", skipped: list | None = None, resumed: int = 0) -> dict:
    """Write the index files for ``rows`` aligned with ``items`` (sources.Item); index.json last."""
    out = Path(out)
    if dtype not in DTYPES:
        raise UserError(f"index dtype must be one of {DTYPES}, got {dtype!r}")
    if rows.ndim != 2 or len(rows) != len(items) or rows.shape[1] != int(space["dim"]):
        raise UserError(f"rows {rows.shape} do not match {len(items)} items x {space['dim']} dimensions")
    skipped = skipped or []
    (out / INDEX_JSON).unlink(missing_ok=True)
    io.save_npy(out / "embeddings.npy", np.ascontiguousarray(rows, dtype=dtype))
    io.write_lines(out / "ids.txt", [it.id for it in items])
    io.write_lines(out / "paths.txt", [it.rel for it in items])
    has_labels = any(it.categories or it.tags for it in items)
    if has_labels:
        with io.atomic_open(out / LABELS, "w") as fh:
            for it in items:
                fh.write(json.dumps({"categories": list(it.categories), "tags": list(it.tags)},
                                    ensure_ascii=False) + "\n")
    else:
        (out / LABELS).unlink(missing_ok=True)
    reasons = Counter(b[1] for b in skipped)
    summary = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "images": len(items), "dim": int(rows.shape[1]),
        "dtype": dtype, "similarity": space["similarity"], "kind": space["kind"],
        "root": str(collection.root), "root_relative": os.path.relpath(collection.root, out.resolve()),
        "source": {"kind": collection.kind, "spec": collection.source, "counts": collection.counts},
        "skipped": dict(reasons), "skipped_examples": [b[2] for b in skipped[:10]],
        "labels": LABELS if has_labels else None, "resumed_images": resumed,
        "space": {**space, "path": str(Path(space["path"]).resolve()),
                  "path_relative": os.path.relpath(Path(space["path"]).resolve(), out.resolve())},
        "network": _with_relative(network, "source", out),
    }
    io.write_json(out / INDEX_JSON, summary)
    return summary


def _with_relative(record: dict, key: str, out: Path) -> dict:
    src = record.get(key)
    if not src or src == "random" or not Path(src).exists():
        return dict(record)
    return {**record, "path_relative": os.path.relpath(Path(src).resolve(), out.resolve())}


@dataclass
class SearchIndex:
    folder: Path
    info: dict
    ids: list[str]
    paths: list[str]
    root: Path
    embeddings: np.ndarray
    labels: list[dict] | None = None
    row_of: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, image_id: str) -> Path | None:
        """The file of an indexed image, or None (unknown id, or a path that left the root since)."""
        row = self.row_of.get(image_id)
        return None if row is None else inside(self.root, self.paths[row])

    def resolve(self, key: str) -> Path:
        """``space``/``network`` path recorded in index.json: relative to the index folder first, then absolute."""
        rec = self.info[key]
        rel = rec.get("path_relative")
        if rel is not None and (self.folder / rel).exists():
            return (self.folder / rel).resolve()
        return Path(rec.get("path") or rec.get("source"))


def load_index(folder: str | os.PathLike, root: str | os.PathLike | None = None, mmap: bool = True) -> SearchIndex:
    """Read an index folder; ``root`` overrides the recorded collection root (images moved)."""
    folder = Path(folder)
    meta_path = folder / INDEX_JSON
    if not meta_path.is_file():
        hint = " (an interrupted build: rerun search/01_build_index.py)" if (folder / ".partial").is_dir() else ""
        raise UserError(f"{folder}: no search index here ({INDEX_JSON} missing){hint}")
    try:
        info = io.read_json(meta_path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path}: unreadable ({exc})") from None
    if info.get("format") != FORMAT or int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{meta_path}: not a search index of a version this code reads")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: index files missing: {', '.join(missing)}")
    emb = np.load(folder / "embeddings.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    ids, paths = io.read_lines(folder / "ids.txt"), io.read_lines(folder / "paths.txt")
    n = int(info["images"])
    if emb.ndim != 2 or emb.shape != (n, int(info["dim"])) or len(ids) != n or len(paths) != n:
        raise DataError(f"{folder}: embeddings {emb.shape}, {len(ids)} ids and {len(paths)} paths do not match "
                        f"index.json ({n} images x {info['dim']})")
    if str(emb.dtype) not in DTYPES:
        raise DataError(f"{folder}: embeddings dtype {emb.dtype}, expected one of {DTYPES}")
    labels = None
    if info.get("labels") and (folder / LABELS).is_file():
        with open(folder / LABELS, encoding="utf-8") as fh:
            labels = [json.loads(line) for line in fh if line.strip()]
        if len(labels) != n:
            raise DataError(f"{folder / LABELS}: {len(labels)} lines for {n} images")
    if root is not None:
        root_path = Path(root).resolve()
    else:
        rel = folder / info.get("root_relative", "")
        root_path = rel.resolve() if info.get("root_relative") is not None and rel.is_dir() else Path(info["root"])
    row_of = {i: r for r, i in enumerate(ids)}
    if len(row_of) != n:
        raise DataError(f"{folder / 'ids.txt'}: duplicate ids")
    return SearchIndex(folder, info, ids, paths, root_path, emb, labels, row_of)

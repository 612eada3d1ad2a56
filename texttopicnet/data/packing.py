"""Decode and resize a list of images once into a memory-mappable uint8 ``.npy`` store.

The paper resizes every training image to 256x256 (aspect ratio ignored) before
taking random 227 crops. Doing that once, in parallel, into an ``(N, 256, 256, 3)``
RGB uint8 array on disk means training reads raw pixels with a memory copy instead
of decoding JPEGs 160,000 x 64 times.

- Parallel: worker processes decode and write their rows straight into a shared
  memory-mapped work file (no pixel data crosses process boundaries).
- Resumable: finished rows are recorded in an append-only progress log after their
  pixels are in the work file; rerunning after a crash (even ``kill -9``) redoes only
  the rest. (The kernel keeps a killed process's written pages of a shared mapping.)
- Robust: an unreadable image is skipped with its reason; ``PackResult.kept`` says
  which input rows made it, so callers re-align their labels (``labels[kept]``).
- Atomic: the final store appears under ``out_path`` only when complete.

Example::

    res = pack_images(paths, "runs/demo/packed/images.npy", workers=2)
    labels = labels[res.kept]
    store = np.load("runs/demo/packed/images.npy", mmap_mode="r")   # (len(kept), 256, 256, 3)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ..core.errors import DataError
from ..core.io import atomic_path, read_json, write_json
from .images import ImageReadError, load_resized

# Rows copied per block while compacting the work file (bounds memory to ~100 MB).
_COPY_BLOCK = 512


@dataclass
class PackResult:
    kept: list[int] = field(default_factory=list)               # indices into ``paths``, in order
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (index into ``paths``, reason)
    resumed: int = 0                                            # rows reused from an earlier run
    out_path: Path | None = None


def _work_paths(out_path: Path) -> tuple[Path, Path, Path]:
    stem = out_path.name
    return (out_path.with_name(f".{stem}.work.npy"), out_path.with_name(f".{stem}.progress"),
            out_path.with_name(f".{stem}.work.json"))


def _fingerprint(paths: Sequence[str], size: int, keep_aspect: bool) -> str:
    h = hashlib.sha256(f"{size}|{int(keep_aspect)}|".encode())
    for p in paths:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _read_progress(path: Path, n: int) -> dict[int, str | None]:
    """index -> None (packed) or reason (skipped); a torn last line from a crash is ignored."""
    done: dict[int, str | None] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            parts = line.rstrip("\n").split("\t", 2)
            try:
                idx = int(parts[0])
            except ValueError:
                continue
            if 0 <= idx < n and len(parts) >= 2:
                done[idx] = None if parts[1] == "ok" else (parts[2] if len(parts) > 2 else "skipped")
    return done


# ---- worker side: each process opens the shared work file once -------------------------
_W: dict = {}


def _worker_init(work_file: str, size: int, keep_aspect: bool) -> None:
    _W["store"] = np.load(work_file, mmap_mode="r+")
    _W["size"], _W["keep_aspect"] = size, keep_aspect


def _pack_one(job: tuple[int, str]) -> tuple[int, str | None]:
    idx, path = job
    try:
        _W["store"][idx] = load_resized(path, size=_W["size"], keep_aspect=_W["keep_aspect"])
    except (ImageReadError, OSError, ValueError) as exc:
        return idx, str(exc).replace("\n", " ").replace("\t", " ")
    return idx, None


def _compact(work: np.ndarray, kept: list[int], out_path: Path) -> None:
    """Copy the kept rows of the work file into the final store (atomic)."""
    with atomic_path(out_path) as tmp:
        dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(kept),) + work.shape[1:])
        for start in range(0, len(kept), _COPY_BLOCK):
            rows = kept[start:start + _COPY_BLOCK]
            dst[start:start + len(rows)] = work[rows]
        dst.flush()
        del dst


def pack_images(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, size: int = 256,
                keep_aspect: bool = False, workers: int = 1, resume: bool = True,
                progress: bool = True) -> PackResult:
    """Pack ``paths`` into ``out_path`` (uint8 ``(len(kept), size, size, 3)`` RGB ``.npy``).

    ``keep_aspect=False`` is the paper's warp to size x size; ``True`` resizes the short
    side and centre-crops. ``resume=True`` continues an interrupted run of the same
    inputs; ``False`` starts over. Raises :class:`DataError` when no image is readable.
    """
    paths = [str(p) for p in paths]
    out_path = Path(out_path)
    n = len(paths)
    if n == 0:
        raise DataError("pack_images: the image list is empty (nothing to pack)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work_file, progress_file, work_meta = _work_paths(out_path)
    fp = _fingerprint(paths, size, keep_aspect)

    reusable = (resume and work_file.is_file() and progress_file.is_file() and work_meta.is_file()
                and _safe_read(work_meta).get("fingerprint") == fp)
    if not reusable:
        for p in (work_file, progress_file, work_meta):
            if p.exists():
                p.unlink()
        mm = np.lib.format.open_memmap(work_file, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        del mm
        write_json(work_meta, {"fingerprint": fp, "count": n, "size": size, "keep_aspect": keep_aspect})
    done = _read_progress(progress_file, n) if reusable else {}
    result = PackResult(resumed=len(done), out_path=out_path)
    todo = [(i, paths[i]) for i in range(n) if i not in done]

    with open(progress_file, "a", encoding="utf-8") as log:
        def record(idx: int, reason: str | None) -> None:
            done[idx] = reason
            log.write(f"{idx}\tok\n" if reason is None else f"{idx}\tskip\t{reason}\n")
            log.flush()  # a killed run loses at most the row in flight

        bar = tqdm(total=n, initial=n - len(todo), desc="pack images", unit="img", disable=not progress)
        if workers <= 1 or len(todo) < 2 * workers:
            _worker_init(str(work_file), size, keep_aspect)
            try:
                for job in todo:
                    record(*_pack_one(job))
                    bar.update(1)
            finally:
                _W.clear()
        else:
            import multiprocessing as mp

            # Chunks big enough to amortise IPC, small enough to keep the bar moving.
            chunk = max(1, min(64, len(todo) // (workers * 8)))
            with mp.get_context("spawn").Pool(workers, _worker_init, (str(work_file), size, keep_aspect)) as pool:
                for idx, reason in pool.imap_unordered(_pack_one, todo, chunksize=chunk):
                    record(idx, reason)
                    bar.update(1)
        bar.close()
        log.flush()
        os.fsync(log.fileno())

    result.kept = [i for i in range(n) if done.get(i, "missing") is None]
    result.skipped = [(i, done[i]) for i in range(n) if done.get(i) is not None]
    if not result.kept:
        first = result.skipped[0][1] if result.skipped else "?"
        raise DataError(f"none of the {n} images could be read (first error: {first})")
    work = np.load(work_file, mmap_mode="r")
    if len(result.kept) == n:
        del work
        with open(work_file, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(work_file, out_path)  # nothing skipped: the work file is the store
    else:
        _compact(work, result.kept, out_path)
        del work
        work_file.unlink()
    for p in (progress_file, work_meta):
        if p.exists():
            p.unlink()
    return result


def _safe_read(path: Path) -> dict:
    try:
        obj = read_json(path)
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError, json.JSONDecodeError):
        return {}

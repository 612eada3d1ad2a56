"""CNN feature extraction with the paper's test-time input, cached per (weights, dataset, split, layer).

Input (REFERENCE.md, VOC2007 protocol): resize to 256x256 ignoring the aspect ratio, centre
227x227 crop, BGR mean-subtracted 0..255 pixels. Images are decoded by a thread pool one
batch ahead of the network (PIL releases the GIL), and all requested layers come from one
forward pass. Unreadable images are skipped, counted and listed, never fatal.

Cache layout (docs/DEVELOPING.md)::

    RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.npy   float32 (n_kept, dim)
    RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.txt   n_kept image paths, aligned
    RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.json  completion marker: the sha256 of
                                                                 the requested path list, skipped images

The ``.json`` is written last, so a cache entry is trusted only when it exists, names the
same requested list and the array's row count equals the index's length.

Example::

    from texttopicnet.features import cached_features
    fs = cached_features(run_dir, net, info, "voc2007", "test", paths, ["fc7"])
    fs.features["fc7"].shape, fs.paths, fs.skipped
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from . import io
from .augment import center_crop
from .images import ImageReadError, load_resized
from .models.caffenet import CROP, FEATURE_LAYERS, RESIZE, preprocess_uint8

CACHE_VERSION = 1  # bump when the preprocessing changes, so old caches are recomputed


@dataclass
class FeatureSet:
    features: dict[str, np.ndarray]  # layer -> float32 (n_kept, dim)
    paths: list[str]  # the kept images, aligned with the rows
    kept: list[int]  # their positions in the requested list
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    from_cache: dict[str, bool] = field(default_factory=dict)


def list_digest(paths: Sequence[str | os.PathLike]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _load(path) -> np.ndarray | str:
    try:
        return load_resized(path, RESIZE)
    except ImageReadError as exc:
        return str(exc)


def iter_image_batches(paths: Sequence[str | os.PathLike], batch_size: int, workers: int = 2
                       ) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """Yield (kept positions, uint8 (n, 256, 256, 3) or None, [(position, reason)]) per batch.

    Decoding of batch b+1 runs in threads while the caller works on batch b.
    """
    starts = list(range(0, len(paths), batch_size))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        def submit(s):
            return [pool.submit(_load, paths[i]) for i in range(s, min(s + batch_size, len(paths)))]

        pending = submit(starts[0]) if starts else None
        for b, s in enumerate(starts):
            futures = pending
            pending = submit(starts[b + 1]) if b + 1 < len(starts) else None
            kept, arrays, bad = [], [], []
            for j, fut in enumerate(futures):
                res = fut.result()
                if isinstance(res, str):
                    bad.append((s + j, res))
                else:
                    kept.append(s + j)
                    arrays.append(res)
            yield kept, (np.stack(arrays) if arrays else None), bad


def extract(net: torch.nn.Module, paths: Sequence[str | os.PathLike], layers: Sequence[str],
            batch_size: int = 64, device: str | torch.device = "cpu", workers: int = 2,
            progress: bool = True, desc: str = "features") -> FeatureSet:
    """Run ``net`` (a CaffeNet) on every readable image; each layer flattened to (n_kept, dim) float32."""
    unknown = [n for n in layers if n not in FEATURE_LAYERS]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; choose from {list(FEATURE_LAYERS)}")
    from tqdm import tqdm

    device = torch.device(device)
    net = net.to(device).eval()
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    kept_all: list[int] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress)
    with torch.inference_mode():
        for kept, batch, bad in iter_image_batches(paths, batch_size, workers):
            skipped += [(str(paths[i]), reason) for i, reason in bad]
            if batch is not None:
                x = center_crop(torch.from_numpy(batch).to(device), CROP)
                out = net.extract(preprocess_uint8(x), layers)
                for n in layers:
                    chunks[n].append(out[n].flatten(1).float().cpu().numpy())
                kept_all += kept
            bar.update(len(kept) + len(bad))
    bar.close()
    feats = {n: (np.concatenate(chunks[n]) if chunks[n] else np.zeros((0, 0), np.float32)) for n in layers}
    return FeatureSet(feats, [str(paths[i]) for i in kept_all], kept_all, skipped)


def cache_dir(run_dir: str | os.PathLike, weights_sha: str) -> Path:
    return Path(run_dir) / "features" / weights_sha[:12]


def cache_stem(dataset: str, split: str, layer: str) -> str:
    for part in (dataset, split, layer):
        if not part or "/" in part or os.sep in part:
            raise ValueError(f"bad cache name part {part!r}: must be non-empty, without path separators")
    return f"{dataset}_{split}_{layer}"


def _read_cached(folder: Path, stem: str, digest: str) -> tuple[np.ndarray, list[str], dict] | None:
    meta_path = folder / f"{stem}.json"
    if not meta_path.is_file():
        return None
    try:
        meta = io.read_json(meta_path)
        if meta.get("list_sha256") != digest or meta.get("version") != CACHE_VERSION:
            return None
        arr = np.load(folder / f"{stem}.npy", mmap_mode=None, allow_pickle=False)
        index = io.read_lines(folder / f"{stem}.txt")
    except (OSError, ValueError):
        return None  # damaged entry: recompute
    if arr.ndim != 2 or arr.shape[0] != len(index) or arr.dtype != np.float32:
        return None
    return arr, index, meta


def cached_features(run_dir: str | os.PathLike, net: torch.nn.Module, info: dict, dataset: str, split: str,
                    paths: Sequence[str | os.PathLike], layers: Sequence[str], *, batch_size: int = 64,
                    device: str | torch.device = "cpu", workers: int = 2, force: bool = False,
                    progress: bool = True) -> FeatureSet:
    """Features of ``paths`` for each layer, from the cache when valid, else extracted and cached.

    Missing layers are computed together in one pass. The cache key is the weights'
    ``info["sha256"]``, the dataset/split names and the exact requested path list.
    """
    folder = cache_dir(run_dir, info["sha256"])
    digest = list_digest(paths)
    feats: dict[str, np.ndarray] = {}
    index = skipped = None
    from_cache = {}
    todo = []
    for layer in layers:
        hit = None if force else _read_cached(folder, cache_stem(dataset, split, layer), digest)
        if hit is None:
            todo.append(layer)
            continue
        feats[layer], index, meta = hit
        skipped = [tuple(s) for s in meta.get("skipped", [])]
        from_cache[layer] = True
    if todo:
        fs = extract(net, paths, todo, batch_size=batch_size, device=device, workers=workers,
                     progress=progress, desc=f"{dataset}/{split} {'+'.join(todo)}")
        if index is not None and index != fs.paths:
            raise RuntimeError("cached and fresh feature indexes disagree (an image became (un)readable?); "
                               "rerun with --force")
        index, skipped = fs.paths, fs.skipped
        for layer in todo:
            stem = cache_stem(dataset, split, layer)
            feats[layer] = fs.features[layer]
            io.save_npy(folder / f"{stem}.npy", fs.features[layer])
            io.write_lines(folder / f"{stem}.txt", fs.paths)
            io.write_json(folder / f"{stem}.json", {
                "version": CACHE_VERSION, "dataset": dataset, "split": split, "layer": layer,
                "weights_sha256": info["sha256"], "weights_source": info.get("source"),
                "list_sha256": digest, "n_requested": len(paths), "n_kept": len(fs.paths),
                "shape": list(fs.features[layer].shape), "input": f"resize {RESIZE}x{RESIZE}, centre crop {CROP}",
                "skipped": [list(s) for s in fs.skipped]})
            from_cache[layer] = False
    pos = {str(p): i for i, p in enumerate(paths)}
    kept = [pos[p] for p in index]
    return FeatureSet(feats, list(index), kept, list(skipped or []), from_cache)

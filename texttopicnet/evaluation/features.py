"""CNN feature extraction with the paper's test-time input, cached per (weights, dataset, split, layer).

Input (REFERENCE.md, VOC2007 protocol): resize to 256x256 ignoring the aspect ratio, centre
crop, the network's pixel convention; all three come from the network's backbone
(``backbones.spec_of(net)``): CaffeNet, the paper's, takes the 227 crop in BGR minus the
Caffe mean, 0..255; torchvision nets the 224 crop, /255, ImageNet mean/std. Layers are any
name ``networks.layers`` knows for the network (CaffeNet's Caffe names, torchvision node
names and aliases, ``logits``, ``prob``). Images are decoded by a thread pool one batch
ahead of the network (PIL releases the GIL), and all requested layers come from one
forward pass. Unreadable images are skipped, counted and listed, never fatal.

Cache layout (docs/DEVELOPING.md)::

    RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.npy   float32 (n_kept, dim)
    RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.txt   n_kept image paths, aligned
    RUN/features/<weights-sha12>/<dataset>_<split>_<layer>.json  completion marker: the sha256 of
                                                                 the requested path list, skipped images

The ``.json`` is written last, so a cache entry is trusted only when it exists, names the
same requested list and the array's row count equals the index's length. The weights
checksum names the architecture too (each file is one network; ``random`` baselines of
other architectures are ``random-<arch>-seed<N>-k<K>``), and the marker records ``arch``.

Example::

    from texttopicnet.evaluation.features import cached_features
    fs = cached_features(run_dir, net, info, "voc2007", "test", paths, ["fc7"])
    fs.features["fc7"].shape, fs.paths, fs.skipped
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..core import io
from ..data.images import iter_decoded, load_resized
from ..networks import backbones
from ..networks.caffenet import RESIZE
from ..networks.layers import FeatureExtractor
from ..training.augment import center_crop

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


def iter_image_batches(paths: Sequence[str | os.PathLike], batch_size: int, workers: int = 2, size: int = RESIZE
                       ) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """Yield (kept positions, uint8 (n, size, size, 3) or None, [(position, reason)]) per batch.

    Decoding of batch b+1 runs in threads while the caller works on batch b.
    """
    for kept, arrays, bad in iter_decoded(paths, lambda p: load_resized(p, size), batch_size, workers):
        yield kept, (np.stack(arrays) if arrays else None), [(i, str(exc)) for i, exc in bad]


def extract(net: torch.nn.Module, paths: Sequence[str | os.PathLike], layers: Sequence[str],
            batch_size: int = 64, device: str | torch.device = "cpu", workers: int = 2,
            progress: bool = True, desc: str = "features", resume_dir: str | os.PathLike | None = None,
            part_images: int = 2048) -> FeatureSet:
    """Run ``net`` (any registered backbone) on every readable image; each layer flattened to
    (n_kept, dim) float32. Input size, crop and pixel convention are the backbone's.

    With ``resume_dir``, finished parts of ``part_images`` images are saved there as they
    complete, and a rerun with the same arguments continues after the last saved part.
    """
    from tqdm import tqdm

    spec = backbones.spec_of(net)
    device = torch.device(device)
    net = net.to(device).eval()
    run = FeatureExtractor(net, layers)  # an unknown name is a UserError listing the network's layers
    per_part = max(1, part_images // batch_size) * batch_size
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in layers}
    kept_all: list[int] = []
    skipped: list[tuple[str, str]] = []
    start = 0
    if resume_dir is not None:
        start = min(len(paths), _load_parts(Path(resume_dir), layers, chunks, kept_all, skipped, per_part))
    bar = tqdm(total=len(paths), initial=start, desc=desc, unit="img", disable=not progress)
    part = {n: [] for n in layers}, [], []
    with torch.inference_mode():
        for kept, batch, bad in iter_image_batches(paths[start:], batch_size, workers, spec.resize):
            part[2].extend((str(paths[start + i]), reason) for i, reason in bad)
            if batch is not None:
                x = center_crop(torch.from_numpy(batch).to(device), spec.crop)
                out = run(spec.preprocess(x))
                for n in layers:
                    part[0][n].append(out[n].flatten(1).float().cpu().numpy())
                part[1].extend(start + i for i in kept)
            bar.update(len(kept) + len(bad))
            done = start + max(kept + [i for i, _ in bad]) + 1
            if done % per_part == 0 or done == len(paths):
                if resume_dir is not None:
                    _save_part(Path(resume_dir), -(-done // per_part), part)  # part k covers images < k*per_part
                for n in layers:
                    chunks[n] += part[0][n]
                kept_all += part[1]
                skipped += part[2]
                part = {n: [] for n in layers}, [], []
    bar.close()
    feats = {n: (np.concatenate(chunks[n]) if chunks[n] else np.zeros((0, 0), np.float32)) for n in layers}
    return FeatureSet(feats, [str(paths[i]) for i in kept_all], kept_all, skipped)


def choose_layers(net: torch.nn.Module, asked: Sequence[str] | None,
                  default: Sequence[str] | None = None) -> list[str]:
    """The layers to extract: ``asked`` checked against the network's names (a UserError names the
    unknown ones and the recommended ones), or ``default``, or the backbone's ``default_layers``."""
    from ..core.errors import UserError
    from ..networks.layers import layer_names

    spec = backbones.spec_of(net)
    wanted = list(asked or default or spec.default_layers)
    known = set(layer_names(net))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise UserError(f"unknown layer(s) {unknown} for {spec.name}; recommended: {list(spec.feature_layers)}, "
                        f"or any node of torchvision's get_graph_node_names for torchvision nets")
    return wanted


def _save_part(folder: Path, index: int, part) -> None:
    feats, kept, bad = part
    arrays = {f"layer_{n}": (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for n, v in feats.items()}
    arrays["kept"] = np.asarray(kept, dtype=np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(folder / f"part_{index:06d}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    io.write_json(folder / f"part_{index:06d}.skipped.json", [list(b) for b in bad])


def _load_parts(folder: Path, layers, chunks, kept_all, skipped, per_part: int) -> int:
    """Load consecutive finished parts; return the number of images they cover."""
    k = 0
    while True:
        f, sk = folder / f"part_{k + 1:06d}.npz", folder / f"part_{k + 1:06d}.skipped.json"
        if not (f.is_file() and sk.is_file()):
            return k * per_part
        try:
            with np.load(f, allow_pickle=False) as z:
                arrs = {n: z[f"layer_{n}"] for n in layers}
                kept = z["kept"].tolist()
            bad = [tuple(b) for b in io.read_json(sk)]
        except (OSError, ValueError, KeyError):
            return k * per_part  # a damaged part: redo from there
        for n in layers:
            if len(kept):
                chunks[n].append(arrs[n])
        kept_all += kept
        skipped += bad
        k += 1


def cache_dir(run_dir: str | os.PathLike, weights_sha: str) -> Path:
    """RUN/features/<sha12>; a "random-seed<N>-k<K>" tag is kept whole (12 characters would merge seeds/sizes)."""
    name = weights_sha if weights_sha.startswith("random-") else weights_sha[:12]
    return Path(run_dir) / "features" / name


def cache_stem(dataset: str, split: str, layer: str) -> str:
    for part in (dataset, split, layer):
        if not part or "/" in part or os.sep in part:
            raise ValueError(f"bad cache name part {part!r}: must be non-empty, without path separators")
    return f"{dataset}_{split}_{layer}"


def _read_cached(folder: Path, stem: str, digest: str, weights_sha: str) -> tuple[np.ndarray, list[str], dict] | None:
    meta_path = folder / f"{stem}.json"
    if not meta_path.is_file():
        return None
    try:
        meta = io.read_json(meta_path)
        if (meta.get("list_sha256") != digest or meta.get("version") != CACHE_VERSION
                or meta.get("weights_sha256") != weights_sha):
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
    spec = backbones.spec_of(net)
    feats: dict[str, np.ndarray] = {}
    index = skipped = None
    from_cache = {}
    todo = []
    for layer in layers:
        hit = None if force else _read_cached(folder, cache_stem(dataset, split, layer), digest, info["sha256"])
        if hit is None:
            todo.append(layer)
            continue
        feats[layer], index, meta = hit
        skipped = [tuple(s) for s in meta.get("skipped", [])]
        from_cache[layer] = True
    if todo:
        # finished parts survive an interruption here; removed once the cache entry is complete
        partial = folder / ".partial" / f"{dataset}_{split}_{'+'.join(todo)}_b{batch_size}_{digest[:16]}"
        if force and partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
        fs = extract(net, paths, todo, batch_size=batch_size, device=device, workers=workers,
                     progress=progress, desc=f"{dataset}/{split} {'+'.join(todo)}", resume_dir=partial)
        if index is not None and index != fs.paths:
            from ..core.errors import DataError

            raise DataError(f"{folder}: cached and fresh feature indexes of {dataset}/{split} disagree "
                            "(an image became readable or unreadable since?); rerun with --force")
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
                "shape": list(fs.features[layer].shape), "arch": spec.name,
                "input": f"resize {spec.resize}x{spec.resize}, centre crop {spec.crop}",
                "skipped": [list(s) for s in fs.skipped]})
            from_cache[layer] = False
        shutil.rmtree(partial, ignore_errors=True)
    pos = {str(p): i for i, p in enumerate(paths)}
    kept = [pos[p] for p in index]
    return FeatureSet(feats, list(index), kept, list(skipped or []), from_cache)


DATASETS = ("voc2007", "wikipedia", "list")


def dataset_images(dataset: str, split: str, data_root: str | os.PathLike | None = None,
                   image_list: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """(image paths to extract, notes) for a named dataset split or an image list file.

    ``voc2007``: ``JPEGImages/<id>.jpg`` of the split (train/val/trainval/test).
    ``wikipedia``: the images of the split's pairs that exist (missing ones are counted in
    the notes). ``list``: one path per line of ``image_list`` (relative to the file's folder; a line
    that resolves outside that folder, or ``data_root`` when given, is refused and noted).
    """
    from ..core.errors import UserError

    notes = []
    if dataset == "voc2007":
        from ..data.readers.voc import find_voc_root, load_voc_split

        return [str(p) for p in load_voc_split(find_voc_root(data_root), split).image_paths], notes
    if dataset == "wikipedia":
        from ..core.paths import OUTSIDE
        from ..data.readers.wikipedia import find_wikipedia_root, load_wikipedia

        refused: dict = {}
        pairs = load_wikipedia(find_wikipedia_root(data_root), split, refused=refused)
        paths = [str(p.image_path) for p in pairs if p.image_path is not None]
        if refused.get(OUTSIDE):
            notes.append(f"{refused[OUTSIDE]} id(s) of the Wikipedia {split} list lead outside the dataset folder "
                         f"and were refused ({OUTSIDE})")
        if len(paths) < len(pairs):
            notes.append(f"{len(pairs) - len(paths)} of {len(pairs)} images of the Wikipedia {split} split "
                         "are missing on disk and were left out")
        return paths, notes
    if dataset == "list":
        if image_list is None:
            raise UserError("--dataset list needs --image-list FILE (one image path per line)")
        f = Path(image_list)
        if not f.is_file():
            raise UserError(f"{f}: image list file not found")
        try:
            lines = io.read_lines(f)
        except UnicodeDecodeError:
            raise UserError(f"{f}: not a UTF-8 text file (expected one image path per line)") from None
        # Lines are data: each must stay inside the list's folder (or --data-root when given).
        from ..core.paths import OUTSIDE, is_inside

        roots = [f.parent] + ([Path(data_root)] if data_root is not None else [])
        paths, refused = [], []
        for line in (x.strip() for x in lines):
            if not line:
                continue
            target = os.path.realpath(f.parent / line)  # relative lines are relative to the list's folder
            (paths if any(is_inside(r, target) for r in roots) else refused).append(target)
        if refused:
            notes.append(f"{len(refused)} line(s) of {f} resolve outside {' and '.join(map(str, roots))} and were "
                         f"refused ({OUTSIDE}); first: {refused[0]!r}")
        if not paths:
            raise UserError(f"{f}: the image list names no usable image" + (f" ({notes[-1]})" if refused else ""))
        return paths, notes
    raise UserError(f"unknown dataset {dataset!r}; choose from {DATASETS}")

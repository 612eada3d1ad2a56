"""Running a :class:`~texttopicnet.instance.cams.CamNetwork` over a collection, with the paper's input sizes.

Input sizes (``--size-mode``):

- ``paper`` (default): every image is warped to 1024x720 (landscape) or 720x1024 (portrait, when
  taller than wide), as the authors' code does (``size_h``/``size_v``); images are batched by
  orientation, so a batch always has one shape;
- ``keep-aspect``: long side ``long_side``, aspect kept (batched by identical shape);
- ``original``: no resizing (batched by identical shape).

Per database image the store keeps what aggregation and re-ranking read later:
``class_vectors`` (N, K, C) float16 (all K topics, in topic order: offline and online aggregation
both re-aggregate from them), ``scores`` (N, K) float32, ``sum_pool`` (N, C) float32, ``grid``
(N, 2) feature-map (h, w), and with ``keep_maps`` the features (C, h, w) and normalised CAMs
(K, h, w) of each image in ``maps/<row>.npz`` (float16) for CAM re-ranking without re-running
the network. Extraction is resumable: finished chunks go to ``parts/`` (atomic), and the
arrays are assembled, then ``store.json`` (the completion marker, written last).

Queries (:func:`extract_queries`), as in the paper: the topics are predicted from the query
crop alone (the box cut out of the resized image, its sides rounded down to a multiple of the
feature stride); the full image is then described and its features and CAMs are cropped to the
box on the feature grid (start rounded down, end rounded down, at least one cell).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..core import io
from ..core.errors import DataError
from ..data.images import ImageReadError, load_rgb
from .cams import CamNetwork
from .descriptors import class_vectors, nonpositive_maps, normalize_cams, sum_pooling

SIZE_MODES = ("paper", "keep-aspect", "original")
PAPER_LONG, PAPER_SHORT = 1024, 720   # the authors' size_h = [1024, 720], size_v = [720, 1024]
MIN_CROP = 64                          # smallest query crop side fed to the network (upscaled below it)
CHUNK = 32                             # images per resumable part


def target_size(width: int, height: int, mode: str = "paper", long_side: int = PAPER_LONG,
                short_side: int = PAPER_SHORT) -> tuple[int, int]:
    """(W, H) the network sees for an image of ``width`` x ``height``."""
    if mode == "paper":
        return (short_side, long_side) if height > width else (long_side, short_side)
    if mode == "keep-aspect":
        scale = long_side / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    if mode == "original":
        return width, height
    raise ValueError(f"unknown size mode {mode!r}; choose from {SIZE_MODES}")


@dataclass(frozen=True)
class SizeRule:
    mode: str = "paper"
    long_side: int = PAPER_LONG
    short_side: int = PAPER_SHORT

    def __call__(self, width: int, height: int) -> tuple[int, int]:
        return target_size(width, height, self.mode, self.long_side, self.short_side)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr))[None]


@dataclass
class ImageMaps:
    features: torch.Tensor   # (C, h, w)
    cams: torch.Tensor       # (K, h, w) normalised
    scores: torch.Tensor     # (K,)
    input_size: tuple[int, int]   # (W, H) fed to the network
    original_size: tuple[int, int]


class Describer:
    """Images -> features, normalised CAMs, scores, batched by input shape."""

    def __init__(self, cam_net: CamNetwork, sizes: SizeRule = SizeRule(), batch_size: int = 4,
                 device: torch.device | str = "cpu", cam_norm: str = "paper"):
        self.net = cam_net.to(device)
        self.cam_norm = cam_norm
        self.nonpositive = 0  # raw CAMs with no positive value seen so far (diagnostic, stored in store.json)
        self.sizes = sizes
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)

    def run_arrays(self, arrays: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """uint8 (H, W, 3) arrays of ONE shape -> [(features, normalised CAMs, scores)] on CPU."""
        x = torch.from_numpy(np.stack(arrays))
        feats, cams, scores = self.net(self.net.preprocess(x).to(self.device))
        self.nonpositive += nonpositive_maps(cams)
        cams = normalize_cams(cams, self.cam_norm)
        return [(feats[i].cpu(), cams[i].cpu(), scores[i].cpu()) for i in range(len(arrays))]

    def describe_images(self, images: Sequence[Image.Image]) -> list[ImageMaps]:
        """PIL RGB images -> :class:`ImageMaps`, grouping equal input shapes into batches."""
        out: list[ImageMaps | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(self.sizes(*im.size), []).append(i)
        for size, idx in groups.items():
            for s in range(0, len(idx), self.batch_size):
                part = idx[s:s + self.batch_size]
                arrays = [np.asarray(images[i].resize(size, Image.BILINEAR), dtype=np.uint8) for i in part]
                for i, (f, c, sc) in zip(part, self.run_arrays(arrays)):
                    out[i] = ImageMaps(f, c, sc, size, images[i].size)
        return out  # type: ignore[return-value]


def _read(path: Path, counts: Counter) -> Image.Image | None:
    try:
        return load_rgb(path)
    except ImageReadError as exc:
        counts[exc.reason] += 1
        return None


def _orientation_order(paths: Sequence[Path]) -> list[int]:
    """Process portrait and landscape images apart (headers only) so batches share a shape."""
    from ..data.images import probe

    keys = []
    for i, p in enumerate(paths):
        try:
            info = probe(p)
            keys.append((info.height > info.width, i))
        except ImageReadError:
            keys.append((False, i))
    return [i for _, i in sorted(keys)]


def extract_collection(describer: Describer, paths: Sequence[Path], out_dir: str | Path, key: dict,
                       keep_maps: bool = True, desc: str = "describing images", log=print) -> dict:
    """Describe ``paths`` into ``out_dir`` (see the module docstring); returns the store record.

    ``key`` identifies the network and settings: a store whose ``store.json`` holds the same
    key and list is reused, parts with the same key resume.
    """
    out_dir = Path(out_dir)
    marker = out_dir / "store.json"
    record_key = {**key, "n": len(paths), "list_digest": list_digest([str(p) for p in paths]), "keep_maps": keep_maps}
    if marker.is_file() and io.read_json(marker).get("key") == record_key:
        return io.read_json(marker)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    part_key = parts_dir / "key.json"
    if not part_key.is_file() or io.read_json(part_key) != record_key:
        for old in parts_dir.glob("part_*.npz"):
            old.unlink()
        io.write_json(part_key, record_key)
    order = _orientation_order(paths)
    chunks = [order[s:s + CHUNK] for s in range(0, len(order), CHUNK)]
    counts: Counter = Counter()
    bar = tqdm(total=len(paths), desc=desc, unit="img")
    for ci, rows in enumerate(chunks):
        part = parts_dir / f"part_{ci:05d}.npz"
        if part.is_file():
            bar.update(len(rows))
            continue
        images, kept = [], []
        for r in rows:
            im = _read(paths[r], counts)
            if im is not None:
                images.append(im)
                kept.append(r)
        before = describer.nonpositive
        maps = describer.describe_images(images)
        arrays = {"rows": np.asarray(kept, dtype=np.int64),
                  "failed": np.asarray(sorted(set(rows) - set(kept)), dtype=np.int64),
                  "nonpositive": np.asarray(describer.nonpositive - before, dtype=np.int64)}
        if maps:
            feats = [m.features for m in maps]
            arrays["class_vectors"] = np.stack([class_vectors(m.features[None], m.cams[None])[0].numpy()
                                                for m in maps]).astype(np.float16)
            arrays["scores"] = np.stack([m.scores.numpy() for m in maps]).astype(np.float32)
            arrays["sum_pool"] = np.stack([sum_pooling(f[None])[0].numpy() for f in feats]).astype(np.float32)
            arrays["grid"] = np.asarray([f.shape[-2:] for f in feats], dtype=np.int64)
            arrays["input_size"] = np.asarray([m.input_size for m in maps], dtype=np.int64)
            arrays["original_size"] = np.asarray([m.original_size for m in maps], dtype=np.int64)
            if keep_maps:
                (out_dir / "maps").mkdir(exist_ok=True)
                for r, m in zip(kept, maps):
                    save_maps(out_dir / "maps" / f"{r:07d}.npz", m.features, m.cams)
        with io.atomic_path(part) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        bar.update(len(rows))
    bar.close()
    return _assemble(out_dir, paths, len(chunks), record_key, keep_maps, counts, log)


def save_maps(path: Path, features: torch.Tensor, cams: torch.Tensor) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, features=features.numpy().astype(np.float16), cams=cams.numpy().astype(np.float16))


def list_digest(items: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def _assemble(out_dir: Path, paths, n_parts: int, key: dict, keep_maps: bool, counts: Counter, log) -> dict:
    parts = [np.load(out_dir / "parts" / f"part_{i:05d}.npz") for i in range(n_parts)]
    rows = np.concatenate([p["rows"] for p in parts]) if parts else np.zeros(0, np.int64)
    failed = sorted(int(r) for p in parts for r in p["failed"])
    if rows.size == 0:
        raise DataError(f"none of the {len(paths)} images could be read ({dict(counts) or 'see above'})")
    order = np.argsort(rows, kind="stable")
    names = ("class_vectors", "scores", "sum_pool", "grid", "input_size", "original_size")
    merged = {n: np.concatenate([p[n] for p in parts if n in p.files])[order] for n in names}
    kept_rows = rows[order]
    for n, arr in merged.items():
        io.save_npy(out_dir / f"{n}.npy", arr)
    io.write_lines(out_dir / "paths.txt", [str(paths[r]) for r in kept_rows])
    io.save_npy(out_dir / "rows.npy", kept_rows)
    record = {"key": key, "n": int(kept_rows.size), "failed": [str(paths[r]) for r in failed],
              "num_outputs": int(merged["scores"].shape[1]), "channels": int(merged["sum_pool"].shape[1]),
              "keep_maps": keep_maps, "nonpositive_cams": int(sum(int(p["nonpositive"]) for p in parts)),
              "cams": int(merged["scores"].size)}
    if failed:
        log(f"skipped {len(failed)} unreadable image(s) (first: {paths[failed[0]]})")
    if record["nonpositive_cams"]:
        log(f"{record['nonpositive_cams']} of {record['cams']} CAMs have no positive value (normalised by "
            f"{key.get('cam_norm', 'paper')!r}: inverted for 'paper', empty for 'positive')")
    io.write_json(out_dir / "store.json", record)
    return record


class Store:
    """A finished collection store (read side)."""

    def __init__(self, folder: str | Path, cache_maps: int = 128):
        self.dir = Path(folder)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the last ``cache_maps`` maps read (float16)
        self._cache_size = int(cache_maps)
        if not (self.dir / "store.json").is_file():
            raise DataError(f"{self.dir}: no finished descriptor store (run 03_extract_descriptors.py)")
        self.record = io.read_json(self.dir / "store.json")
        self.paths = io.read_lines(self.dir / "paths.txt")
        self.rows = np.load(self.dir / "rows.npy")
        self.class_vectors = np.load(self.dir / "class_vectors.npy", mmap_mode="r")
        self.scores = np.load(self.dir / "scores.npy")
        self.sum_pool = np.load(self.dir / "sum_pool.npy")
        self.grid = np.load(self.dir / "grid.npy")

    def __len__(self) -> int:
        return len(self.paths)

    def maps(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, normalised CAMs of all K topics) of stored image ``i``."""
        i = int(i)
        if i not in self._cache:
            path = self.dir / "maps" / f"{int(self.rows[i]):07d}.npz"
            if not path.is_file():
                raise DataError(f"{path}: maps were not kept (03_extract_descriptors.py --keep-maps), "
                                "needed by the CAM re-ranking")
            with np.load(path) as z:
                got = (z["features"], z["cams"])
            if self._cache_size > 0:
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))  # oldest first
                self._cache[i] = got
        else:
            got = self._cache[i]
        return torch.from_numpy(got[0].astype(np.float32)), torch.from_numpy(got[1].astype(np.float32))


def grid_box(box: Sequence[float], input_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int, int, int]:
    """Image-pixel box (x1, y1, x2, y2, in the network input's pixels) -> feature-grid cells
    (x0, y0, x1, y1) with exclusive ends: ``floor(coord * cells / pixels)`` for both ends (the
    authors' ``(x - x % 16) / 16``), at least one cell, inside the grid."""
    (w_in, h_in), (gh, gw) = input_size, grid
    x0 = min(gw - 1, max(0, math.floor(box[0] * gw / w_in)))
    y0 = min(gh - 1, max(0, math.floor(box[1] * gh / h_in)))
    x1 = min(gw, max(x0 + 1, math.floor(box[2] * gw / w_in)))
    y1 = min(gh, max(y0 + 1, math.floor(box[3] * gh / h_in)))
    return x0, y0, x1, y1

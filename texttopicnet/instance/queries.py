"""Query processing as in the paper, and the stored query side of an experiment.

For each query (image + box, from the ground truth):

1. the image is resized as the database images are (``SizeRule``) and the box scaled with it;
2. the topics are predicted from the box alone: the crop of the resized image, its sides
   rounded down to a multiple of the feature stride (the authors' ``h - h % 16``; a side below
   64 px is scaled up to 64 so the network's receptive fields fit, counted as ``small_crop``);
3. the whole resized image goes through the network and its features and CAMs of all K topics
   are cropped to the box on the feature grid (:func:`~texttopicnet.instance.extraction.grid_box`);
4. class vectors of all K topics are computed on that crop (CroW weights of the crop), and the
   raw sum pooling of the cropped features (the baseline row).

Stored in ``<dir>``: ``class_vectors.npy`` (Q, K, C), ``crop_scores.npy`` (Q, K),
``sum_pool.npy`` (Q, C), ``queries.json`` (names, image ids, boxes, grid boxes, sizes), and
``store.json`` last (completion marker with the key).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..core import io
from ..core.errors import DataError
from ..data.images import ImageReadError, load_rgb
from .descriptors import class_vectors, sum_pooling
from .extraction import MIN_CROP, Describer, grid_box
from .protocols import Query


def _crop_input(resized: Image.Image, box: tuple[float, float, float, float], stride: int,
                counts: Counter) -> np.ndarray:
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(resized.width, math.floor(box[2])), min(resized.height, math.floor(box[3]))
    crop = resized.crop((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
    w = max(stride, crop.width - crop.width % stride)
    h = max(stride, crop.height - crop.height % stride)
    if min(w, h) < MIN_CROP:
        counts["small_crop"] += 1
        scale = MIN_CROP / min(w, h)
        w, h = math.ceil(w * scale), math.ceil(h * scale)
    return np.asarray(crop.resize((w, h), Image.BILINEAR), dtype=np.uint8)


def describe_query(describer: Describer, image: Image.Image, bbox, counts: Counter) -> dict:
    """Everything the search needs about one query (see the module docstring)."""
    size = describer.sizes(*image.size)
    sx, sy = size[0] / image.width, size[1] / image.height
    box = (max(0.0, bbox[0] * sx), max(0.0, bbox[1] * sy), min(size[0], bbox[2] * sx), min(size[1], bbox[3] * sy))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise DataError(f"query box {tuple(bbox)} lies outside its {image.size} image")
    resized = image.resize(size, Image.BILINEAR)
    (feats, cams, _), = describer.run_arrays([np.asarray(resized, dtype=np.uint8)])
    grid = tuple(int(v) for v in feats.shape[-2:])
    stride = max(1, round(size[0] / grid[1]))
    (_, _, crop_scores), = describer.run_arrays([_crop_input(resized, box, stride, counts)])
    gx0, gy0, gx1, gy1 = grid_box(box, size, grid)
    f, c = feats[:, gy0:gy1, gx0:gx1], cams[:, gy0:gy1, gx0:gx1]
    return {"class_vectors": class_vectors(f[None], c[None])[0].numpy(), "crop_scores": crop_scores.numpy(),
            "sum_pool": sum_pooling(f[None])[0].numpy(), "grid_box": [gx0, gy0, gx1, gy1], "grid": list(grid),
            "input_size": list(size), "box_in_input": list(box)}


def extract_queries(describer: Describer, queries: list[Query], out_dir: str | Path, key: dict, log=print) -> dict:
    """Describe every query into ``out_dir`` (reused when ``store.json`` holds the same key)."""
    out_dir = Path(out_dir)
    marker = out_dir / "store.json"
    record_key = {**key, "queries": [[q.name, q.image_id, list(q.bbox)] for q in queries]}
    if marker.is_file() and io.read_json(marker).get("key") == record_key:
        return io.read_json(marker)
    counts: Counter = Counter()
    done, info = [], []
    for q in tqdm(queries, desc="describing queries", unit="query"):
        try:
            image = load_rgb(q.image_path)
        except ImageReadError as exc:
            counts[exc.reason] += 1
            log(f"query {q.name}: {exc}")
            continue
        d = describe_query(describer, image, q.bbox, counts)
        done.append(d)
        info.append({"name": q.name, "image_id": q.image_id, "bbox": list(q.bbox),
                     **{k: d[k] for k in ("grid_box", "grid", "input_size", "box_in_input")}})
    if not done:
        raise DataError(f"none of the {len(queries)} query images could be read")
    for name in ("class_vectors", "crop_scores", "sum_pool"):
        io.save_npy(out_dir / f"{name}.npy", np.stack([d[name] for d in done]).astype(np.float32))
    io.write_json(out_dir / "queries.json", info)
    if counts:
        log("queries: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    record = {"key": record_key, "n": len(done), "counts": dict(counts)}
    io.write_json(marker, record)
    return record


class QueryStore:
    def __init__(self, folder: str | Path):
        self.dir = Path(folder)
        if not (self.dir / "store.json").is_file():
            raise DataError(f"{self.dir}: no finished query store (run 03_extract_descriptors.py)")
        self.info = io.read_json(self.dir / "queries.json")
        self.class_vectors = np.load(self.dir / "class_vectors.npy")
        self.crop_scores = np.load(self.dir / "crop_scores.npy")
        self.sum_pool = np.load(self.dir / "sum_pool.npy")

    def __len__(self) -> int:
        return len(self.info)

    @property
    def names(self) -> list[str]:
        return [q["name"] for q in self.info]

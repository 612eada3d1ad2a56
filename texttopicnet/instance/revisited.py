"""The revisited Oxford/Paris ground truth (Radenovic et al., CVPR 2018): ``gnd_r{oxford5k,paris6k}.pkl``.

The file is a pickle of ``{"imlist", "qimlist", "gnd"}`` (revisitop's ``configdataset``); it is
read with an unpickler that only builds plain containers, numbers, strings and numpy arrays,
so a hostile file cannot run code. :func:`load_revisited` makes an
:class:`~texttopicnet.instance.protocols.InstanceDataset` whose database is ``imlist`` (the
query images are not in it) and whose queries carry ``good`` = easy, ``hard``, ``junk``;
:meth:`InstanceDataset.evaluate` then reports Easy / Medium / Hard mAP and mP@k.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.paths import inside
from .protocols import MISSING, InstanceDataset, Query, _resolve, image_index

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}


class _GndUnpickler(pickle.Unpickler):
    """Only plain containers, numbers, strings and numpy arrays: a ``.pkl`` cannot run code."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a ground-truth file holds only lists and arrays")


def read_gnd(path: str | os.PathLike) -> dict:
    """``gnd_r{oxford5k,paris6k}.pkl`` as ``{"imlist", "qimlist", "gnd"}`` with plain Python lists."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            cfg = _GndUnpickler(io.BytesIO(fh.read())).load()
    except FileNotFoundError:
        raise DataError(f"{path}: revisited ground-truth file not found (python data/download.py roxford5k_gnd)") \
            from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DataError(f"{path}: not a revisited ground-truth pickle ({exc})") from None
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("imlist", "qimlist", "gnd")):
        raise DataError(f"{path}: expected a dict with imlist, qimlist and gnd")
    imlist, qimlist = [str(x) for x in cfg["imlist"]], [str(x) for x in cfg["qimlist"]]
    if len(cfg["gnd"]) != len(qimlist):
        raise DataError(f"{path}: {len(cfg['gnd'])} gnd entries for {len(qimlist)} queries")
    gnd = []
    for i, g in enumerate(cfg["gnd"]):
        try:
            entry = {k: [int(v) for v in np.asarray(g.get(k, []), dtype=np.int64).ravel()]
                     for k in ("easy", "hard", "junk")}
            bbx = [float(v) for v in np.asarray(g["bbx"], dtype=np.float64).ravel()]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(f"{path}: query {i} has no usable bbx/easy/hard/junk") from None
        bad = [v for k in ("easy", "hard", "junk") for v in entry[k] if not 0 <= v < len(imlist)]
        if len(bbx) != 4 or bad:
            raise DataError(f"{path}: query {i}: bbx must have 4 numbers and indices lie in 0..{len(imlist) - 1}")
        entry["bbx"] = bbx
        gnd.append(entry)
    return {"imlist": imlist, "qimlist": qimlist, "gnd": gnd}


def load_revisited(gnd_path: str | os.PathLike, images_dir: str | os.PathLike,
                   name: str | None = None) -> InstanceDataset:
    """ROxford5k / RParis6k: the database is ``imlist`` (queries are not in it), ids resolved in ``images_dir``."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found")
    cfg = read_gnd(gnd_path)
    counts: Counter = Counter()
    index = image_index(images_dir, counts)
    paths = {}
    for image_id in dict.fromkeys(cfg["imlist"] + cfg["qimlist"]):
        p = _resolve(images_dir, image_id, index, counts)
        if p is None:
            if inside(images_dir, image_id + ".jpg") is not None:
                counts[MISSING] += 1
            continue
        paths[image_id] = p
    ids = [i for i in cfg["imlist"] if i in paths]
    queries = []
    for qi, (qid, g) in enumerate(zip(cfg["qimlist"], cfg["gnd"])):
        if qid not in paths:
            continue
        picked = {key: tuple(cfg["imlist"][v] for v in g[key] if cfg["imlist"][v] in paths)
                  for key in ("easy", "hard", "junk")}
        queries.append(Query(f"q{qi:03d}_{qid}", qid, tuple(g["bbx"]), good=picked["easy"], hard=picked["hard"],
                             junk=picked["junk"], image_path=paths[qid]))
    if not queries:
        raise DataError(f"{gnd_path}: no query image found under {images_dir}")
    return InstanceDataset(name or Path(gnd_path).stem.replace("gnd_", ""), images_dir, ids,
                           {i: paths[i] for i in ids} | {q.image_id: paths[q.image_id] for q in queries},
                           queries, "revisited", counts)

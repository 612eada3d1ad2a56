"""Oxford5k / Paris6k (and their revisited versions): ground-truth readers and the official metrics.

Classic protocol (Philbin et al. 2007/2008, ``compute_ap.cpp`` of the benchmark)
    A ground-truth folder holds, per query ``<landmark>_<n>``, four files:
    ``<landmark>_<n>_query.txt`` (one line: ``<image id> x1 y1 x2 y2``; Oxford writes the id
    with an ``oxc1_`` prefix its image files do not carry), and ``_good.txt``, ``_ok.txt``,
    ``_junk.txt`` (one image id per line). Positives are good + ok, junk images are skipped
    as if absent from the ranking, and AP is the trapezoidal area under the precision/recall
    curve starting from precision 1 (:func:`oxford_average_precision`).

Revisited protocol (Radenovic et al., CVPR 2018, ``revisitop``)
    ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` hold ``imlist`` (database ids), ``qimlist``
    (query ids, not in the database) and ``gnd``: per query ``bbx`` (x1, y1, x2, y2) and
    ``easy``, ``hard``, ``junk`` (0-based indices into ``imlist``). Easy: positives = easy,
    junk = junk + hard; Medium: positives = easy + hard, junk = junk; Hard: positives = hard,
    junk = junk + easy. Reported: mAP and mP@k (k = 1, 5, 10) per setup; a query with no
    positive in a setup is left out of that setup's means (:func:`revisited_metrics`).

Every path taken from these files stays inside the dataset root
(:func:`texttopicnet.core.paths.inside`); refusals are counted under ``outside_collection``,
ids with no image under ``missing_image``, unparsable lines under ``malformed_line``.

Use::

    ds = load_oxford_layout("data/Oxford5k")                 # jpg/ + gt/
    ap = oxford_average_precision(ranked_ids, q.positives, q.junk)
    ds = load_revisited("data/ROxford5k/gnd_roxford5k.pkl", "data/Oxford5k/jpg")   # revisited.py
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from ..core.paths import OUTSIDE, inside, is_inside

MISSING = "missing_image"
MALFORMED = "malformed_line"
GT_FILE = re.compile(r"^(?P<name>.+)_(?P<n>\d+)_(?P<kind>good|ok|junk|query)\.txt$")
OXFORD_QUERY_PREFIX = "oxc1_"  # Oxford's query files name images "oxc1_<id>"; the files are "<id>.jpg"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REVISITED_KS = (1, 5, 10)  # revisitop's example_evaluate reports mP@1, 5, 10
SETUPS = ("easy", "medium", "hard")


# ------------------------------------------------------------------------------------- metrics

def oxford_average_precision(ranked_ids: Sequence, positive_ids: Iterable, junk_ids: Iterable = ()) -> float:
    """Average precision exactly as the Oxford/Paris ``compute_ap`` defines it.

    Walk ``ranked_ids`` in order; an id in ``junk_ids`` is skipped (it does not take a rank);
    every other id takes the next rank ``j`` (0-based) and the area of the trapezoid between the
    previous point (recall, precision) and this one is added, the first "previous" point being
    (recall 0, precision 1). Recall is over ``len(set(positive_ids))`` (positives never ranked
    simply add nothing), precision is ``hits / (j + 1)``. An id both positive and junk counts as
    junk (junk is tested first, as in the official code). Ids are compared with ``==``.

    Raises ``ValueError`` when there is no positive id (the definition divides by their number)
    or when ``ranked_ids`` repeats an id (a ranking is a list of distinct images).
    """
    positives = set(positive_ids)
    junk = set(junk_ids)
    if not positives:
        raise ValueError("no positive ids: average precision is undefined")
    ranked = list(ranked_ids)
    if len(set(ranked)) != len(ranked):
        raise ValueError("ranked_ids repeats an id")
    n_pos = float(len(positives))
    ap, old_recall, old_precision = 0.0, 0.0, 1.0
    hits, j = 0, 0
    for item in ranked:
        if item in junk:
            continue
        if item in positives:
            hits += 1
        recall = hits / n_pos
        precision = hits / (j + 1.0)
        ap += (recall - old_recall) * (old_precision + precision) / 2.0
        old_recall, old_precision = recall, precision
        j += 1
    return ap


def _adjusted_positive_ranks(ranked: np.ndarray, positives: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """0-based ranks of the positives once the junk ranked before them is removed (revisitop's ``pos``)."""
    is_pos = np.isin(ranked, positives)
    is_junk = np.isin(ranked, junk) & ~is_pos  # revisitop finds positives and junk separately; sets are disjoint
    junk_before = np.cumsum(is_junk) - is_junk
    return (np.flatnonzero(is_pos) - junk_before[is_pos]).astype(np.int64)


def revisited_ap_and_precision(ranked: Sequence[int], positives: Sequence[int], junk: Sequence[int],
                               ks: Sequence[int] = REVISITED_KS) -> tuple[float, np.ndarray]:
    """(AP, precision at each k) of one ranking under revisitop's ``compute_map`` definitions.

    AP: trapezoids with precision_0 = j / r (1 at r = 0), precision_1 = (j + 1) / (r + 1) for the
    j-th positive at junk-adjusted rank r, each over 1 / ``len(positives)``. P@k: with ``pos`` the
    1-based adjusted ranks and ``kq = min(max(pos), k)``, ``#(pos <= kq) / kq`` (revisitop's rule:
    when every positive is found before rank k the precision is taken at the last one).
    """
    positives = np.asarray(list(positives))
    if positives.size == 0:
        raise ValueError("no positive ids: average precision is undefined")
    pos = _adjusted_positive_ranks(np.asarray(list(ranked)), positives, np.asarray(list(junk)))
    j = np.arange(pos.size, dtype=np.float64)
    r = pos.astype(np.float64)
    p0 = np.where(r == 0, 1.0, j / np.maximum(r, 1.0))
    p1 = (j + 1.0) / (r + 1.0)
    ap = float(((p0 + p1) / 2.0).sum() / positives.size)
    prec = np.zeros(len(ks))
    if pos.size:
        pos1 = pos + 1
        for i, k in enumerate(ks):
            kq = min(int(pos1.max()), int(k))
            prec[i] = (pos1 <= kq).sum() / kq
    return ap, prec


def revisited_metrics(rankings: Sequence[Sequence[int]], gnd: Sequence[dict],
                      ks: Sequence[int] = REVISITED_KS) -> dict:
    """Easy / Medium / Hard mAP and mP@k of ``rankings`` (one array of database indices per query).

    ``gnd[i]`` has ``easy``, ``hard``, ``junk`` index lists (revisitop's structure). Returns
    ``{"easy": {"map", "mp@k": {k: value}, "aps": [...], "n": queries used}, "medium": ..., "hard": ...}``;
    values in 0..1 (revisitop prints them x100).
    """
    if len(rankings) != len(gnd):
        raise ValueError(f"{len(rankings)} rankings for {len(gnd)} queries")
    out = {}
    for setup in SETUPS:
        aps, precs = [], []
        for ranked, g in zip(rankings, gnd):
            easy, hard, junk = (list(g.get(k, ())) for k in ("easy", "hard", "junk"))
            pos, jk = {"easy": (easy, junk + hard), "medium": (easy + hard, junk),
                       "hard": (hard, junk + easy)}[setup]
            if not pos:
                aps.append(math.nan)
                continue
            ap, pr = revisited_ap_and_precision(ranked, pos, jk, ks)
            aps.append(ap)
            precs.append(pr)
        used = [a for a in aps if not math.isnan(a)]
        mp = np.mean(precs, axis=0) if precs else np.full(len(ks), math.nan)
        out[setup] = {"map": float(np.mean(used)) if used else math.nan,
                      "mp@k": {int(k): float(v) for k, v in zip(ks, mp)}, "aps": aps, "n": len(used)}
    return out


# ------------------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class Query:
    name: str                                   # "all_souls_1" (revisited: "q<index>")
    image_id: str                               # database id of the query image
    bbox: tuple[float, float, float, float]     # x1, y1, x2, y2 in the original image's pixels
    good: tuple[str, ...] = ()
    ok: tuple[str, ...] = ()
    junk: tuple[str, ...] = ()
    hard: tuple[str, ...] = ()                  # revisited only (easy is ``good``)
    image_path: Path | None = None

    @property
    def positives(self) -> tuple[str, ...]:
        return self.good + self.ok


@dataclass
class InstanceDataset:
    """A retrieval benchmark: database ids and their files, queries, and what was refused."""

    name: str
    root: Path
    image_ids: list[str]
    image_paths: dict[str, Path]
    queries: list[Query]
    protocol: str = "oxford"                    # "oxford" (good/ok/junk) or "revisited" (easy/medium/hard)
    counts: Counter = field(default_factory=Counter)

    def evaluate(self, rankings: dict[str, Sequence[str]]) -> dict:
        """Metrics of ``rankings`` (query name -> ranked database ids): classic mAP, or E/M/H for revisited."""
        missing = [q.name for q in self.queries if q.name not in rankings]
        if missing:
            raise ValueError(f"no ranking for {len(missing)} queries (first: {missing[0]})")
        if self.protocol == "revisited":
            index = {i: n for n, i in enumerate(self.image_ids)}
            # Ids outside the database (distractors) are negatives: they get indices past it.
            ranks = [[index.get(i, len(index) + j) for j, i in enumerate(rankings[q.name])] for q in self.queries]
            gnd = [{"easy": [index[i] for i in q.good if i in index], "hard": [index[i] for i in q.hard if i in index],
                    "junk": [index[i] for i in q.junk if i in index]} for q in self.queries]
            res = revisited_metrics(ranks, gnd)
            return {s: {"map": r["map"], "mp@k": r["mp@k"], "n": r["n"]} for s, r in res.items()}
        aps = {q.name: oxford_average_precision(rankings[q.name], q.positives, q.junk) for q in self.queries}
        return {"map": float(np.mean(list(aps.values()))) if aps else math.nan, "aps": aps}


def image_index(images_dir: Path, counts: Counter) -> dict[str, Path]:
    """Stem -> path of every image under ``images_dir`` (Paris keeps them in sub-folders).

    Files (or symlinks) that resolve outside ``images_dir`` are refused and counted.
    """
    index: dict[str, Path] = {}
    for dirpath, _dirs, files in os.walk(images_dir, followlinks=False):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            if not is_inside(images_dir, path):
                counts[OUTSIDE] += 1
                continue
            index.setdefault(stem, path)
    return index


def _resolve(images_dir: Path, image_id: str, index: dict[str, Path], counts: Counter) -> Path | None:
    """The file of ``image_id``: ``<images_dir>/<id>.jpg`` when it stays inside, else the index."""
    direct = inside(images_dir, image_id + ".jpg")
    if direct is None:
        counts[OUTSIDE] += 1
        return None
    if direct.is_file():
        return direct
    return index.get(image_id)


def _read_ids(path: Path, counts: Counter) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_text(encoding="utf-8", errors="replace")
        counts["non_utf8_file"] += 1
    ids = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1 or "\x00" in parts[0]:
            counts[MALFORMED] += 1
            continue
        ids.append(parts[0])
    return ids


def _parse_query_line(path: Path, counts: Counter) -> tuple[str, tuple[float, float, float, float]] | None:
    try:
        line = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0]
    except (IndexError, OSError):
        counts[MALFORMED] += 1
        return None
    parts = line.split()
    try:
        box = tuple(float(v) for v in parts[1:5])
    except ValueError:
        box = ()
    if len(parts) != 5 or len(box) != 4 or not all(math.isfinite(v) for v in box) \
            or box[2] <= box[0] or box[3] <= box[1]:
        counts[MALFORMED] += 1
        return None
    image_id = parts[0]
    image_id = image_id.removeprefix(OXFORD_QUERY_PREFIX)
    return image_id, box  # type: ignore[return-value]


def read_ground_truth(gt_dir: str | os.PathLike, counts: Counter | None = None) -> dict[str, dict]:
    """Parse every ``<name>_<n>_{good,ok,junk,query}.txt`` of ``gt_dir``.

    Returns ``{query name: {"image_id", "bbox", "good", "ok", "junk"}}`` for the queries whose
    query file parsed (a query without good/ok/junk files gets empty lists). Problems are
    counted in ``counts`` (``malformed_line``, ``incomplete_query``).
    """
    counts = counts if counts is not None else Counter()
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise DataError(f"{gt_dir}: ground-truth folder not found (expected <name>_<n>_query.txt files)")
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted(gt_dir.iterdir()):
        m = GT_FILE.match(path.name)
        if m and path.is_file() and is_inside(gt_dir, path):
            groups.setdefault(f"{m['name']}_{m['n']}", {})[m["kind"]] = path
    out = {}
    for name, files in sorted(groups.items()):
        if "query" not in files:
            counts["incomplete_query"] += 1
            continue
        parsed = _parse_query_line(files["query"], counts)
        if parsed is None:
            continue
        entry = {"image_id": parsed[0], "bbox": parsed[1]}
        for kind in ("good", "ok", "junk"):
            entry[kind] = _read_ids(files[kind], counts) if kind in files else []
        out[name] = entry
    if not out:
        raise DataError(f"{gt_dir}: no usable <name>_<n>_query.txt file")
    return out


def load_oxford_layout(root: str | os.PathLike, images: str = "jpg", gt: str = "gt",
                       name: str | None = None) -> InstanceDataset:
    """An Oxford/Paris folder: ``<root>/<images>/`` (any depth) and ``<root>/<gt>/``.

    The database is every image found under ``images`` (Oxford5k: 5063; Paris6k: 6392 once its
    20 corrupt files are skipped at extraction). Ground-truth ids without an image are dropped
    from the lists and counted under ``missing_image``; a query whose own image is missing is
    dropped.
    """
    root = Path(root)
    images_dir = inside(root, images)
    gt_dir = inside(root, gt)
    if images_dir is None or gt_dir is None:
        raise DataError(f"{root}: the image and ground-truth folders must be inside the dataset folder")
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found (see data/README.md for the Oxford/Paris layout)")
    counts: Counter = Counter()
    index = image_index(images_dir, counts)
    gt_entries = read_ground_truth(gt_dir, counts)
    paths: dict[str, Path] = dict(index)
    queries = []
    for qname, e in gt_entries.items():
        lists = {}
        for kind in ("good", "ok", "junk"):
            kept = []
            for image_id in e[kind]:
                p = _resolve(images_dir, image_id, index, counts)
                if p is None:
                    if inside(images_dir, image_id + ".jpg") is not None:
                        counts[MISSING] += 1
                    continue
                paths.setdefault(image_id, p)
                kept.append(image_id)
            lists[kind] = tuple(kept)
        qpath = _resolve(images_dir, e["image_id"], index, counts)
        if qpath is None:
            counts[MISSING] += 1
            continue
        queries.append(Query(qname, e["image_id"], e["bbox"], lists["good"], lists["ok"], lists["junk"],
                             image_path=qpath))
    if not queries:
        raise DataError(f"{root}: no query has its image under {images_dir}")
    ids = sorted(index)
    return InstanceDataset(name or root.name, root, ids, {i: paths[i] for i in ids}, queries, "oxford", counts)


def with_distractors(ds: InstanceDataset, distractor_dir: str | os.PathLike) -> InstanceDataset:
    """Oxford105k / Paris106k: the dataset plus every image under ``distractor_dir`` (never relevant).

    Distractor ids colliding with a dataset id are renamed ``distractor/<relative path>``.
    """
    distractor_dir = Path(distractor_dir)
    if not distractor_dir.is_dir():
        raise DataError(f"{distractor_dir}: distractor folder not found (the Flickr 100k images, data/README.md)")
    counts = Counter(ds.counts)
    index = image_index(distractor_dir, counts)
    ids, paths = list(ds.image_ids), dict(ds.image_paths)
    for stem, p in index.items():
        key = stem if stem not in paths else "distractor/" + p.relative_to(distractor_dir).as_posix()
        ids.append(key)
        paths[key] = p
    counts["distractors"] += len(index)
    return InstanceDataset(ds.name + f"+{len(index)}", ds.root, ids, paths, ds.queries, ds.protocol, counts)

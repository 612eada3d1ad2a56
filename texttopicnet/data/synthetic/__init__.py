"""The embedded demo corpus: a small multimodal corpus in the three real dataset layouts.

``generate(out_dir, seed=0, scale=1.0)`` writes ``out_dir/ImageCLEF_Wikipedia/``,
``out_dir/VOC2007/VOCdevkit/VOC2007/``, ``out_dir/Wikipedia/`` and ``out_dir/Captions/`` (a
captioned-image corpus in the manifest format; readable by :mod:`texttopicnet.data.readers`) plus ``out_dir/synthetic.json`` (seed, scale, counts,
edge-case paths, a digest of every file) and returns that summary. The same seed and
scale give byte-identical files, whatever the number of worker processes.

Generative process (details in data/README.md): ten subjects, each with a vocabulary
and a visual motif (shape, texture and layout; never a colour: every colour is drawn
afresh per picture); a document mixes one or two subjects; its text draws words from
their vocabularies and its images draw their motifs in proportion to the weights.
Command line: ``python data/make_synthetic.py --out data/demo``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np

from ...core.errors import UserError
from ...core.io import write_json
from .layout_imageclef import plan_imageclef
from .layout_manifest import plan_manifest
from .layout_voc import plan_voc
from .layout_wikipedia import plan_wikipedia
from .plan import ImageJob, Plan
from .motifs import MOTIFS
from .render import encode
from .vocab import SUBJECTS

__all__ = ["generate", "build_plan", "SUBJECTS", "FOLDERS", "SUMMARY_NAME", "VERSION"]

VERSION = 3  # 2: subjects drawn as motifs (shape, texture, layout) in random colours; 3: + Captions/
FOLDERS = ("ImageCLEF_Wikipedia", "VOC2007", "Wikipedia", "Captions")
SUMMARY_NAME = "synthetic.json"
# Below this many images a process pool costs more than it saves.
_POOL_MIN_IMAGES = 64


def build_plan(seed: int, scale: float) -> Plan:
    """Everything to write, decided from ``seed`` alone (one independent stream per dataset)."""
    plan = Plan()
    plan_imageclef(plan, np.random.default_rng([seed, 1]), scale)
    plan_voc(plan, np.random.default_rng([seed, 2]), scale)
    plan_wikipedia(plan, np.random.default_rng([seed, 3]), scale, seed)
    plan_manifest(plan, np.random.default_rng([seed, 4]), scale)
    return plan


def _render(job: ImageJob) -> bytes:
    data = encode(job.spec)
    if job.damage == "truncate":
        return data[: int(len(data) * 0.55)]
    if job.damage == "garbage":
        noise = np.random.default_rng(job.spec.seed).integers(0, 256, size=4096, dtype=np.uint8)
        return b"\xff\xd8\xff\xe0" + noise.tobytes()
    return data


def _render_all(jobs: list[ImageJob], workers: int, progress: bool):
    if workers <= 1 or len(jobs) < _POOL_MIN_IMAGES:
        yield from map(_render, jobs)
        return
    # 'spawn' keeps workers independent of whatever the caller imported (torch threads, ...).
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_render, jobs, chunksize=8)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _check_target(out_dir: Path) -> None:
    """Refuse to replace dataset folders that this generator did not write (real data, say)."""
    ours = (out_dir / SUMMARY_NAME).is_file()
    for name in FOLDERS:
        if (out_dir / name).exists() and not ours:
            raise UserError(f"{out_dir / name} already exists and {out_dir / SUMMARY_NAME} does not: it is not a "
                            f"demo corpus written by this generator, so it is left alone; choose another --out")


def generate(out_dir: str | os.PathLike, seed: int = 0, scale: float = 1.0, workers: int | None = None,
             progress: bool = False) -> dict:
    """Write the demo corpus under ``out_dir`` and return its summary (also in ``synthetic.json``).

    ``scale`` multiplies every count (0.25 still holds every edge case, every class
    and category in every split). Files are first written to a hidden folder in
    ``out_dir`` and moved into place at the end, so an interrupted run leaves the
    previous corpus (or nothing) behind, never a half-written one.
    """
    if not (isinstance(scale, (int, float)) and 0 < scale <= 40):
        raise UserError(f"scale must be in (0, 40], got {scale!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_target(out_dir)
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    plan = build_plan(seed, scale)
    tmp = out_dir / f".synthetic-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    digests: dict[str, str] = {}
    try:
        for rel, data in plan.files.items():
            _write(tmp / rel, data)
            digests[rel] = hashlib.sha256(data).hexdigest()
        jobs = _render_all(plan.images, workers, progress)
        if progress:
            from tqdm import tqdm
            jobs = tqdm(jobs, total=len(plan.images), desc="rendering demo images", unit="img")
        for job, data in zip(plan.images, jobs):
            _write(tmp / job.relpath, data)
            digests[job.relpath] = hashlib.sha256(data).hexdigest()
        # Swap the finished folders in; the summary goes last and marks the corpus as complete.
        (out_dir / SUMMARY_NAME).unlink(missing_ok=True)
        for name in FOLDERS:
            if (out_dir / name).exists():
                shutil.rmtree(out_dir / name)
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tree = hashlib.sha256("".join(f"{k}\t{digests[k]}\n" for k in sorted(digests)).encode()).hexdigest()
    summary = {
        "generator": "texttopicnet.synthetic", "version": VERSION, "seed": seed, "scale": scale,
        "subjects": list(SUBJECTS),
        "motifs": {s: {"name": m.name, "shape": m.shape, "texture": m.texture, "layout": m.layout}
                   for s, m in MOTIFS.items()},
        "files": len(digests), "images": len(plan.images), "tree_sha256": tree,
        **plan.summary,
    }
    summary = json.loads(json.dumps(summary))  # tuples -> lists, as a reader of the file sees it
    write_json(out_dir / SUMMARY_NAME, summary)
    return summary

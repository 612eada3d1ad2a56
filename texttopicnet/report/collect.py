"""Gather a run's results from the files its stages wrote (nothing is recomputed here).

Every number in the report comes from these files: ``train/summary.json`` and
``train/log.jsonl``, ``lda/topics.json``, ``voc_svm/<tag>/results_<layer>.json``,
``retrieval/<tag>/results.json`` and ``examples.json``, ``pipeline.json`` (stage
timings) and each stage's ``meta.json`` (provenance).

From a VOC SVM result the report shows ``map``/``ap`` (official VOC2007 11-point AP),
``release_map``/``release_ap`` (the AP the original release printed), ``protocol`` and
``chosen_C``; results written before these keys existed show '-' in those cells.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.provenance import META_NAME

# Numbers the paper reports for its 40-topic CaffeNet (shown beside a --dataset paper run).
# Filled from texttopicnet/report/paper_numbers.json when present; see that file for sources.
PAPER_NUMBERS_FILE = Path(__file__).with_name("paper_numbers.json")


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_log(path: Path) -> list[dict]:
    rows = []
    if not path.is_file():
        return rows
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill: the rest of the log is still good
    return rows


def paper_numbers() -> dict | None:
    return _read_json(PAPER_NUMBERS_FILE)


def collect(run_dir: Path, tags: list[str], layers: list[str]) -> dict:
    """Everything the report shows, as plain data."""
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"run_dir": str(run_dir), "tags": tags, "layers": layers}
    out["train_summary"] = _read_json(run_dir / "train" / "summary.json")
    out["train_log"] = read_log(run_dir / "train" / "log.jsonl")
    out["topics"] = _read_json(run_dir / "lda" / "topics.json")
    out["lda_quality"] = _read_json(run_dir / "lda" / "quality.json")
    out["filter_counts"] = _read_json(run_dir / "pairs" / "filter_counts.json")
    svm: dict[str, dict[str, Any]] = {}
    for tag in tags:
        for layer in layers:
            res = _read_json(run_dir / "voc_svm" / tag / f"results_{layer}.json")
            if res is not None:
                svm.setdefault(tag, {})[layer] = res
    out["svm"] = svm
    out["retrieval"] = {t: r for t in tags if (r := _read_json(run_dir / "retrieval" / t / "results.json"))}
    out["retrieval_examples"] = {t: r for t in tags
                                 if (r := _read_json(run_dir / "retrieval" / t / "examples.json"))}
    out["pipeline"] = _read_json(run_dir / "pipeline.json") or {}
    metas = {}
    for meta in sorted(run_dir.rglob(META_NAME)):
        rel = meta.parent.relative_to(run_dir).as_posix()
        if rel.startswith("report") or rel.startswith("data"):
            continue
        m = _read_json(meta)
        if m:
            metas[rel] = {k: m.get(k) for k in ("stage", "finished", "git_commit", "versions", "args")}
    out["metas"] = metas
    out["paper"] = paper_numbers()
    return out

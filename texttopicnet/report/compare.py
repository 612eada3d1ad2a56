"""Side by side: several finished run folders' configurations and results in one table.

``python run_pipeline.py --compare runs/demo runs/w2v`` writes ``runs/demo/report/compare.md``
(and ``compare.html``): one column per run, rows for the configuration (corpus, text space,
targets, network, loss, seed, from ``RUN/pipeline.json``) and for every result the runs have
(VOC SVM mAP per layer for the trained and random networks, cross-modal retrieval mAP in both
directions, final training loss, stage seconds). Nothing is recomputed: every cell is read
from a file a stage wrote; a missing result is '-'.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UserError
from ..core.io import write_text
from .render import to_html, to_markdown

CONFIG_ROWS = ("corpus", "space", "target", "arch", "loss", "weights", "seed")


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_results(run: Path) -> dict[str, str]:
    """One run's rows: label -> formatted cell."""
    rows: dict[str, str] = {}
    pipe = _read(run / "pipeline.json") or {}
    conf = pipe.get("configuration") or {}
    for k in CONFIG_ROWS:
        rows[k] = str(conf.get(k, "-"))
    for res_path in sorted(run.glob("voc_svm/*/results_*.json")):
        res = _read(res_path)
        if res and res.get("map") is not None:
            rows[f"VOC SVM mAP (%), {res_path.parent.name}, {res_path.stem[len('results_'):]}"] = \
                f"{100 * res['map']:.2f}"
    for res_path in sorted(run.glob("retrieval/*/results.json")):
        res = _read(res_path) or {}
        tag = res_path.parent.name
        for key, label in (("img2txt_map", "image -> texts"), ("txt2img_map", "text -> images")):
            if res.get(key) is not None:
                rows[f"retrieval mAP, {label}, {tag} ({res.get('score', '?')})"] = f"{res[key]:.3f}"
    summary = _read(run / "train" / "summary.json") or {}
    if summary.get("final_loss") is not None:
        rows["final training loss"] = f"{summary['final_loss']:.4f}"
    for stage, st in (pipe.get("stages") or {}).items():
        if st.get("seconds") is not None:
            rows[f"seconds: {stage}"] = f"{st['seconds']:.1f}"
    return rows


def compare_runs(runs: list[Path], out: Path | None = None) -> Path:
    """Write the comparison (markdown + HTML) to ``out`` (default: the first run's report folder)."""
    runs = [Path(r) for r in runs]
    missing = [str(r) for r in runs if not (r / "pipeline.json").is_file()]
    if missing:
        raise UserError(f"not a pipeline run folder (no pipeline.json): {', '.join(missing)}")
    per_run = [run_results(r) for r in runs]
    labels: list[str] = []
    for rows in per_run:  # first appearance order: configuration first, then results
        labels += [k for k in rows if k not in labels]
    table = ("table", ["", *[r.name for r in runs]], [[k, *[rows.get(k, "-") for rows in per_run]] for k in labels])
    blocks = [("h", 1, "TextTopicNet runs side by side"),
              ("p", "Runs: " + ", ".join(f"`{r}`" for r in runs) + ". Every cell comes from the run's own result "
                    "files; '-' = that run has no such result."), table]
    out = Path(out) if out else runs[0] / "report"
    write_text(out / "compare.md", to_markdown(blocks, out))
    write_text(out / "compare.html", to_html(blocks, "TextTopicNet runs side by side"))
    return out / "compare.md"

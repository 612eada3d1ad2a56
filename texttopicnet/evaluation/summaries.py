"""Side-by-side summaries of every network tag an experiment has results for.

Each experiment writes ``RUN/<experiment>/<tag>/results*.json``; these helpers read
them all back (skipping unreadable or incomplete files) and write one markdown table,
``RUN/<experiment>/summary.md``, comparing the tags (e.g. trained vs random).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..core import io


def read_results(folder: Path, pattern: str, required: Iterable[str] = ()) -> list[dict]:
    """Every ``folder/<pattern>`` JSON that parses and has the ``required`` keys, in path order."""
    required = tuple(required)
    out = []
    for f in sorted(Path(folder).glob(pattern)):
        try:
            r = io.read_json(f)
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and all(k in r for k in required):
            out.append(r)
    return out


def write_summary_table(path: Path, title: str, header: Sequence[str], rows: Iterable[Sequence[str]],
                        align_right_from: int = 1) -> Path:
    """Write a markdown table (first ``align_right_from`` columns left-aligned, the rest right)."""
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |",
             "|" + "".join("---|" if i < align_right_from else "---:|" for i in range(len(header)))]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    io.write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def summarise(folder: Path, pattern: str, required: Sequence[str], title: str, header: Sequence[str],
              row: Callable[[dict], Sequence[str]], align_right_from: int = 1) -> Path:
    """``read_results`` then one table row per result: ``folder/summary.md``."""
    results = read_results(folder, pattern, required)
    return write_summary_table(Path(folder) / "summary.md", title, header, [row(r) for r in results],
                               align_right_from)

"""Render a report (a list of blocks) to Markdown and to one self-contained HTML page.

Blocks are tuples: ``("h", level, text)``, ``("p", text)``, ``("table", header, rows)``,
``("img", path, caption)``, ``("code", text)``. The HTML page embeds figures as base64 so
it can be mailed or attached as a single file.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

Block = tuple


def fmt(value, digits: int = 2, pct: bool = False) -> str:
    """Numbers for tables: '-' for missing, percentages with ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:  # NaN
        return "-"
    return f"{100 * v:.{digits}f}" if pct else f"{v:.{digits}f}"


def to_markdown(blocks: list[Block], base: Path) -> str:
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "table":
            header, rows = b[1], b[2]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
        elif kind == "img":
            rel = os.path.relpath(b[1], base)
            out.append(f"![{b[2]}]({Path(rel).as_posix()})")
            out.append(f"*{b[2]}*")
        elif kind == "code":
            out.append("```\n" + b[1].rstrip() + "\n```")
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
figcaption{color:#555;font-size:.9em;margin-bottom:1.5em}pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
"""


def _inline_md(text: str) -> str:
    # The report's paragraphs use only `code` and **bold**; escape everything else.
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def to_html(blocks: list[Block], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline_md(b[1])}</p>")
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1]) + "</tr>")
            for row in b[2]:
                out.append("<tr>" + "".join(f"<td>{_inline_md(str(c))}</td>" for c in row) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out)

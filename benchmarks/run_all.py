"""Run every stage benchmark and rewrite BENCHMARKS.md.

Each ``benchmarks/bench_*.py`` module compares our implementation with a naive
baseline that follows the original release's structure, in the same run, repeated,
median reported (see benchmarks/common.py). Results are also kept as JSON
(``benchmarks/results.json``) so GPU rows measured on another machine can be merged.

    python benchmarks/run_all.py                 # everything, full size
    python benchmarks/run_all.py --quick         # smaller inputs (a smoke run)
    python benchmarks/run_all.py --only text cnn # some modules
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from texttopicnet.core.io import read_json, write_json, write_text  # noqa: E402
from texttopicnet.core.provenance import git_commit, library_versions  # noqa: E402

MODULES = ("datasets", "text", "text_spaces", "cnn", "experiments", "caffe_import", "instance", "search", "vlm")


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}; {cores} cores available; {mem:.0f} GiB RAM; GPU: {gpu}; {platform.platform()}"


def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `python benchmarks/run_all.py` (do not edit by hand). Each row times our implementation "
        "and a naive baseline that follows the original release's structure, in the same run; times are "
        "medians of repeats; **ratio = baseline time / our time**.",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']}",
        f"- Commit: `{meta['commit']}`; mode: {'quick' if meta['quick'] else 'full'}",
        f"- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
        "",
        "| benchmark | what | device | ours (s) | baseline (s) | ratio | target | met | throughput | peak MiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        thr = f"{_fmt(r.get('throughput'))} {r.get('unit', '')}/s" if r.get("throughput") else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "-"
        lines.append(f"| {r['benchmark']} | {r['what']} | {r.get('device', 'cpu')} | {_fmt(r.get('ours_s'))} | "
                     f"{_fmt(r.get('baseline_s'))} | {ratio} | {r.get('target') or '-'} | {met} | {thr} | "
                     f"{_fmt(r.get('peak_mb'))} | {r.get('notes', '')} |")
    for name, err in meta.get("errors", {}).items():
        lines.append(f"\n`{name}` failed in this run: `{err}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small inputs: checks the benchmarks run, not for figures")
    p.add_argument("--only", nargs="+", choices=MODULES, help="run only these modules")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--results", type=Path, default=HERE / "results.json")
    args = p.parse_args(argv)

    previous = read_json(args.results) if args.results.is_file() else {"rows": []}
    selected = args.only or list(MODULES)
    rows = [r for r in previous.get("rows", []) if r.get("module") not in selected]
    errors = {}
    with tempfile.TemporaryDirectory(prefix="ttn_bench_") as tmp:
        workdir = args.workdir or Path(tmp)
        for name in selected:
            mod = importlib.import_module(f"bench_{name}")
            t0 = time.time()
            print(f"== bench_{name}", flush=True)
            try:
                got = mod.run(workdir / name, quick=args.quick)
            except Exception as exc:  # keep the other benchmarks' figures
                traceback.print_exc()
                errors[name] = f"{exc.__class__.__name__}: {exc}"
                continue
            for r in got:
                r["module"] = name
                print(json.dumps(r), flush=True)
            rows.extend(got)
            print(f"   ({time.time() - t0:.0f} s)", flush=True)
    order = {m: i for i, m in enumerate(MODULES)}
    rows.sort(key=lambda r: order.get(r.get("module"), 99))
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_description(),
            "commit": git_commit(), "quick": args.quick, "versions": library_versions(("torch", "numpy", "gensim",
                                                                                      "scikit-learn", "pillow")),
            "errors": errors}
    write_json(args.results, {"meta": meta, "rows": rows})
    write_text(args.output, render(rows, meta))
    print(f"wrote {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

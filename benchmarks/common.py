"""Helpers shared by the benchmark modules: repeated timing, peak memory, result rows.

Every ``benchmarks/bench_*.py`` module exposes ``run(workdir: Path, quick: bool) -> list[dict]``
returning rows made by :func:`row`; ``benchmarks/run_all.py`` runs them all and rewrites
``BENCHMARKS.md``. Each row compares our implementation with a naive baseline measured
in the same run (median of repeats), so the ratio, not the absolute time, is the claim.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any, Callable


def median_time(fn: Callable[[], Any], repeat: int = 3, warmup: int = 0) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeat`` runs (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _vm_hwm_mb() -> float | None:
    # VmHWM is this process's own high-water mark; ru_maxrss of a forked/spawned child can
    # inherit the parent's peak on Linux and over-report.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _child(fn, args, queue):
    fn(*args)
    hwm = _vm_hwm_mb()
    queue.put(hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def peak_rss_mb(fn: Callable[..., Any], *args) -> float:
    """Peak resident memory (MiB) of ``fn(*args)`` run in a fresh process (children excluded).

    ``fn`` must be importable (a module-level function) because it runs in a spawned process.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return float(value)


def row(benchmark: str, what: str, ours_s: float | None, baseline_s: float | None = None, *,
        items: int | None = None, unit: str = "items", target: str | None = None,
        target_ratio: float | None = None, peak_mb: float | None = None, device: str = "cpu",
        notes: str = "") -> dict:
    """One result row. ``ratio`` is baseline_s / ours_s (how many times faster ours is)."""
    ratio = (baseline_s / ours_s) if (ours_s and baseline_s) else None
    out = {
        "benchmark": benchmark,
        "what": what,
        "ours_s": ours_s,
        "baseline_s": baseline_s,
        "ratio": ratio,
        "throughput": (items / ours_s) if (items and ours_s) else None,
        "baseline_throughput": (items / baseline_s) if (items and baseline_s) else None,
        "unit": unit,
        "items": items,
        "target": target,
        "met": (ratio >= target_ratio) if (ratio is not None and target_ratio is not None) else None,
        "peak_mb": peak_mb,
        "device": device,
        "notes": notes,
    }
    return out

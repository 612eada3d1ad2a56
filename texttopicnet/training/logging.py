"""Training logs: JSON lines, a progress bar on a terminal, TensorBoard when installed.

``log.jsonl`` holds one line per logging interval::

    {"iteration": 40, "loss": 3.12, "lr": 0.0025, "images_per_s": 17.9, "data_time": 0.001,
     "step_time": 0.89, "n": 5, "epoch": 1, "time": 1764000000.0}

``loss`` is the mean training loss over the ``n`` iterations ending at ``iteration``;
``data_time`` / ``step_time`` are seconds per iteration spent waiting for data / computing.
Iteration 1 is always logged on its own, so the first line is the initial loss.
On resume, lines past the checkpoint's iteration (written after it by the killed run)
are dropped, so the log never counts an iteration twice. Only rank 0 logs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..core.io import append_jsonl, atomic_open


def read_log(path: str | Path) -> list[dict]:
    """The parsable records of a ``log.jsonl`` (a line torn by a crash is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "iteration" in rec:
                out.append(rec)
    return out


def truncate_log(path: str | Path, last_iteration: int) -> list[dict]:
    """Keep only records up to ``last_iteration`` (atomic rewrite); returns them."""
    records = [r for r in read_log(path) if r["iteration"] <= last_iteration]
    if Path(path).exists():
        with atomic_open(path) as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    return records


def loss_summary(records: list[dict], total_iterations: int, global_batch: int) -> dict:
    """initial_loss (iteration 1), final_loss (mean over the last ~10% of iterations), images/s."""
    if not records:
        return {"initial_loss": None, "final_loss": None, "images_per_s": None}
    first = min(records, key=lambda r: r["iteration"])
    cutoff = int(total_iterations * 0.9)
    tail = [r for r in records if r["iteration"] > cutoff] or [max(records, key=lambda r: r["iteration"])]
    weight = sum(r.get("n", 1) for r in tail)
    final = sum(r["loss"] * r.get("n", 1) for r in tail) / weight
    # Throughput over the whole run: images trained / seconds spent (iteration 1 excluded: warm-up).
    timed = [r for r in records if r["iteration"] > 1 and r.get("images_per_s")]
    images = sum(r.get("n", 1) * global_batch for r in timed)
    seconds = sum(r.get("n", 1) * global_batch / r["images_per_s"] for r in timed)
    return {"initial_loss": first["loss"], "final_loss": final,
            "images_per_s": (images / seconds) if seconds > 0 else None}


class RunLogger:
    """Writes ``log.jsonl`` (+ TensorBoard events) and draws progress, on the main process only."""

    def __init__(self, out_dir: Path, enabled: bool, total: int, start: int, tensorboard: bool = True):
        self.path = Path(out_dir) / "log.jsonl"
        self.enabled, self.total = enabled, total
        self.bar = None
        self.tb = None
        self._last_print = 0.0
        if not enabled:
            return
        self.tty = sys.stderr.isatty()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

                self.tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"), purge_step=start + 1)
            except ImportError:
                self.tb = None

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def record(self, rec: dict) -> None:
        if not self.enabled:
            return
        rec = {**rec, "time": round(time.time(), 3)}
        append_jsonl(self.path, rec)
        if self.tb is not None:
            for key in ("loss", "lr", "images_per_s", "data_time", "step_time"):
                if rec.get(key) is not None:
                    self.tb.add_scalar(f"train/{key}", rec[key], rec["iteration"])
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2g}",
                                 ips=f"{rec['images_per_s']:.1f}")
        elif time.time() - self._last_print > 15 or rec["iteration"] in (1, self.total):
            # Not a terminal (pipeline log, CI): a plain line now and then instead of a bar.
            self._last_print = time.time()
            print(f"  iteration {rec['iteration']}/{self.total}  loss {rec['loss']:.4f}  lr {rec['lr']:.3g}  "
                  f"{rec['images_per_s']:.1f} img/s", flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()

"""Shared command-line plumbing for the stage scripts.

Every stage builds one ``argparse`` parser from the parent parsers here, prints its
resolved configuration, and runs through :func:`run_main`, which turns a
:class:`~texttopicnet.core.errors.UserError` into one clear line on stderr and exit
code 2 (never a traceback for a user mistake).

Typical stage script::

    from texttopicnet.core import cli

    def build_parser():
        p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser()])
        p.add_argument("--num-topics", type=int, default=40, help="...")
        return p

    def main(argv=None):
        args = build_parser().parse_args(argv)
        cli.print_config("learn_lda", args)
        ...

    if __name__ == "__main__":
        cli.run_main(main)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN = Path("runs") / "demo"


def default_workers() -> int:
    """All cores but leave none idle on small machines (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def make_parser(doc: str | None, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of the stage's docstring."""
    description = (doc or "").strip().split("\n\n")[0]
    return argparse.ArgumentParser(description=description, parents=list(parents),
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def data_parser(default: str | None = "data") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-root", type=Path, default=Path(default) if default else None,
                   help="folder holding the datasets (ImageCLEF_Wikipedia/, VOC2007/, Wikipedia/), "
                        "laid out as data/README.md describes")
    return p


def io_parser(default_out: str | os.PathLike = DEFAULT_RUN, out_help: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", type=Path, default=Path(default_out),
                   help=out_help or "run folder; every stage writes to its own sub-folder here (runs/ is git-ignored)")
    p.add_argument("--force", action="store_true",
                   help="redo the stage even if its meta.json says it is finished")
    return p


def seed_parser(default: int = 0) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--seed", type=int, default=default,
                   help="random seed; recorded in meta.json so a run can be repeated")
    return p


def workers_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="worker processes for parallel work (default: all cores available to this process)")
    return p


def network_parser() -> argparse.ArgumentParser:
    """``--weights`` and ``--tag``: which network an experiment evaluates and its name in the tables."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--weights", required=True,
                   help="training checkpoint .pt, exported/converted .safetensors, or 'random' (the random-init "
                        "baseline of the same architecture, seeded by --seed)")
    p.add_argument("--tag", default=None, help="name of this network in the tables (default: from the weights file)")
    return p


def arch_parser(default: str | None = None, help_extra: str | None = None) -> argparse.ArgumentParser:
    """``--arch``: a backbone of ``texttopicnet.networks.backbones`` (imported here, so only the stages
    that build networks pay for torch). ``default=None`` (the experiments): files written by this
    toolkit record their architecture; the flag is needed for ``--weights random`` (default then
    CaffeNet, the paper's) and for a torchvision state-dict ``.pth``."""
    from ..networks import backbones

    p = argparse.ArgumentParser(add_help=False)
    what = help_extra or ("architecture of --weights random (default: caffenet, the paper's) and of a bare "
                          "torchvision state-dict .pth; files written by this toolkit record theirs, and a "
                          "different --arch is an error")
    p.add_argument("--arch", default=default, choices=backbones.names(), help=what)
    return p


def threads_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default, one per core). Many small tensor operations run "
                        "faster on 1, and much faster on a machine busy with other work (idle threads spin)")
    return p


def apply_threads(n: int) -> None:
    """Set torch's intra-op threads from ``--threads`` (0 leaves torch's default)."""
    if n < 0:
        raise UserError("--threads must be 0 (default) or positive")
    if n:
        import torch

        torch.set_num_threads(n)


def device_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--device", default="auto",
                   help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    return p


def resolve_device(name: str):
    """Turn ``--device`` into a ``torch.device``; a CUDA request without CUDA is a user error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for CUDA, but torch.cuda.is_available() is False on this machine")
    return dev


def config_dict(args: argparse.Namespace | dict) -> dict[str, Any]:
    items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in items if not callable(v)}


def print_config(stage: str, args: argparse.Namespace | dict, file=None) -> None:
    """Print the resolved configuration, one ``key: value`` per line, at stage start."""
    file = file or sys.stdout
    cfg = config_dict(args)
    print(f"== {stage}", file=file)
    width = max((len(k) for k in cfg), default=0)
    for k, v in cfg.items():
        print(f"  {k.ljust(width)} : {json.dumps(v) if not isinstance(v, str) else v}", file=file)
    file.flush()


def log(msg: str, file=None) -> None:
    print(msg, file=file or sys.stdout, flush=True)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's ``main`` and exit: 0 on success, 2 with one line on a user error, 130 on Ctrl-C."""
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)

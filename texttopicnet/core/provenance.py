"""Provenance: the ``meta.json`` every stage writes next to its outputs.

``meta.json`` records the stage name, its arguments, the git commit, library
versions, the time and checksums of its inputs and outputs. It is written last,
atomically, so its presence (with matching output checksums) is what marks a stage
as finished: :func:`stage_is_done` checks it, and stages skip finished work unless
``--force``. A finished stage is redone when the arguments that shape its outputs
changed (:func:`args_changed`), and a redo removes the outputs the previous run
recorded that the new run does not write (:func:`remove_stale_outputs`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .io import read_json, sha256_file, write_json

META_NAME = "meta.json"
_LIBS = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "gensim", "pillow", "nltk", "stop-words")


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The current commit of the project checkout (``None`` outside git), '+dirty' if modified."""
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions(names: Iterable[str] = _LIBS) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _jsonable_args(args: argparse.Namespace | dict | None) -> dict[str, Any]:
    if args is None:
        return {}
    items = vars(args).items() if isinstance(args, argparse.Namespace) else args.items()
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in items if not callable(v)}


def file_checksums(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """sha256 of each existing file (folders are skipped: list their files explicitly)."""
    out = {}
    for p in paths:
        p = Path(p)
        if p.is_file():
            out[str(p)] = sha256_file(p)
    return out


def write_meta(out_dir: str | os.PathLike, stage: str, args: argparse.Namespace | dict | None,
               inputs: Iterable[str | os.PathLike] = (), outputs: Iterable[str | os.PathLike] = (),
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/meta.json``. Call it after every output is in place.

    ``outputs`` are checksummed relative to ``out_dir`` so that :func:`stage_is_done`
    can tell a finished stage from one whose files were edited or truncated later.
    """
    out_dir = Path(out_dir)
    outs = {}
    for p in outputs:
        p = Path(p)
        if p.is_file():
            outs[os.path.relpath(p, out_dir)] = _fingerprint(p)
    meta = {
        "stage": stage,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
        "args": _jsonable_args(args),
        "argv": sys.argv,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "inputs": file_checksums(inputs),
        "outputs": outs,
    }
    if extra:
        meta.update(extra)
    path = out_dir / META_NAME
    write_json(path, meta)
    return path


# Hashing a 20 GB packed image store on every skip-check would cost minutes, so
# files above this size are fingerprinted by their size alone.
_HASH_LIMIT = 512 << 20


def _fingerprint(path: Path) -> str:
    size = path.stat().st_size
    if size > _HASH_LIMIT:
        return f"size:{size}"
    return sha256_file(path)


def read_meta(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(out_dir) / META_NAME
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def stage_is_done(out_dir: str | os.PathLike, stage: str | None = None,
                  verify_checksums: bool = True) -> bool:
    """True when ``out_dir`` holds a ``meta.json`` for ``stage`` whose outputs all still match."""
    meta = read_meta(out_dir)
    if meta is None or (stage is not None and meta.get("stage") != stage):
        return False
    for rel, digest in (meta.get("outputs") or {}).items():
        p = Path(out_dir) / rel
        if not p.is_file():
            return False
        if digest.startswith("size:"):
            if p.stat().st_size != int(digest[5:]):
                return False
        elif verify_checksums and sha256_file(p) != digest:
            return False
    return True


def invalidate(out_dir: str | os.PathLike) -> None:
    """Remove ``meta.json`` first when a stage starts (re)writing its outputs."""
    path = Path(out_dir) / META_NAME
    if path.exists():
        path.unlink()


def args_changed(out_dir: str | os.PathLike, args: argparse.Namespace | dict, keys: Iterable[str],
                 defaults: dict[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """The arguments among ``keys`` whose value differs from the one the finished stage recorded.

    Returns ``{key: (recorded, current)}`` (empty when nothing changed or nothing is
    recorded). Values are compared in their ``meta.json`` form (paths as strings). A key
    the recorded run does not have (a meta.json written before the option existed) counts
    as recorded with ``defaults[key]`` (the option's default, which reproduces the older
    behaviour); without a default it counts as changed.
    """
    meta = read_meta(out_dir)
    if meta is None:
        return {}
    recorded = meta.get("args") or {}
    current = _jsonable_args(args)
    defaults = _jsonable_args(defaults or {})
    missing = object()
    changed = {}
    for key in keys:
        now = current.get(key)
        before = recorded.get(key, defaults.get(key, missing))
        if before is missing or _normal(before) != _normal(now):
            changed[key] = (None if before is missing else before, now)
    return changed


def _normal(value: Any) -> Any:
    """JSON round-trip form: tuples become lists, as they come back from meta.json."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    return value


def format_changes(changed: dict[str, tuple[Any, Any]]) -> str:
    """``--key old -> new, ...`` for a log line."""
    return ", ".join(f"--{k.replace('_', '-')} {old!r} -> {new!r}" for k, (old, new) in changed.items())


def recorded_outputs(out_dir: str | os.PathLike) -> list[Path]:
    """The output files the stage's meta.json lists (resolved against ``out_dir``; [] without meta)."""
    meta = read_meta(out_dir) or {}
    return [Path(os.path.normpath(Path(out_dir) / rel)) for rel in (meta.get("outputs") or {})]


def remove_stale_outputs(previous: Iterable[str | os.PathLike], current: Iterable[str | os.PathLike]) -> list[Path]:
    """Delete the files of ``previous`` (a finished run's :func:`recorded_outputs`) not in ``current``.

    Called when a stage is redone with other arguments, so that the folder never holds
    files of two runs (an ``ldamodel40.lda`` beside a new ``ldamodel8.lda``, a saved text
    space of another run). Only files a meta.json listed are touched (folders stay).
    Returns the removed files.
    """
    keep = {os.path.normpath(os.path.abspath(p)) for p in current}
    removed = []
    for p in previous:
        p = Path(p)
        if os.path.normpath(os.path.abspath(p)) in keep or not p.is_file():
            continue
        p.unlink()
        removed.append(p)
    return removed

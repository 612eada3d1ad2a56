"""Shared plumbing of the CNN-VLM stage scripts (``experiments/vlm/``): folders, parsers, loading.

Run folder layout (``--out RUN``)::

    RUN/vlm/<tag>/            checkpoint.pt, log.jsonl, vlm.pt, summary.json, meta.json   (01)
    RUN/vlm_maps/<tag>/       maps/<name>.npy, overlays/<name>.png, index.txt, meta.json   (02)
    RUN/vlm_saliency/<dataset>/<tag>/   results.json, results.md, per_image.jsonl, meta.json (03)
    RUN/vlm_paste/<tag>/      results.json, results.md, examples.png, meta.json           (04)
    RUN/vlm_reconstruct/<tag>/<target>/frame_<iteration>.png, final.png, history.jsonl;
                              reconstructions.png, meta.json                               (05)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from ..core import cli, provenance
from ..core.cli import apply_threads, threads_parser  # noqa: F401  (the stage scripts use them from here)
from ..core.errors import UserError

DEMO_HELDOUT = Path("data") / "VOC2007" / "VOCdevkit" / "VOC2007" / "JPEGImages"


def vlm_dir(run: Path, tag: str) -> Path:
    return Path(run) / "vlm" / tag


def vlm_parser() -> argparse.ArgumentParser:
    """``--vlm`` (the trained VLM file) and ``--tag`` (its name in folders and tables)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--tag", default="trained",
                   help="name of the VLM: read from RUN/vlm/<tag>/vlm.pt unless --vlm is given, results go to "
                        "folders named after it")
    p.add_argument("--vlm", type=Path, default=None, help="a vlm.pt written by 01_train_vlm.py (default RUN/vlm/<tag>/vlm.pt)")
    p.add_argument("--weights", default=None,
                   help="the backbone's weights when they moved since training (default: the file the VLM records)")
    return p


def add_overrides(parser: argparse.ArgumentParser, preset, helps: dict[str, str],
                  choices: dict[str, tuple] | None = None):
    """The group "overrides of the preset": ``--name`` (``_`` as ``-``) for each field of the config
    ``preset`` named in ``helps``, typed as the preset's value (a tuple: one or more strings), default None
    (the preset's value); :func:`overrides` reads the given ones back. Returns the group."""
    g = parser.add_argument_group("overrides of the preset (default: the preset's value)")
    for name, text in helps.items():
        value = getattr(preset, name)
        kw = {"nargs": "+"} if isinstance(value, tuple) else {"type": type(value)}
        if name in (choices or {}):
            kw["choices"] = choices[name]
        g.add_argument("--" + name.replace("_", "-"), help=text, **kw)
    return g


def overrides(args, options) -> dict:
    """The options of :func:`add_overrides` given on the command line, by name."""
    return {k: getattr(args, k) for k in options if getattr(args, k) is not None}


def vlm_path(args) -> Path:
    path = args.vlm or vlm_dir(args.out, args.tag) / "vlm.pt"
    if not Path(path).is_file():
        raise UserError(f"{path}: no trained VLM; run experiments/vlm/01_train_vlm.py --out {args.out} first "
                        "(or pass --vlm)")
    return Path(path)


def same_settings(meta: dict | None, settings: dict) -> bool:
    """Whether a finished stage's recorded settings are ``settings`` (compared as JSON: tuples are lists there)."""
    return bool(meta) and meta.get("settings") == json.loads(json.dumps(settings))


def already_done(out_dir: Path, stage: str, settings: dict, force: bool = False, *,
                 weights_sha256: str | None = None) -> bool:
    """Whether ``out_dir`` holds a finished ``stage`` made with ``settings`` (and, when given, from the
    network weights ``weights_sha256``): then it says so and the stage is skipped. Otherwise (or with
    ``force``) the folder's record is invalidated, as the stage is about to (re)write it."""
    meta = provenance.read_meta(out_dir) or {}
    if (not force and provenance.stage_is_done(out_dir, stage) and same_settings(meta, settings)
            and (weights_sha256 is None or meta.get("weights", {}).get("sha256") == weights_sha256)):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return True
    provenance.invalidate(out_dir)
    return False


def start(stage: str, parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """A stage script's first steps: parse ``argv``, print the configuration, set the torch threads."""
    args = parser.parse_args(argv)
    cli.print_config(stage, args)
    apply_threads(args.threads)
    return args


def safe_name(name: str) -> str:
    """A file stem for an image name (sub-folders joined by '__', odd characters replaced)."""
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", name.replace("\\", "/")).replace("/", "__")
    return re.sub(r"[^A-Za-z0-9_.\-\[\]]", "_", stem) or "image"


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        s = safe_name(n)
        if s in seen:
            seen[s] += 1
            s = f"{s}_{seen[s]}"
        else:
            seen[s] = 0
        out.append(s)
    return out


def heldout_images(run: Path) -> Path | None:
    """The demo corpus' VOC2007 images (not the VLM's training images) when the run has them."""
    path = Path(run) / DEMO_HELDOUT
    return path if path.is_dir() else None


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"

"""The CNN-VLM section of the run report, from what the ``experiments/vlm/`` stages left in a run folder.

Reads (all optional except the trained VLM; see :mod:`texttopicnet.vlm.stages` for the layout)::

    RUN/vlm/<tag>/summary.json, meta.json          01: layers, PCA dims, losses, backbone
    RUN/vlm_maps/<tag>/index.txt, overlays/*.png   02: the maps figure (first images)
    RUN/vlm_paste/<tag>/results.json, examples.png 04: the pasted-region AUC table
    RUN/vlm_reconstruct/<tag>/<target>/frame_*.png 05: the reconstruction figure
    RUN/vlm_saliency/<dataset>/<tag>/results.json  03: the fixation metrics table

Two entry points, the same content:

- :func:`report_blocks` returns blocks of ``texttopicnet.report.render`` (``("h", ...)``,
  ``("p", ...)``, ``("table", ...)``, ``("img", ...)``) for ``build_report``;
- :func:`report_section` returns Markdown lines, figure links relative to the report folder.

Both return ``[]`` when ``RUN/vlm`` holds no trained VLM.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import figures

METRICS = ("auc_judd", "sauc", "nss", "cc", "kl", "sim")


def _json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _png(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None


def trained_tags(run_dir: Path) -> list[str]:
    """Tags with a finished VLM (``summary.json`` and ``vlm.pt``), 'trained' first."""
    root = Path(run_dir) / "vlm"
    if not root.is_dir():
        return []
    tags = sorted(p.parent.name for p in root.glob("*/summary.json") if (p.parent / "vlm.pt").is_file())
    return sorted(tags, key=lambda t: (t != "trained", t))


def _f(v, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and v == v else "-"


def _overlays(run_dir: Path, tag: str, fig_dir: Path, limit: int = 6) -> Path | None:
    d = Path(run_dir) / "vlm_maps" / tag
    index = d / "index.txt"
    if not index.is_file():
        return None
    names = [n for n in index.read_text().split() if n][:limit]
    pairs = [(n, _png(d / "overlays" / f"{n}.png")) for n in names]
    pairs = [(n, im) for n, im in pairs if im is not None]
    if not pairs:
        return None
    meta = _json(d / "meta.json") or {}
    return figures.image_row([im for _, im in pairs], fig_dir / f"vlm_maps_{tag}.png", [n for n, _ in pairs],
                             title=f"CNN-VLM saliency maps (layer {meta.get('layer', '?')})")


def _reconstructions(run_dir: Path, tag: str, fig_dir: Path) -> tuple[Path | None, dict]:
    d = Path(run_dir) / "vlm_reconstruct" / tag
    meta = _json(d / "meta.json") or {}
    rows = {}
    for name in meta.get("targets") or sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []:
        frames = []
        for f in sorted((d / name).glob("frame_*.png")):
            im = _png(f)
            if im is not None:
                frames.append((int(f.stem.split("_")[1]), im))
        if frames:
            rows[name.replace("_", " ")] = frames
    settings = meta.get("settings") or {}
    title = f"Reconstructions from {settings.get('target_layer', 'fc8')} with the VLM prior"
    return figures.reconstructions_figure(rows, fig_dir / f"vlm_reconstructions_{tag}.png", title=title), settings


def report_blocks(run_dir: Path, fig_dir: Path) -> list:
    """Report blocks for the CNN-VLM results of ``run_dir``; figures are written into ``fig_dir``."""
    run_dir, fig_dir = Path(run_dir), Path(fig_dir)
    tags = trained_tags(run_dir)
    if not tags:
        return []
    tag = tags[0]
    summ = _json(run_dir / "vlm" / tag / "summary.json") or {}
    meta = _json(run_dir / "vlm" / tag / "meta.json") or {}
    weights = (meta.get("weights") or {})
    blocks: list = [("h", 2, "CNN-VLM: naturalness, saliency and feature inversion"),
                    ("p", f"Language models over the pre-ReLU feature maps (Kato & Harada 2015) of "
                          f"{weights.get('arch', '?')} ({Path(str(weights.get('source') or '?')).name}), tag "
                          f"`{tag}`: four 2-layer LSTMs per layer predict the next feature vector along columns and "
                          f"rows; where prediction fails the image is unnatural (salient).")]
    dims = summ.get("pca_dims") or {}
    blocks.append(("table", ["layer", "PCA dims", "loss after training (64 images)"],
                   [[n, str(dims.get(n, "-")), _f((summ.get("eval_layers") or {}).get(n), 4)]
                    for n in summ.get("layers", [])]))
    blocks.append(("p", f"{summ.get('iterations', '-')} updates on {summ.get('images', '-')} images; loss "
                        f"{_f(summ.get('initial_loss'), 4)} -> {_f(summ.get('final_loss'), 4)}."))
    paste = _json(run_dir / "vlm_paste" / tag / "results.json")
    if paste and paste.get("kinds"):
        scorers = list(paste["kinds"].get("all", {}))
        rows = [[k] + [f"{_f(r[s]['auc'])} ± {_f(r[s]['sem'])}" for s in scorers] + [str(r[scorers[0]]["n"])]
                for k, r in paste["kinds"].items() if scorers]
        blocks.append(("p", f"Pasted-region check (layer {paste.get('layer')}): AUC of the saliency map for a pasted "
                            "square against the rest of the image (0.5 = chance), mean ± s.e. over the images; "
                            "`random_init` is the same network and projections with untrained language models."))
        blocks.append(("table", ["kind", *scorers, "images"], rows))
        ex = run_dir / "vlm_paste" / tag / "examples.png"
        if ex.is_file():
            fig_dir.mkdir(parents=True, exist_ok=True)
            dst = fig_dir / f"vlm_paste_{tag}.png"
            shutil.copyfile(ex, dst)
            blocks.append(("img", dst, "Pasted regions (outlined) and the CNN-VLM saliency map"))
    path = _overlays(run_dir, tag, fig_dir)
    if path:
        blocks.append(("img", path, "CNN-VLM saliency maps of held-out images"))
    path, settings = _reconstructions(run_dir, tag, fig_dir)
    if path:
        blocks.append(("img", path, f"What a topic looks like: images optimised from noise so that "
                                    f"{settings.get('target_layer', 'fc8')} matches a one-topic vector, with the "
                                    f"VLM as a naturalness prior ({settings.get('iterations', '?')} steps)"))
    for res_path in sorted(run_dir.glob(f"vlm_saliency/*/{tag}/results.json")):
        res = _json(res_path) or {}
        summary = res.get("summary") or {}
        if summary:
            blocks.append(("p", f"Saliency on {res.get('dataset')} ({res.get('images')} images, layer "
                                f"{res.get('layer')}), MIT benchmark metrics:"))
            blocks.append(("table", ["map", *METRICS],
                           [[k] + [_f(v.get(m)) for m in METRICS] for k, v in summary.items()]))
    return blocks


def report_section(run_dir: Path, figures_dir: Path, report_dir: Path | None = None) -> list[str]:
    """Markdown lines of :func:`report_blocks`; figure links relative to ``report_dir`` (default: the
    parent of ``figures_dir``, as ``RUN/report/figures``)."""
    from ..report.render import to_markdown

    blocks = report_blocks(run_dir, figures_dir)
    if not blocks:
        return []
    base = Path(report_dir) if report_dir is not None else Path(figures_dir).parent
    return to_markdown(blocks, Path(os.path.abspath(base))).splitlines()

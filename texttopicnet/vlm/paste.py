"""The pasted-region check: does the unnaturalness map find a region that does not belong?

Each test image (a centre crop at the network's input size) gets one square region replaced:

- ``patch``: the same-size region of ANOTHER image (a random position in it);
- ``rotate``: its own content turned upside down (180 degrees);
- ``noise``: Gaussian noise with the per-channel mean and std of the test images' pixels.

The map (the release's saliency post-processing of the layer's unnaturalness map) scores
every pixel; the score of an image is the area under the ROC curve of the pasted pixels
against the rest (:func:`texttopicnet.vlm.metrics.region_auc`; 0.5 = chance). The same
images are scored with a random-init VLM (same projections, fresh language models: the
learning is what is tested) and with the centre-bias map (a Gaussian at the centre).

Use::

    cases = make_cases(images, n=200, kinds=("patch",), frac=0.3, seed=0)
    result = evaluate(models={"trained": m, "random_init": r}, cases=cases, layer="conv5")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..core.errors import UserError
from .metrics import region_auc
from .saliency import center_bias

KINDS = ("patch", "rotate", "noise")


@dataclass
class Case:
    image: np.ndarray   # (S, S, 3) uint8 with the region replaced
    mask: np.ndarray    # (S, S) bool, True inside the region
    kind: str
    source: int         # index of the test image
    donor: int          # index of the image the patch came from (-1: none)


def make_cases(images: np.ndarray, n: int, kinds=KINDS, frac: float = 0.3, seed: int = 0) -> list[Case]:
    """``n`` cases per kind from ``images`` (N, S, S, 3) uint8; the region's side is ``frac`` x S."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3 or images.dtype != np.uint8:
        raise UserError(f"expected square uint8 RGB images (N, S, S, 3), got {images.dtype} {images.shape}")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise UserError(f"unknown kind(s) {unknown}; choose from {KINDS}")
    if len(images) < 2 and "patch" in kinds:
        raise UserError("the 'patch' kind needs at least 2 images")
    n_img, s = images.shape[0], images.shape[1]
    side = round(frac * s)
    if not 0 < side < s:
        raise UserError(f"--frac {frac} gives a {side}-pixel region in a {s}-pixel image")
    rng = np.random.default_rng(seed)
    px = images.reshape(-1, 3).astype(np.float64)
    mean, std = px.mean(axis=0), px.std(axis=0)
    cases = []
    for kind in kinds:
        for c in range(n):
            i = c % n_img if n <= n_img else int(rng.integers(n_img))
            top, left = (int(v) for v in rng.integers(0, s - side + 1, 2))
            img = images[i].copy()
            donor = -1
            region = (slice(top, top + side), slice(left, left + side))
            if kind == "patch":
                donor = int((i + rng.integers(1, n_img)) % n_img)
                t2, l2 = (int(v) for v in rng.integers(0, s - side + 1, 2))
                img[region] = images[donor, t2:t2 + side, l2:l2 + side]
            elif kind == "rotate":
                img[region] = img[region][::-1, ::-1]
            else:
                noise = rng.normal(mean, std, (side, side, 3))
                img[region] = np.clip(np.rint(noise), 0, 255).astype(np.uint8)
            mask = np.zeros((s, s), bool)
            mask[region] = True
            cases.append(Case(img, mask, kind, i, donor))
    return cases


def saliency_maps(model, images: np.ndarray, layer: str, batch: int = 16) -> list[np.ndarray]:
    """Post-processed maps (the release's saliency steps) of ``layer`` for uint8 images (N, S, S, 3)."""
    out = []
    for i in range(0, len(images), batch):
        out.extend(model.saliency(images[i:i + batch], layer)[1])
    return out


def evaluate(models: dict, cases: list[Case], layer: str, batch: int = 16, progress: bool = True) -> dict:
    """Per kind and per scorer (each model, plus ``center_bias``): mean AUC, its std error, and every AUC."""
    if not cases:
        raise UserError("no case to evaluate")
    images = np.stack([c.image for c in cases])
    scores: dict[str, list[float]] = {}
    for name, model in tqdm(models.items(), desc="scoring maps", unit="model", disable=not progress):
        maps = saliency_maps(model, images, layer, batch)
        scores[name] = [region_auc(m, c.mask) for m, c in zip(maps, cases)]
    cb = center_bias(images.shape[1:3])
    scores["center_bias"] = [region_auc(cb, c.mask) for c in cases]
    result: dict = {"layer": layer, "n": len(cases), "kinds": {}}
    kinds = sorted({c.kind for c in cases}, key=KINDS.index)
    for kind in kinds + ["all"]:
        sel = [j for j, c in enumerate(cases) if kind == "all" or c.kind == kind]
        row = {}
        for name, vals in scores.items():
            v = np.asarray([vals[j] for j in sel])
            row[name] = {"auc": float(v.mean()), "sem": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
                         "n": len(v)}
        result["kinds"][kind] = row
    result["per_case"] = {name: [float(x) for x in vals] for name, vals in scores.items()}
    return result


def random_init_like(model, seed: int = 1):
    """The same network and projections with freshly initialised language models (seeded)."""
    from .model import VLM
    from .naturalness import NaturalnessModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vlm = VLM({n: p.out_channels for n, p in model.projections.items()})
    return NaturalnessModel(model.net, model.arch, model.projections, vlm, model.stats, model.input_size, (),
                            model.network, model.config).to(model.device)

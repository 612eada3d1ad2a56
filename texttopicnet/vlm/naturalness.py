"""A trained CNN-VLM as one object: network + pre-ReLU taps + projections + language models.

The VLM file (``vlm.pt``, a plain dict loadable with ``torch.load(weights_only=True)``)::

    {"format": "texttopicnet-vlm/1", "arch", "layers", "input_size",
     "network": {"weights", "sha256", "num_outputs", "seed"},   # the backbone it was trained on
     "projections": {layer: {"mean", "std", "pca_mean", "components"}},
     "stats": {layer: {"mean", "std"}},                           # per-unit, also fc7/fc8 for inversion
     "vlm": state_dict, "config": {...}}

Use::

    model = load_vlm("RUN/vlm/caffenet/vlm.pt")               # loads the backbone it names
    out = model.run(model.preprocess(uint8_batch))             # loss, per-layer losses, maps
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, UserError
from ..networks import backbones
from ..training.checkpoint import load_checkpoint
from . import features
from .model import VLM

FORMAT = "texttopicnet-vlm/1"
ALL = "all"  # a layer name meaning: the mean of every layer's saliency map


class NaturalnessModel:
    """Frozen backbone + per-layer :class:`~texttopicnet.vlm.features.Projection` + :class:`VLM`."""

    def __init__(self, net, arch: str, projections: Mapping[str, features.Projection], vlm: VLM,
                 stats: Mapping[str, Mapping[str, np.ndarray]] | None = None, input_size: int | None = None,
                 extra_layers: Sequence[str] = (), network: dict | None = None, config: dict | None = None):
        self.net, self.arch = net.eval(), arch
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.layers = list(projections)
        self.projections = dict(projections)
        self.vlm = vlm
        self.stats = dict(stats or {})
        self.input_size = int(input_size or backbones.get(arch).crop)
        self.network = dict(network or {})
        self.config = dict(config or {})
        self.taps = features.LayerTaps(net, arch, self.layers + [n for n in extra_layers if n not in self.layers])

    @property
    def device(self) -> torch.device:
        return next(self.vlm.parameters()).device

    def to(self, device) -> NaturalnessModel:
        self.net.to(device)
        self.vlm.to(device)
        for p in self.projections.values():
            p.to(device)
        return self

    def preprocess(self, uint8_batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        if not isinstance(uint8_batch, torch.Tensor):  # PIL-decoded arrays are read-only: copy
            uint8_batch = torch.from_numpy(np.array(uint8_batch, dtype=np.uint8, copy=True))
        t = uint8_batch
        return backbones.preprocess(self.arch, t).to(self.device)

    def project(self, raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: self.projections[n](raw[n]) for n in self.layers}

    @torch.no_grad()
    def projected(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Projected features of the VLM's layers (no gradient): what training caches."""
        return self.project(self.taps(x))

    def run(self, x: torch.Tensor, want_maps: bool = True, weights: Mapping[str, float] | None = None) -> dict:
        """VLM output for network input ``x`` plus the raw tapped activations under ``"raw"``."""
        raw = self.taps(x)
        out = self.vlm(self.project(raw), want_maps=want_maps, weights=weights)
        out["raw"] = raw
        return out

    @torch.no_grad()
    def maps(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Unnaturalness maps (N, H-1, W-1) per layer, as numpy."""
        return {n: m.float().cpu().numpy() for n, m in self.run(x)["maps"].items()}

    def saliency(self, uint8_batch: np.ndarray, layer: str | None = None, **post) -> tuple[np.ndarray, list]:
        """(unnaturalness maps (N, h, w) of ``layer``, saliency maps at the images' size) for uint8 RGB
        images (N, H, W, 3): the release's post-processing (:func:`texttopicnet.vlm.saliency.postprocess`).

        ``layer="all"`` (our option) averages the saliency maps of every layer; the unnaturalness
        maps returned are then those of the deepest layer.
        """
        from .saliency import layer_stride, postprocess

        layer = layer or self.layers[-1]
        names = self.layers if layer == ALL else [layer]
        if any(n not in self.layers for n in names):
            raise UserError(f"the VLM has no layer {layer!r}; its layers: {self.layers} (or {ALL!r})")
        maps = self.maps(self.preprocess(uint8_batch))
        shape = tuple(uint8_batch.shape[1:3])
        total = None
        for n in names:
            stride = layer_stride(shape[0], maps[n].shape[1] + 1)
            sal = [postprocess(m, shape, stride, **post) for m in maps[n]]
            total = sal if total is None else [a + b for a, b in zip(total, sal)]
        return maps[names[-1]], [t / len(names) for t in total]

def projections_state(projections: Mapping[str, features.Projection]) -> dict:
    return {n: {k: v.detach().cpu() for k, v in p.state_dict().items()} for n, p in projections.items()}


def projections_from_state(state: Mapping) -> dict[str, features.Projection]:
    try:
        return {n: features.Projection(s["mean"], s["std"], s["pca_mean"], s["components"]) for n, s in state.items()}
    except (KeyError, TypeError) as exc:
        raise DataError(f"malformed projections in the VLM file ({exc})") from None


def stats_state(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    return {n: {k: torch.as_tensor(np.asarray(v)) for k, v in s.items()} for n, s in stats.items()}


def stats_from_state(state: Mapping) -> dict:
    return {n: {k: torch.as_tensor(v).numpy() for k, v in s.items()} for n, s in state.items()}


def vlm_record(model: NaturalnessModel) -> dict:
    """The plain dict saved as ``vlm.pt``."""
    return {"format": FORMAT, "arch": model.arch, "layers": list(model.layers), "input_size": model.input_size,
            "network": dict(model.network), "projections": projections_state(model.projections),
            "stats": stats_state(model.stats), "vlm": {k: v.detach().cpu() for k, v in model.vlm.state_dict().items()},
            "config": dict(model.config)}


def model_from_record(record: Mapping, net, extra_layers: Sequence[str] = ()) -> NaturalnessModel:
    if record.get("format") != FORMAT:
        raise DataError(f"not a CNN-VLM file (format {record.get('format')!r}, expected {FORMAT!r})")
    projections = projections_from_state(record["projections"])
    vlm = VLM({n: p.out_channels for n, p in projections.items()})
    try:
        vlm.load_state_dict(record["vlm"], strict=True)
    except RuntimeError as exc:
        raise DataError(f"the VLM weights do not match its layers ({str(exc).splitlines()[0]})") from None
    return NaturalnessModel(net, record["arch"], projections, vlm, stats_from_state(record.get("stats", {})),
                            record.get("input_size"), extra_layers, record.get("network"), record.get("config"))


def load_vlm(path: str | Path, weights: str | None = None, device="cpu", extra_layers: Sequence[str] = (),
             allow_other_weights: bool = False) -> NaturalnessModel:
    """Load ``vlm.pt`` (or a training ``checkpoint.pt``) and the backbone it was trained on.

    ``weights`` overrides the recorded backbone file (moved runs); a file with another sha256
    than the recorded one is a UserError unless ``allow_other_weights`` (the projections and
    the language model were fit to that network's features).
    """
    from ..weights.loading import load_network

    record = load_checkpoint(path)
    if "model" in record and record.get("format") != FORMAT:
        record = record["model"]  # a training checkpoint nests the record
    net_info = record.get("network") or {}
    spec = weights or net_info.get("weights")
    if not spec:
        raise DataError(f"{path}: names no backbone weights; pass them explicitly")
    net, info = load_network(spec, num_outputs=net_info.get("num_outputs") if spec == "random" else None,
                             seed=int(net_info.get("seed", 0)), device=device,
                             arch=record.get("arch") if spec == "random" else None)
    if net_info.get("sha256") and info["sha256"] != net_info["sha256"] and not allow_other_weights:
        raise UserError(f"{spec} is not the backbone this VLM was trained on (sha256 {info['sha256'][:12]} vs "
                        f"{str(net_info['sha256'])[:12]}); pass the original weights")
    return model_from_record(record, net, extra_layers).to(device)

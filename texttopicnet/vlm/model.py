"""The CNN-VLM (Kato & Harada 2015): four 2-layer LSTM language models per feature map.

For one layer's projected feature map ``z`` (N, k, H, W), each direction reads every column
(``down``: top to bottom, ``up``: bottom to top) or every row (``right``: left to right,
``left``: right to left) as an independent sequence of k-dim vectors and predicts the NEXT
vector with a 2-layer LSTM (hidden size k) and a linear output (``train_vlm.py``).

- squared error of each prediction, weighted by the linear ramp ``arange(0, 1, 1/L)`` along
  the scan (the first prediction, made from one vector, counts 0; L = H-1 or W-1 predictions);
- the layer's loss is the mean over the four directions of the mean weighted error; the
  model's loss is the mean over layers;
- the unnaturalness map (H-1, W-1) is the sum over directions of the channel-mean weighted
  error, each direction's error cropped to its top-left (H-1) x (W-1) block, as
  ``loss_lm_<layer>_map`` of the release (cell (i, j): the predictions of z[i+1, j] from above,
  of z[i, j] from below, of z[i, j+1] from the left, of z[i, j] from the right).

Initialisation as the release: every weight N(0, 0.01^2), every bias 0.

Use::

    vlm = VLM({"conv5": 128})
    out = vlm(z_by_layer)               # {"loss": scalar, "layers": {name: loss}, "maps": {name: (N, H-1, W-1)}}
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

DIRECTIONS = ("down", "up", "right", "left")  # top->bottom, bottom->top, left->right, right->left
INIT_STD = 0.01  # train_vlm.py: 0.01 * randn for every weight, zero biases


def module_key(layer: str) -> str:
    """A layer name usable as a ModuleDict key (module paths contain dots)."""
    return layer.replace(".", "__")


class DirectionalLM(nn.Module):
    """One direction: a 2-layer LSTM over the scan and a linear prediction of the next vector."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.lstm = nn.LSTM(dim, hidden, num_layers=2)
        self.out = nn.Linear(hidden, dim)
        for name, p in self.named_parameters():
            if name.endswith("bias") or "bias_" in name:
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=INIT_STD)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(T, B, dim) -> (T, B, dim): output t is the prediction of element t+1 from elements 0..t."""
        h, _ = self.lstm(seq)
        return self.out(h)


def scan(lm: DirectionalLM, z: torch.Tensor, direction: str) -> torch.Tensor:
    """Run ``lm`` over ``z`` (N, k, H, W) in ``direction``; the output has z's shape, position-aligned."""
    n, k, h, w = z.shape
    if direction in ("down", "up"):
        seq = z.permute(2, 0, 3, 1).reshape(h, n * w, k)      # time = rows, one sequence per column
    elif direction in ("right", "left"):
        seq = z.permute(3, 0, 2, 1).reshape(w, n * h, k)      # time = columns, one sequence per row
    else:
        raise ValueError(f"unknown direction {direction!r}; use one of {DIRECTIONS}")
    backwards = direction in ("up", "left")
    if backwards:
        seq = seq.flip(0)
    out = lm(seq)
    if backwards:
        out = out.flip(0)
    if direction in ("down", "up"):
        return out.reshape(h, n, w, k).permute(1, 3, 0, 2)
    return out.reshape(w, n, h, k).permute(1, 3, 2, 0)


def ramp(length: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``arange(0, 1, 1/L)``: weight j/L for the prediction made after j+1 vectors."""
    return torch.arange(length, device=device, dtype=dtype) / length


def weighted_errors(z: torch.Tensor, preds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-direction squared prediction errors times the ramp: (N, k, H-1, W) or (N, k, H, W-1)."""
    _, _, h, w = z.shape
    rh, rw = ramp(h - 1, z.device, z.dtype), ramp(w - 1, z.device, z.dtype)
    out = {}
    if "down" in preds:
        out["down"] = (preds["down"][:, :, :-1] - z[:, :, 1:]) ** 2 * rh[None, None, :, None]
    if "up" in preds:
        out["up"] = (preds["up"][:, :, 1:] - z[:, :, :-1]) ** 2 * rh.flip(0)[None, None, :, None]
    if "right" in preds:
        out["right"] = (preds["right"][..., :-1] - z[..., 1:]) ** 2 * rw[None, None, None, :]
    if "left" in preds:
        out["left"] = (preds["left"][..., 1:] - z[..., :-1]) ** 2 * rw.flip(0)[None, None, None, :]
    return out


def unnaturalness_map(errors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(N, H-1, W-1): sum over directions of the channel-mean weighted error (release's cropping)."""
    total = None
    for d, e in errors.items():
        m = e.mean(dim=1)
        m = m[:, :, :-1] if d in ("down", "up") else m[:, :-1, :]
        total = m if total is None else total + m
    return total


class LayerVLM(nn.Module):
    """The four directional language models of one layer."""

    def __init__(self, dim: int, hidden: int | None = None, directions=DIRECTIONS):
        super().__init__()
        self.dim = int(dim)
        self.lms = nn.ModuleDict({d: DirectionalLM(dim, hidden) for d in directions})

    def forward(self, z: torch.Tensor, want_map: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}, H, W), got {tuple(z.shape)}")
        if z.shape[2] < 2 or z.shape[3] < 2:
            raise ValueError(f"a {z.shape[2]}x{z.shape[3]} feature map has nothing to predict (needs >= 2x2)")
        errors = weighted_errors(z, {d: scan(lm, z, d) for d, lm in self.lms.items()})
        loss = torch.stack([e.mean() for e in errors.values()]).mean()
        return loss, (unnaturalness_map(errors) if want_map else None)


class VLM(nn.Module):
    """Per-layer :class:`LayerVLM` (``dims``: layer name -> PCA dimension k, hidden = k)."""

    def __init__(self, dims: Mapping[str, int]):
        super().__init__()
        self.layers = list(dims)
        self.nets = nn.ModuleDict({module_key(n): LayerVLM(int(k)) for n, k in dims.items()})

    def layer(self, name: str) -> LayerVLM:
        return self.nets[module_key(name)]

    def forward(self, z: Mapping[str, torch.Tensor], want_maps: bool = True, weights: Mapping[str, float] | None = None):
        """``loss`` (mean over layers, or the ``weights``-weighted sum), per-layer losses and maps."""
        losses, maps = {}, {}
        for name in self.layers:
            if name not in z:
                continue
            losses[name], maps[name] = self.layer(name)(z[name], want_maps)
        if not losses:
            raise ValueError(f"none of the VLM's layers {self.layers} in the input")
        if weights is None:
            total = torch.stack(list(losses.values())).mean()
        else:
            total = sum(float(weights.get(n, 0.0)) * l for n, l in losses.items())
        return {"loss": total, "layers": losses, "maps": maps if want_maps else {}}

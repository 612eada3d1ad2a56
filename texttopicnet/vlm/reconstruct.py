"""Reconstruction from features with the CNN-VLM as a naturalness prior (``build_reconstructor.py``).

An image ``x`` (in the network's input space) is optimised so that a layer's activation
matches a target ``t``, plus the VLM losses of the conv layers::

    loss = lambda_target * mean(((f(x) - t) / std_f) ** 2) + lambda_vlm * sum_l w_l * VLM_l(x)

``std_f`` is the per-unit std of the target layer over the training images; the release's
weights are lambda = (1, 10) and w = 1, .1, .01, 1e-3, 1e-4 for conv1..conv5 (the ``data``
layer's VLM is not used). ``x`` starts from Gaussian noise with the per-channel mean and std of
the input over the training images; the release ran SGD (lr 2^19, momentum 0.9) for 1,000
iterations on AlexNet's fc8 (1,000 classes). With TextTopicNet the fc8 outputs are topics, so
:func:`one_topic_target` asks "what does topic k look like".

Use::

    model = load_vlm(path, extra_layers=["fc8"])
    result = invert(model, one_topic_target(model, 3), InversionConfig())
    result["frames"]                      # [(iteration, uint8 RGB image), ...]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from ..core.errors import DataError, UserError
from ..networks import backbones
from .features import DATA
from .naturalness import NaturalnessModel

RELEASE_WEIGHTS = {"conv1": 1.0, "conv2": 0.1, "conv3": 0.01, "conv4": 1e-3, "conv5": 1e-4}


@dataclass(frozen=True)
class InversionConfig:
    target_layer: str = "fc8"
    iterations: int = 1000
    optimizer: str = "sgd"
    lr: float = 2.0 ** 19
    momentum: float = 0.9
    lambda_target: float = 1.0
    lambda_vlm: float = 10.0
    layer_weights: Mapping[str, float] = field(default_factory=dict)  # empty: default_layer_weights
    save_every: int = 50
    seed: int = 0


PRESETS = {
    "paper": InversionConfig(),
    # Demo: Adam in pixel units converges in a few hundred steps on a CPU (our option).
    "demo": InversionConfig(iterations=200, optimizer="adam", lr=4.0, save_every=20),
}


def default_layer_weights(layers) -> dict[str, float]:
    """The release's conv1..conv5 weights; other layers (not ``data``) 10^-j by depth order."""
    out, j = {}, 0
    for name in layers:
        if name == DATA:
            continue
        out[name] = RELEASE_WEIGHTS.get(name, 10.0 ** -j)
        j += 1
    return out


def _affine(arch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessing as out = M @ rgb + b per pixel (found by probing it): M (3, 3), b (3,)."""
    probes = np.zeros((4, 1, 1, 3), np.uint8)
    for c in range(3):
        probes[c + 1, 0, 0, c] = 255
    out = backbones.preprocess(arch, torch.from_numpy(probes)).double()[:, :, 0, 0]  # (4, 3)
    b = out[0]
    m = ((out[1:] - b) / 255.0).T  # column c: response to RGB channel c
    return m, b


def deprocess(arch: str, x: torch.Tensor) -> np.ndarray:
    """Network input (1, 3, H, W) -> uint8 RGB (H, W, 3), clipped (the inverse of the preprocessing)."""
    m, b = _affine(arch)
    flat = x.detach().double().cpu()[0].reshape(3, -1)
    rgb = torch.linalg.solve(m, flat - b[:, None]).reshape(3, *x.shape[2:]).permute(1, 2, 0)
    return np.clip(np.rint(rgb.numpy()), 0, 255).astype(np.uint8)


def one_topic_target(model: NaturalnessModel, topic: int, layer: str = "fc8", eps: float = 0.01) -> torch.Tensor:
    """fc8 logits of the topic distribution that puts 1 - eps on ``topic`` and eps elsewhere (sigmoid outputs)."""
    stats = model.stats.get(layer)
    if stats is None:
        raise UserError(f"the VLM file has no statistics of {layer!r}; its layers with statistics: {list(model.stats)}")
    k = int(np.asarray(stats["mean"]).size)
    if not 0 <= topic < k:
        raise UserError(f"topic {topic} out of range: {layer} has {k} outputs")
    if not 0 < eps < 0.5:
        raise UserError("eps must be in (0, 0.5)")
    p = np.full(k, eps)
    p[topic] = 1.0 - eps
    return torch.from_numpy(np.log(p / (1 - p))).float()[None]


@torch.no_grad()
def image_target(model: NaturalnessModel, uint8_image: np.ndarray, layer: str) -> torch.Tensor:
    return model.taps(model.preprocess(uint8_image[None]))[layer].detach()


def invert(model: NaturalnessModel, target: torch.Tensor, cfg: InversionConfig, progress: bool = True,
           on_frame: Callable[[int, np.ndarray], None] | None = None) -> dict:
    """Optimise an image towards ``target``; returns frames, the final image and the loss history."""
    layer = cfg.target_layer
    if layer not in model.taps.layers:
        raise UserError(f"{layer!r} is not tapped; load the VLM with extra_layers=[{layer!r}]")
    stats = model.stats.get(layer)
    if stats is None or DATA not in model.stats:
        raise DataError(f"the VLM file lacks the statistics of {layer!r} or of the input; retrain it")
    device = model.device
    std_t = torch.as_tensor(np.asarray(stats["std"]), dtype=torch.float32, device=device)
    target = target.to(device).float()
    if target.shape[1:] != std_t.shape:
        raise UserError(f"target has shape {tuple(target.shape)}, {layer} has {tuple(std_t.shape)} units")
    weights = dict(cfg.layer_weights) or default_layer_weights(model.layers)
    unknown = sorted(set(weights) - set(model.layers))
    if unknown:
        raise UserError(f"layer weights for {unknown}: not layers of this VLM ({model.layers})")
    mean_in = torch.as_tensor(np.asarray(model.stats[DATA]["mean"]), dtype=torch.float32, device=device)
    std_in = torch.as_tensor(np.asarray(model.stats[DATA]["std"]), dtype=torch.float32, device=device)
    s = model.input_size
    gen = torch.Generator().manual_seed(cfg.seed)
    x0 = torch.randn((1, 3, s, s), generator=gen).to(device) * std_in[None, :, None, None] + mean_in[None, :, None, None]
    x = x0.clone().requires_grad_(True)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD([x], lr=cfg.lr, momentum=cfg.momentum)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=cfg.lr)
    else:
        raise UserError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' (the release) or 'adam'")
    model.vlm.eval()
    frames, history = [], []

    def snapshot(i):
        img = deprocess(model.arch, x)
        frames.append((i, img))
        if on_frame is not None:
            on_frame(i, img)

    snapshot(0)
    for i in tqdm(range(1, cfg.iterations + 1), desc="reconstructing", unit="it", disable=not progress):
        raw = model.taps(x)
        t_loss = (((raw[layer] - target) / std_t) ** 2).mean()
        v_loss = model.vlm(model.project(raw), want_maps=False, weights=weights)["loss"] if weights else x.sum() * 0
        loss = cfg.lambda_target * t_loss + cfg.lambda_vlm * v_loss
        if not torch.isfinite(loss):
            raise DataError(f"the reconstruction loss became {loss.item()} at iteration {i}: lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"iteration": i, "loss": loss.item(), "target_loss": t_loss.item(), "vlm_loss": v_loss.item()})
        if i % max(1, cfg.save_every) == 0 or i == cfg.iterations:
            snapshot(i)
    return {"frames": frames, "image": frames[-1][1], "history": history, "weights": weights}

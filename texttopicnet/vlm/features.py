"""Pre-ReLU feature maps of any backbone, their standardisation and PCA (the CNN-VLM's input).

- :class:`LayerTaps`: forward hooks that copy the output of the named modules (the
  convolutions themselves, so the values are pre-ReLU, whatever in-place ReLU follows) and
  stop the forward pass once the deepest one is captured. Names: ``data`` (the network input,
  as the original's ``data`` layer), the table :data:`PRE_RELU` per architecture (CaffeNet and
  AlexNet ``conv1``..``conv5``, ``fc6``..``fc8``; VGG-16 ``conv{b}_{i}``, ``fc6``..``fc8``), or
  any module path of the network (``layer3``, ``features.28``: that module's output).
- :class:`Projection`: per-channel standardisation (statistics over the training images, as
  ``compute_mean_std.py``: mean of per-image means and mean squares) followed by PCA to
  ceil(C/2) components (``train_pca.py``: sklearn's PCA of standardised samples), folded into
  one fixed 1x1 convolution.
- :func:`fit_statistics`: one pass over the images for both (PCA samples are drawn from each
  image, ``num_samples / n_images + 1`` positions, then standardised with the final statistics).

Use::

    taps = LayerTaps(net, "caffenet", ["conv3", "conv4", "conv5"])
    feats = taps(x)                          # OrderedDict name -> (N, C, H, W) pre-ReLU
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core.errors import UserError

DATA = "data"


def _vgg16_pre_relu() -> dict[str, str]:
    out, idx = {}, 0
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, convs + 1):
            out[f"conv{block}_{i}"] = f"features.{idx}"
            idx += 2
        idx += 1  # the pooling layer
    out.update(fc6="classifier.0", fc7="classifier.3", fc8="classifier.6")
    return out


# Layer name -> module whose output is the pre-ReLU activation, per architecture.
PRE_RELU: dict[str, dict[str, str]] = {
    "caffenet": {n: n for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")},
    "alexnet": {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
                "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"},
    "vgg16": _vgg16_pre_relu(),
}


class _Stop(Exception):
    """Raised by the last hook: nothing after the deepest tapped layer needs computing."""


def resolve(net: nn.Module, arch: str, name: str) -> str | None:
    """The module path tapped for ``name`` (None for ``data``); a UserError lists the choices."""
    if name == DATA:
        return None
    path = PRE_RELU.get(arch, {}).get(name, name)
    modules = dict(net.named_modules())
    if path not in modules or path == "":
        known = [DATA, *PRE_RELU.get(arch, {})]
        raise UserError(f"unknown layer {name!r} for {arch}; use one of {known} or a module path of the network")
    return path


class LayerTaps:
    """Callable ``x -> OrderedDict(name -> activation)``; gradients flow through the taps."""

    def __init__(self, net: nn.Module, arch: str, layers: Sequence[str]):
        if not layers:
            raise UserError("no layer to tap")
        self.net, self.arch, self.layers = net, arch, list(dict.fromkeys(layers))
        self.paths = {n: resolve(net, arch, n) for n in self.layers}
        self._got: dict[str, torch.Tensor] = {}
        self._active = False  # hooks act only inside __call__: other users of the network are unaffected
        self._handles = []
        by_path: dict[str, list[str]] = {}
        for n, p in self.paths.items():
            if p is not None:
                by_path.setdefault(p, []).append(n)
        modules = dict(net.named_modules())
        for path, names in by_path.items():
            self._handles.append(modules[path].register_forward_hook(self._hook(names)))

    def _hook(self, names: list[str]) -> Callable:
        def hook(_module, _inputs, output):
            if not self._active:
                return
            for n in names:
                # A copy: torchvision nets rectify conv outputs in place right after this hook.
                self._got[n] = output.clone()
            if len(self._got) == len(self.layers):
                raise _Stop
        return hook

    def __call__(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        self._got = {}
        if DATA in self.paths:
            self._got[DATA] = x
        if len(self._got) < len(self.layers):
            self._active = True
            try:
                self.net(x)
            except _Stop:
                pass
            finally:
                self._active = False
        missing = [n for n in self.layers if n not in self._got]
        if missing:
            raise UserError(f"layer(s) {missing} were not reached by the forward pass")
        got, self._got = self._got, {}
        return OrderedDict((n, got[n]) for n in self.layers)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def num_components(channels: int) -> int:
    """ceil(C / 2), as train_vlm.py: ``(pca.components_.shape[0] + 1) / 2``."""
    return (int(channels) + 1) // 2


class Projection(nn.Module):
    """Standardise per channel, subtract the PCA mean, project on the first components: one 1x1 conv."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, pca_mean: torch.Tensor, components: torch.Tensor):
        super().__init__()
        for name, t in (("mean", mean), ("std", std), ("pca_mean", pca_mean), ("components", components)):
            self.register_buffer(name, torch.as_tensor(t, dtype=torch.float32).clone())

    @property
    def in_channels(self) -> int:
        return int(self.mean.numel())

    @property
    def out_channels(self) -> int:
        return int(self.components.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # W ((x - m) / s - p) = (W / s) x - W (m / s + p)
        w = self.components / self.std[None, :]
        b = -(self.components @ (self.mean / self.std + self.pca_mean))
        return torch.nn.functional.conv2d(x, w[:, :, None, None].to(x.dtype), b.to(x.dtype))


def pca_from_samples(samples: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, first ``k`` principal axes as rows, by decreasing variance) of ``samples`` (n, C)."""
    x = np.asarray(samples, dtype=np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False, bias=False) if x.shape[0] > 1 else np.zeros((x.shape[1],) * 2)
    cov = np.atleast_2d(cov)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    return mean, vecs[:, order].T


class StatsAccumulator:
    """Per-channel mean/std (mean over images of per-image means and mean squares) and PCA samples."""

    def __init__(self, samples_per_image: int, rng: np.random.Generator):
        self.spi, self.rng = int(samples_per_image), rng
        self.means: dict[str, list[np.ndarray]] = {}
        self.squares: dict[str, list[np.ndarray]] = {}
        self.samples: dict[str, list[np.ndarray]] = {}

    def add(self, feats: dict[str, torch.Tensor], sample: Iterable[str]) -> None:
        sample = set(sample)
        for name, t in feats.items():
            a = t.detach().double()
            dims = (2, 3) if a.dim() == 4 else ()
            m = a.mean(dim=dims) if dims else a
            q = (a * a).mean(dim=dims) if dims else a * a
            self.means.setdefault(name, []).append(m.cpu().numpy())
            self.squares.setdefault(name, []).append(q.cpu().numpy())
            if name in sample and a.dim() == 4:
                n, c, h, w = a.shape
                flat = a.permute(0, 2, 3, 1).reshape(n, h * w, c).cpu().numpy()
                for img in flat:  # as train_pca.py: random positions, with replacement, per image
                    pick = img[self.rng.integers(0, h * w, self.spi)]
                    self.samples.setdefault(name, []).append(pick.astype(np.float32))

    def mean_std(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mean = np.concatenate(self.means[name]).mean(axis=0)
        var = np.concatenate(self.squares[name]).mean(axis=0) - mean ** 2
        std = np.sqrt(np.clip(var, 0.0, None))
        # A dead channel (constant over every image) would divide by zero: leave it unscaled.
        return mean, np.where(std > 1e-12, std, 1.0)

    def projection(self, name: str, dims: int = 0) -> Projection:
        mean, std = self.mean_std(name)
        x = (np.concatenate(self.samples[name]) - mean) / std
        k = num_components(mean.size) if dims <= 0 else min(int(dims), mean.size)
        pmean, comps = pca_from_samples(x, k)
        return Projection(torch.from_numpy(mean), torch.from_numpy(std), torch.from_numpy(pmean),
                          torch.from_numpy(comps))


@torch.no_grad()
def fit_statistics(taps: LayerTaps, batches: Iterable[torch.Tensor], n_images: int, vlm_layers: Sequence[str],
                   num_samples: int = 100_000, seed: int = 0, progress: bool = True, pca_dims: int = 0) -> dict:
    """Projections for ``vlm_layers`` and per-unit mean/std of every tapped layer, in one pass.

    ``pca_dims`` > 0 keeps that many components instead of the release's ceil(C/2) (faster, our option).

    Returns ``{"projections": {name: Projection}, "stats": {name: {"mean", "std"}}}`` (numpy).
    """
    acc = StatsAccumulator(num_samples // max(1, n_images) + 1, np.random.default_rng(seed))
    for x in tqdm(batches, desc="VLM statistics", unit="batch", disable=not progress):
        acc.add(taps(x), vlm_layers)
    if not acc.means:
        raise UserError("no image to compute the feature statistics from")
    stats = {}
    for name in acc.means:
        mean, std = acc.mean_std(name)
        stats[name] = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    return {"projections": {n: acc.projection(n, pca_dims) for n in vlm_layers}, "stats": stats}

"""CaffeNet exactly as TextTopicNet published it (BVLC reference CaffeNet, 40 sigmoid outputs).

Layer names and parameter names map one-to-one to the Caffe layer names
(``conv1.weight`` <- blob 0 of Caffe layer ``conv1``, ``conv1.bias`` <- blob 1, ...),
so a converted ``.caffemodel`` loads with ``load_state_dict(strict=True)``.

Input convention (matches the published weights): float pixels in 0..255, **BGR**
channel order, per-channel mean (B, G, R) = (104.00699, 116.66877, 122.67892)
subtracted, 227x227. Use :func:`preprocess_uint8` to go from uint8 RGB batches.

Example::

    net = CaffeNet(num_outputs=40)
    feats = net.extract(x, ["pool5", "fc7", "prob"])  # dict of tensors
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

import torch
from torch import nn

# ImageNet mean of the BVLC CaffeNet, in BGR order (REFERENCE.md, Stage 3).
MEAN_BGR = (104.00699, 116.66877, 122.67892)
CROP = 227
RESIZE = 256

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7", "fc8")
# Every name accepted by CaffeNet.extract, in forward order.
FEATURE_LAYERS = CONV_LAYERS + ("pool5",) + FC_LAYERS + ("prob",)


def _lrn() -> nn.LocalResponseNorm:
    # Caffe LRN (ACROSS_CHANNELS): x / (1 + alpha/n * sum x^2)^beta; torch divides alpha by n too.
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


def _pool() -> nn.MaxPool2d:
    # Caffe rounds pooled sizes up; at 227 px input floor and ceil agree, elsewhere ceil matches Caffe.
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class CaffeNet(nn.Module):
    """BVLC CaffeNet with a ``num_outputs``-way fc8 (40 topics by default, as the paper).

    ``forward`` returns fc8 logits (train with ``BCEWithLogitsLoss`` against the
    topic distribution: Caffe's SigmoidCrossEntropyLoss); ``prob`` is their sigmoid.
    """

    def __init__(self, num_outputs: int = 40, dropout: float = 0.5):
        super().__init__()
        self.num_outputs = num_outputs
        self.conv1 = nn.Conv2d(3, 96, kernel_size=11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_outputs)
        self.pool1, self.pool2, self.pool5 = _pool(), _pool(), _pool()
        self.norm1, self.norm2 = _lrn(), _lrn()
        self.relu = nn.ReLU(inplace=False)
        self.drop6 = nn.Dropout(dropout)
        self.drop7 = nn.Dropout(dropout)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The published initialisation (train_val.prototxt of the original release)."""
        bias_one = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        std = {"fc6": 0.005, "fc7": 0.005}
        for name in CONV_LAYERS + FC_LAYERS:
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, mean=0.0, std=std.get(name, 0.01))
            nn.init.constant_(layer.bias, 1.0 if name in bias_one else 0.0)

    def replace_head(self, num_outputs: int) -> None:
        """New fc8 with ``num_outputs`` (e.g. 20 VOC classes for fine-tuning), published init."""
        self.fc8 = nn.Linear(4096, num_outputs).to(self.fc7.weight.device)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)
        self.num_outputs = num_outputs

    def _stages(self):
        # (name, function) in forward order; 'pool5' output is flattened before fc6.
        r = self.relu
        yield "conv1", lambda x: self.norm1(self.pool1(r(self.conv1(x))))
        yield "conv2", lambda x: self.norm2(self.pool2(r(self.conv2(x))))
        yield "conv3", lambda x: r(self.conv3(x))
        yield "conv4", lambda x: r(self.conv4(x))
        yield "conv5", lambda x: r(self.conv5(x))
        yield "pool5", self.pool5
        yield "fc6", lambda x: self.drop6(r(self.fc6(torch.flatten(x, 1))))
        yield "fc7", lambda x: self.drop7(r(self.fc7(x)))
        yield "fc8", self.fc8
        yield "prob", torch.sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, fn in self._stages():
            if name == "prob":
                break
            x = fn(x)
        return x

    def extract(self, x: torch.Tensor, layers: Iterable[str]) -> "OrderedDict[str, torch.Tensor]":
        """Activations of the named layers (post-ReLU; conv1/conv2 after pool+LRN; fc6/fc7 after
        ReLU, and after dropout only in train mode). Stops at the deepest layer asked for."""
        wanted = list(layers)
        unknown = [n for n in wanted if n not in FEATURE_LAYERS]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; choose from {list(FEATURE_LAYERS)}")
        out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        last = max(FEATURE_LAYERS.index(n) for n in wanted)
        for i, (name, fn) in enumerate(self._stages()):
            x = fn(x)
            if name in wanted:
                out[name] = x
            if i == last:
                break
        return OrderedDict((n, out[n]) for n in wanted)


_MEAN_CACHE: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def mean_bgr_tensor(device=None, dtype=torch.float32) -> torch.Tensor:
    """The mean as a (1, 3, 1, 1) tensor on ``device``, built once per (device, dtype).

    Building it from the Python tuple is a host-to-device copy that waits for the GPU;
    cached, a training step never pays it. The tensor is shared: never modify it in place.
    """
    key = (torch.device(device) if device is not None else torch.device("cpu"), dtype)
    mean = _MEAN_CACHE.get(key)
    if mean is None:
        mean = _MEAN_CACHE[key] = torch.tensor(MEAN_BGR, device=key[0], dtype=dtype).view(1, 3, 1, 1)
    return mean


def preprocess_uint8(batch: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 RGB batch (N, H, W, 3) or (N, 3, H, W) -> float BGR, mean-subtracted, (N, 3, H, W).

    Pixels stay in 0..255 (no division), as the published weights expect.
    """
    if batch.dim() != 4:
        raise ValueError(f"expected a 4-D batch, got shape {tuple(batch.shape)}")
    if batch.shape[-1] == 3 and batch.shape[1] != 3:
        batch = batch.permute(0, 3, 1, 2)
    x = batch.flip(1).to(dtype)  # RGB -> BGR
    return x - mean_bgr_tensor(x.device, dtype)


def param_groups(model: nn.Module, weight_decay: float = 5e-4, base_lr: float = 1e-3) -> list[dict]:
    """Caffe's solver settings: weights get ``weight_decay``; biases get lr x2 and no decay."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (biases if name.endswith("bias") else weights).append(p)
    return [
        {"params": weights, "lr": base_lr, "weight_decay": weight_decay, "lr_mult": 1.0},
        {"params": biases, "lr": 2 * base_lr, "weight_decay": 0.0, "lr_mult": 2.0},
    ]

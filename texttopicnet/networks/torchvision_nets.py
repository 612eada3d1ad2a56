"""torchvision backbones for the registry: AlexNet, VGG-16, ResNet-50, DenseNet-161, GoogLeNet.

Every model here is torchvision's own module with its own parameter names, so a
state dict saved with ``torch.save(model.state_dict())`` from torchvision loads as is
(the way users bring ImageNet weights: nothing is downloaded, ``weights=None`` always).
Only the classifier is ours: the body is built with torchvision's initialisation and
its 1000-way ImageNet classifier, then that classifier is replaced by a
``num_outputs``-way linear layer drawn last (N(0, 0.01^2) weights, zero bias: the
initialisation CaffeNet's fc8 uses), so the body's random weights do not depend on the
number of outputs.

Input convention (torchvision's ImageNet models): RGB, pixels / 255, minus the ImageNet
mean and divided by its std per channel, 224x224 crops of a 256 warp.

Layer names are torchvision's FX graph node names
(``torchvision.models.feature_extraction.get_graph_node_names``), plus the short aliases
defined here (``pool5``, ``fc7``, ``relu5_1``, ``avgpool``, ``logits`` ...).
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP = 224
RESIZE = 256
IMAGENET_CLASSES = 1000  # built with torchvision's classifier first, then replaced (see module doc)


def imagenet_preprocess_uint8(batch: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 RGB batch (N, H, W, 3) or (N, 3, H, W) -> float RGB, /255, ImageNet mean/std, (N, 3, H, W)."""
    if batch.dim() != 4:
        raise ValueError(f"expected a 4-D batch, got shape {tuple(batch.shape)}")
    if batch.shape[-1] == 3 and batch.shape[1] != 3:
        batch = batch.permute(0, 3, 1, 2)
    x = batch.to(dtype) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def get_module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def new_linear_head(in_features: int, num_outputs: int, like: nn.Parameter | None = None) -> nn.Linear:
    """A fresh ``num_outputs``-way head: N(0, 0.01^2) weights, zero bias (CaffeNet's fc8 init)."""
    factory = {} if like is None else {"device": like.device, "dtype": like.dtype}
    head = nn.Linear(in_features, num_outputs, **factory)
    with torch.no_grad():
        nn.init.normal_(head.weight, mean=0.0, std=0.01)
        nn.init.zeros_(head.bias)
    return head


def _with_head(model: nn.Module, head_path: str, num_outputs: int) -> nn.Module:
    old = get_module(model, head_path)
    set_module(model, head_path, new_linear_head(old.in_features, num_outputs, like=old.weight))
    return model


def _vgg16_aliases() -> dict[str, str]:
    """conv{b}_{i} (pre-ReLU), relu{b}_{i}, pool{b} -> torchvision's ``features.<index>``."""
    cfg = [2, 2, 3, 3, 3]  # convolutions per block of VGG-16
    out, idx = {}, 0
    for block, convs in enumerate(cfg, start=1):
        for i in range(1, convs + 1):
            out[f"conv{block}_{i}"] = f"features.{idx}"
            out[f"relu{block}_{i}"] = f"features.{idx + 1}"
            idx += 2
        out[f"pool{block}"] = f"features.{idx}"
        idx += 1
    out.update({"fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"})
    return out


# --- factories: (num_outputs, **options) -> model with a num_outputs-way head -------------------------

def alexnet(num_outputs: int, dropout: float = 0.5) -> nn.Module:
    from torchvision.models import alexnet as tv

    return _with_head(tv(weights=None, num_classes=IMAGENET_CLASSES, dropout=dropout), "classifier.6", num_outputs)


def vgg16(num_outputs: int, dropout: float = 0.5) -> nn.Module:
    from torchvision.models import vgg16 as tv

    return _with_head(tv(weights=None, num_classes=IMAGENET_CLASSES, dropout=dropout), "classifier.6", num_outputs)


def resnet50(num_outputs: int) -> nn.Module:
    from torchvision.models import resnet50 as tv

    return _with_head(tv(weights=None, num_classes=IMAGENET_CLASSES), "fc", num_outputs)


def densenet161(num_outputs: int) -> nn.Module:
    from torchvision.models import densenet161 as tv

    return _with_head(tv(weights=None, num_classes=IMAGENET_CLASSES), "classifier", num_outputs)


def googlenet(num_outputs: int, dropout: float = 0.2, transform_input: bool = False) -> nn.Module:
    """GoogLeNet without the auxiliary classifiers (the search demo trained the main head only).

    ``transform_input=True`` re-normalises ImageNet-normalised input to the (x - 0.5) / 0.5
    range torchvision's ImageNet GoogLeNet weights were trained on; it is what
    torchvision sets whenever it loads those weights, so a torchvision ``.pth`` loads with it.
    """
    from torchvision.models import googlenet as tv

    net = tv(weights=None, num_classes=IMAGENET_CLASSES, aux_logits=False, init_weights=True,
             transform_input=transform_input, dropout=dropout)
    return _with_head(net, "fc", num_outputs)


# --- legacy keys in torchvision's own DenseNet files ---------------------------------------------------

def rename_legacy_densenet_keys(sd: dict) -> tuple[dict, int]:
    """torchvision's published DenseNet files name ``denselayerN.norm.1.weight`` what the module calls
    ``denselayerN.norm1.weight`` (dots are no longer allowed in module names). Returns the renamed dict
    and how many keys changed; torchvision applies the same rename when it loads those files."""
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var"
                         r"|num_batches_tracked))$")
    out, changed = {}, 0
    for key, value in sd.items():
        m = pattern.match(key)
        if m:
            key, changed = m.group(1) + m.group(2), changed + 1
        out[key] = value
    return out, changed

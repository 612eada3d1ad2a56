"""The backbone registry: every network the toolkit trains, evaluates or loads, by name.

``caffenet`` is the paper's network (default, unchanged); ``alexnet``, ``vgg16``,
``resnet50``, ``densenet161`` and ``googlenet`` are torchvision's (random init only: ImageNet
weights come from a ``.pth`` the user has, see :mod:`texttopicnet.weights.loading`). Each
entry declares what the rest of the code needs to know:

- ``crop`` / ``resize`` / ``min_input``: the square input it expects (a ``crop`` crop of a
  ``resize`` warp) and the smallest side its forward pass accepts;
- ``preprocess``: uint8 RGB -> network input (CaffeNet: BGR minus the Caffe mean, 0..255;
  torchvision: /255 then ImageNet mean/std);
- ``head``: the module path of the ``num_outputs``-way linear output layer (``fc8``, ``fc``,
  ``classifier``, ``classifier.6``), and ``gap_head`` when it sits on global average
  pooling (ResNet, DenseNet, GoogLeNet: class activation maps come for free);
- ``feature_layers`` (recommended), ``default_layers`` (for the SVM), ``aliases`` and
  ``cam_layer``; extraction and freezing by name are in :mod:`texttopicnet.networks.layers`.

Usage::

    from texttopicnet.networks import backbones
    net = backbones.build("resnet50", num_outputs=40, seed=0)
    spec = backbones.spec_of(net)            # or backbones.get("resnet50")
    x = spec.preprocess(uint8_batch)         # (N, 3, 224, 224) float
    feats = backbones.extract(net, x, ["layer4", "avgpool"])
    opt = torch.optim.SGD(backbones.param_groups(net, 5e-4, 1e-3), lr=1e-3, momentum=0.9)

Adding a backbone: write a factory ``(num_outputs, **options) -> nn.Module`` and
:func:`register` a :class:`Backbone`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.errors import UserError
from . import caffenet as _caffenet
from . import torchvision_nets as _tv

DEFAULT_ARCH = "caffenet"
_ATTR = "texttopicnet_arch"  # attribute a built model carries: {"arch": name, "options": {...}}


@dataclass(frozen=True)
class Backbone:
    name: str
    description: str
    factory: Callable[..., nn.Module]    # (num_outputs, **options) -> model with a num_outputs-way head
    head: str                            # module path of the output linear layer
    crop: int
    resize: int
    min_input: int
    preprocess: Callable[..., torch.Tensor]
    input_convention: str
    feature_layers: tuple[str, ...]      # recommended layer names (aliases or graph nodes)
    default_layers: tuple[str, ...]      # the SVM stage's default
    gap_head: bool
    cam_layer: str | None
    aliases: Mapping[str, str] = field(default_factory=dict)   # short name -> node / module name
    options: Mapping[str, Any] = field(default_factory=dict)   # option -> default value

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise UserError(f"{self.name} has no option(s) {unknown}; its options are "
                            f"{dict(self.options) or 'none'}")
        return {**self.options, **given}


_REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    if backbone.name in _REGISTRY:
        raise ValueError(f"backbone {backbone.name!r} is already registered")
    _REGISTRY[backbone.name] = backbone
    return backbone


def names() -> list[str]:
    """Registered architectures, in registration order (``caffenet`` first)."""
    return list(_REGISTRY)


def get(arch: str) -> Backbone:
    try:
        return _REGISTRY[arch]
    except KeyError:
        raise UserError(f"unknown architecture {arch!r}; choose from {names()}") from None


# --- building -----------------------------------------------------------------------------------

def _caffenet_factory(num_outputs: int, dropout: float = 0.5) -> nn.Module:
    return _caffenet.CaffeNet(num_outputs=num_outputs, dropout=dropout)


def build(arch: str = DEFAULT_ARCH, num_outputs: int = 40, *, seed: int | None = None, **options) -> nn.Module:
    """A freshly initialised ``arch`` with a ``num_outputs``-way head, in train mode.

    ``seed=None`` draws from the global torch RNG (the training loop seeds it first:
    ``build("caffenet", k, dropout=d)`` is exactly ``CaffeNet(k, d)``). With a seed the
    weights are a function of the seed alone and the global RNG is left untouched; for
    CaffeNet that is the paper's initialisation re-drawn from the seed (as the "random"
    baseline always was), for torchvision nets torchvision's initialisation under
    ``torch.manual_seed(seed)``. Either way the body's weights do not depend on ``num_outputs``.
    """
    spec = get(arch)
    opts = spec.resolve_options(options)
    if int(num_outputs) < 1:
        raise UserError(f"num_outputs must be positive, got {num_outputs}")
    if seed is None:
        model = spec.factory(int(num_outputs), **opts)
    else:
        with torch.random.fork_rng(devices=[]):
            if arch == "caffenet":
                model = spec.factory(int(num_outputs), **opts)
                # conv1..fc7 are drawn before fc8 in reset_parameters: features independent of k.
                torch.manual_seed(seed)
                model.reset_parameters()
            else:
                torch.manual_seed(seed)
                model = spec.factory(int(num_outputs), **opts)
    if arch != "caffenet":  # CaffeNet is recognised by its class (its files predate the registry)
        setattr(model, _ATTR, {"arch": arch, "options": opts})
    return model


def arch_of(model: nn.Module) -> str:
    if isinstance(model, _caffenet.CaffeNet):
        return "caffenet"
    record = getattr(model, _ATTR, None)
    if not record:
        raise UserError(f"{type(model).__name__} was not built by texttopicnet.networks.backbones.build")
    return record["arch"]


def spec_of(model: nn.Module) -> Backbone:
    return get(arch_of(model))


def head_of(model: nn.Module) -> nn.Linear:
    return model.get_submodule(spec_of(model).head)


def describe(model: nn.Module) -> dict:
    """What a checkpoint or an exported file records so that loading needs no flag:
    ``{"arch": ..., "num_outputs": ..., "options": {...}}`` (plain JSON types)."""
    arch = arch_of(model)
    if arch == "caffenet":
        options = {"dropout": float(model.drop6.p)}
    else:
        options = dict(getattr(model, _ATTR)["options"])
    return {"arch": arch, "num_outputs": int(head_of(model).out_features), "options": options}


def export_metadata(model: nn.Module) -> dict[str, str]:
    """The ``.safetensors`` header for an exported state dict: ONE key, so the same weights always
    give the same bytes (safetensors writes several keys in a random order). CaffeNet keeps its
    historical ``{"num_outputs": K}`` (files and checksums unchanged); other architectures write
    ``{"arch": <describe() as sorted JSON>}``."""
    record = describe(model)
    if record["arch"] == "caffenet":
        return {"num_outputs": str(record["num_outputs"])}
    return {"arch": json.dumps(record, sort_keys=True, separators=(",", ":"))}


def replace_head(model: nn.Module, num_outputs: int, seed: int | None = None) -> nn.Module:
    """New ``num_outputs``-way head (N(0, 0.01^2) weights, zero bias), drawn from ``seed`` without
    touching the global RNG (or from the global RNG when ``seed`` is None). For CaffeNet this is
    ``CaffeNet.replace_head`` (the fine-tuning stage's new fc8, unchanged)."""
    if int(num_outputs) < 1:
        raise UserError(f"num_outputs must be positive, got {num_outputs}")
    spec = spec_of(model)

    def swap():
        if spec.name == "caffenet":
            model.replace_head(int(num_outputs))
        else:
            old = head_of(model)
            _tv.set_module(model, spec.head, _tv.new_linear_head(old.in_features, int(num_outputs), like=old.weight))

    if seed is None:
        swap()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            swap()
    return model


def preprocess(model_or_arch: nn.Module | str, batch: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) or (N, 3, H, W) -> the input ``model_or_arch`` expects."""
    spec = get(model_or_arch) if isinstance(model_or_arch, str) else spec_of(model_or_arch)
    return spec.preprocess(batch, dtype=dtype)


# --- solver parameter groups --------------------------------------------------------------------

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def param_groups(model: nn.Module, weight_decay: float = 5e-4, base_lr: float = 1e-3,
                 head_lr_mult: float = 1.0) -> list[dict]:
    """Parameter groups with the paper's solver semantics, for any registered backbone.

    - weights of convolutions and linear layers: lr x1, weight decay (``decay_mult`` 1);
    - their biases: lr x2, no decay (Caffe's convention, the paper's solver; also the
      bvlc_googlenet solver the search demo fine-tuned);
    - scales and shifts of normalisation layers (BatchNorm in ResNet/DenseNet/GoogLeNet):
      lr x1, no decay (our choice: Caffe's BatchNorm has no learned parameters, and decaying
      BN scales towards 0 is the usual thing to avoid);
    - with ``head_lr_mult`` != 1 the head's parameters get their own groups, lr multiplied
      (fine-tuning: 10, Caffe's convention).

    Frozen parameters (``requires_grad`` False) are left out and empty groups dropped.
    Each group carries ``lr_mult`` and ``decay_mult`` so a schedule can be re-applied after a
    resume. For CaffeNet with ``head_lr_mult`` 1 the groups are exactly
    :func:`texttopicnet.networks.caffenet.param_groups`'s (same parameters, order, lr, decay).
    """
    head_prefix = spec_of(model).head + "."
    owners = dict(model.named_modules())
    buckets: dict[tuple[bool, str], list[nn.Parameter]] = {}
    order = [(h, k) for h in (False, True) for k in ("weight", "bias", "norm")]
    for key in order:
        buckets[key] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner, _, pname = name.rpartition(".")
        if isinstance(owners.get(owner), _NORMS):
            kind = "norm"
        else:
            kind = "bias" if pname == "bias" else "weight"
        is_head = head_lr_mult != 1.0 and name.startswith(head_prefix)
        buckets[(is_head, kind)].append(p)
    lr_mult = {"weight": 1.0, "bias": 2.0, "norm": 1.0}
    decay_mult = {"weight": 1.0, "bias": 0.0, "norm": 0.0}
    groups = []
    for (is_head, kind) in order:
        params = buckets[(is_head, kind)]
        if not params:
            continue
        mult = lr_mult[kind] * (head_lr_mult if is_head else 1.0)
        groups.append({"params": params, "lr": base_lr * mult, "weight_decay": weight_decay * decay_mult[kind],
                       "lr_mult": mult, "decay_mult": decay_mult[kind]})
    return groups


# --- the registry ---------------------------------------------------------------------------------

_TV = {"crop": _tv.CROP, "resize": _tv.RESIZE, "preprocess": _tv.imagenet_preprocess_uint8,
       "input_convention": "RGB, pixels/255, ImageNet mean/std per channel, 224 crop of a 256 warp"}

register(Backbone(
    name="caffenet", description="BVLC CaffeNet with Caffe layer names (the paper's network)",
    factory=_caffenet_factory, head="fc8", crop=_caffenet.CROP, resize=_caffenet.RESIZE, min_input=_caffenet.CROP,
    preprocess=_caffenet.preprocess_uint8,
    input_convention="BGR, 0..255 minus the Caffe ImageNet mean, 227 crop of a 256 warp",
    feature_layers=_caffenet.FEATURE_LAYERS, default_layers=("pool5", "fc6", "fc7"), gap_head=False,
    cam_layer=None, aliases={"logits": "fc8"}, options={"dropout": 0.5}))

register(Backbone(
    name="alexnet", description="torchvision AlexNet (one-tower, no LRN)", factory=_tv.alexnet,
    head="classifier.6", min_input=63, **_TV,
    feature_layers=("pool5", "fc6", "fc7", "logits"), default_layers=("pool5", "fc6", "fc7"), gap_head=False,
    cam_layer=None,
    aliases={"conv1": "features.2", "conv2": "features.5", "conv3": "features.7", "conv4": "features.9",
             "conv5": "features.11", "pool5": "features.12", "fc6": "classifier.2", "fc7": "classifier.5",
             "fc8": "classifier.6", "logits": "classifier.6"},
    options={"dropout": 0.5}))

register(Backbone(
    name="vgg16", description="torchvision VGG-16 (no batch norm)", factory=_tv.vgg16,
    head="classifier.6", min_input=32, **_TV,
    feature_layers=("relu5_1", "relu5_3", "pool5", "fc6", "fc7", "logits"), default_layers=("pool5", "fc6", "fc7"),
    gap_head=False, cam_layer="relu5_3",
    aliases={**_tv._vgg16_aliases(), "fc6": "classifier.1", "fc7": "classifier.4", "logits": "classifier.6"},
    options={"dropout": 0.5}))

register(Backbone(
    name="resnet50", description="torchvision ResNet-50", factory=_tv.resnet50, head="fc", min_input=32, **_TV,
    feature_layers=("layer3", "layer4", "avgpool", "logits"), default_layers=("avgpool",), gap_head=True,
    cam_layer="layer4", aliases={"logits": "fc"}))

register(Backbone(
    name="densenet161", description="torchvision DenseNet-161", factory=_tv.densenet161, head="classifier",
    min_input=32, **_TV,
    feature_layers=("features.denseblock3", "norm5", "relu5", "avgpool", "logits"), default_layers=("avgpool",),
    gap_head=True, cam_layer="relu5",
    aliases={"norm5": "features.norm5", "relu5": "relu", "avgpool": "adaptive_avg_pool2d", "logits": "classifier"}))

register(Backbone(
    name="googlenet", description="torchvision GoogLeNet (Inception v1) without auxiliary classifiers",
    factory=_tv.googlenet, head="fc", min_input=32, **_TV,
    feature_layers=("inception4d", "inception4e", "inception5b", "avgpool", "logits"), default_layers=("avgpool",),
    gap_head=True, cam_layer="inception5b", aliases={"logits": "fc"},
    options={"dropout": 0.2, "transform_input": False}))

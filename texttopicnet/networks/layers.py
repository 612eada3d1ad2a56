"""Layers by name for any registered backbone: feature extraction, freezing, train mode.

Names
-----
- CaffeNet: its Caffe layer names (``conv1`` .. ``conv5``, ``pool5``, ``fc6``, ``fc7``, ``fc8``,
  ``prob``; see :data:`texttopicnet.networks.caffenet.FEATURE_LAYERS`) plus ``logits`` (= ``fc8``).
- torchvision nets: every node name of ``torchvision.models.feature_extraction.get_graph_node_names``
  in eval mode (``features.norm5``, ``classifier.4``, ``layer4.2.relu_2`` ...) and every module path
  above one (``layer4``, ``inception4d``: the output of the last node inside it), the short
  aliases of the registry (``pool5``, ``fc7``, ``relu5_1``, ``avgpool``, ``logits`` ...), and
  ``prob`` (sigmoid of the logits, what the paper's retrieval uses).

Extraction returns the activations keyed by the names asked for, in that order, unflattened.
For torchvision nets it runs ``create_feature_extractor`` (a traced copy sharing the model's
parameters), which stops after the deepest layer asked for, as CaffeNet's own path does.

Freezing (``freeze_until``) takes module names: for CaffeNet its layers in forward order
(``conv1`` .. ``conv5``, ``pool5``, ``fc6``, ``fc7``, ``fc8``); for torchvision nets any name of
``model.named_modules()`` (``inception4d``, ``layer3``, ``features.denseblock2``, ``features.23``)
or an alias that names a module (``pool4``, ``relu5_1`` ...). Every parameter of that module and
of every module before it (in ``named_modules()`` order, which is forward order for these nets)
stops learning; BatchNorm layers among them keep their running statistics when
:func:`train_mode` is used instead of ``model.train()``.

Example::

    from texttopicnet.networks import layers
    frozen = layers.freeze_until(net, "inception4d")     # the search demo's GoogLeNet setting
    run = layers.FeatureExtractor(net, ["inception5b", "avgpool"])
    feats = run(x)                                        # OrderedDict name -> tensor
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..core.errors import UserError
from . import backbones

_NODE_CACHE: dict[str, list[str]] = {}
_FROZEN_ATTR = "texttopicnet_frozen"  # (layer name, frozen module names) set by freeze_until


def _graph_nodes(model: nn.Module) -> list[str]:
    """Eval-mode FX node names (traced once per architecture and options, then cached)."""
    record = backbones.describe(model)
    key = json.dumps({"arch": record["arch"], "options": record["options"]}, sort_keys=True)
    if key not in _NODE_CACHE:
        from torchvision.models.feature_extraction import get_graph_node_names

        _, eval_nodes = get_graph_node_names(model)
        _NODE_CACHE[key] = list(eval_nodes)
    return _NODE_CACHE[key]


def _accepted_nodes(model: nn.Module) -> list[str]:
    """Graph nodes plus every module path above them (``layer4`` = the last node inside ``layer4``,
    the shorthand ``create_feature_extractor`` accepts)."""
    nodes = _graph_nodes(model)
    out = dict.fromkeys(nodes)
    for n in nodes:
        parts = n.split(".")
        for i in range(1, len(parts)):
            out.setdefault(".".join(parts[:i]))
    return list(out)


def layer_names(model: nn.Module) -> list[str]:
    """Every name :class:`FeatureExtractor` accepts for ``model`` (aliases first)."""
    spec = backbones.spec_of(model)
    if spec.name == "caffenet":
        from .caffenet import FEATURE_LAYERS

        return list(spec.aliases) + list(FEATURE_LAYERS)
    return list(spec.aliases) + ["prob"] + _accepted_nodes(model)


def _unknown(spec, bad: list[str], hint: Sequence[str]) -> UserError:
    return UserError(f"unknown layer(s) {bad} for {spec.name}; recommended: {list(spec.feature_layers)}; "
                     f"also accepted: {list(hint)}")


def _clone_outputs(graph) -> None:
    """Return a copy of each requested activation, taken as soon as it is computed.

    torchvision's nets run in-place ReLUs (``nn.ReLU(inplace=True)``, ``F.relu(..., inplace=True)``):
    without the copy, DenseNet's ``features.norm5`` or VGG's pre-ReLU ``conv5_3`` would come back
    already rectified by a later node.
    """
    from torch.fx.node import map_arg

    output = next(n for n in graph.nodes if n.op == "output")
    copies = {}

    def copy_of(node):
        if node not in copies:
            with graph.inserting_after(node):
                copies[node] = graph.call_method("clone", (node,))
        return copies[node]

    output.args = tuple(map_arg(a, copy_of) for a in output.args)
    graph.lint()


class FeatureExtractor:
    """Callable ``x -> OrderedDict(name -> activation)`` for the named layers of ``model``.

    Build it once per (model, layers) and call it per batch; the model's train/eval mode
    is followed at each call. The traced graph holds the model's modules: build a new one
    after replacing the head.
    """

    def __init__(self, model: nn.Module, layers: Iterable[str]):
        self.model = model
        self.layers = list(layers)
        if not self.layers:
            raise UserError("no layer asked for")
        spec = backbones.spec_of(model)
        self.spec = spec
        if spec.name == "caffenet":
            from .caffenet import FEATURE_LAYERS

            self._real = [spec.aliases.get(n, n) for n in self.layers]
            bad = [n for n, r in zip(self.layers, self._real) if r not in FEATURE_LAYERS]
            if bad:
                raise _unknown(spec, bad, list(spec.aliases) + list(FEATURE_LAYERS))
            self._graph = None
            return
        nodes = set(_accepted_nodes(model))
        head_node = spec.head
        self._real = []
        bad = []
        for n in self.layers:
            real = head_node if n == "prob" else spec.aliases.get(n, n)
            if real not in nodes:
                bad.append(n)
            self._real.append(real)
        if bad:
            raise _unknown(spec, bad, list(spec.aliases) + ["prob", "(any node of get_graph_node_names)"])
        from torchvision.models.feature_extraction import create_feature_extractor

        wanted = list(dict.fromkeys(self._real))  # unique, in order
        self._graph = create_feature_extractor(model, return_nodes={n: n for n in wanted})
        for graph in (self._graph.train_graph, self._graph.eval_graph):
            _clone_outputs(graph)
        self._graph.recompile()
        if model.training:  # tracing reset every shared module's mode: frozen BatchNorms back to eval
            train_mode(model)

    def __call__(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if self._graph is None:  # CaffeNet: its own path (stops at the deepest layer asked for)
            got = self.model.extract(x, list(dict.fromkeys(self._real)))
            return OrderedDict((n, got[r]) for n, r in zip(self.layers, self._real))
        mode = self.model.training
        if self._graph.training != mode:
            # Switch the traced graph only: GraphModule.train() would recurse into the shared modules
            # and undo train_mode's frozen BatchNorms.
            self._graph.graph = self._graph.train_graph if mode else self._graph.eval_graph
            self._graph.training = mode
        got = self._graph(x)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, real in zip(self.layers, self._real):
            out[name] = torch.sigmoid(got[real]) if name == "prob" else got[real]
        return out


def extract(model: nn.Module, x: torch.Tensor, layers: Iterable[str]) -> OrderedDict[str, torch.Tensor]:
    """One-shot :class:`FeatureExtractor` (tracing costs up to ~1 s for DenseNet: build one for a loop)."""
    return FeatureExtractor(model, layers)(x)


# --- freezing ----------------------------------------------------------------------------------------

def freeze_order(model: nn.Module) -> list[str]:
    """Module names in the order ``freeze_until`` counts them (forward order)."""
    spec = backbones.spec_of(model)
    if spec.name == "caffenet":
        return ["conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"]
    return [name for name, _ in model.named_modules() if name]


def freeze_points(model: nn.Module) -> list[str]:
    """The names listed when a freeze point is unknown: aliases of modules, top-level modules,
    and the children of top-level containers (``features.N`` of VGG/DenseNet)."""
    spec = backbones.spec_of(model)
    order = freeze_order(model)
    if spec.name == "caffenet":
        return order
    modules = set(order)
    out = [a for a, target in spec.aliases.items() if target in modules and target != spec.head]
    for name, child in model.named_children():
        out.append(name)
        if isinstance(child, (nn.Sequential, nn.ModuleDict, nn.ModuleList)):
            out.extend(f"{name}.{sub}" for sub, _ in child.named_children())
    return [n for n in out if n != spec.head]


def freeze_until(model: nn.Module, layer: str) -> list[str]:
    """Stop learning in ``layer`` and every layer before it; returns the frozen parameter names.

    See the module docstring for the names. The head cannot be frozen this way (nothing
    would learn). Calling it again first unfreezes everything.
    """
    spec = backbones.spec_of(model)
    order = freeze_order(model)
    target = spec.aliases.get(layer, layer) if spec.name != "caffenet" else layer
    if target not in order or target == spec.head or (spec.name != "caffenet" and layer in ("logits", "prob")):
        raise UserError(f"cannot freeze {spec.name} up to {layer!r}: not a module name before the head; "
                        f"choose from {freeze_points(model)} or any name of model.named_modules()")
    # A module's descendants follow it in named_modules() (pre-order): extend to the last one.
    end = order.index(target)
    while end + 1 < len(order) and order[end + 1].startswith(target + "."):
        end += 1
    frozen_modules = set(order[:end + 1])
    for p in model.parameters():
        p.requires_grad_(True)
    frozen = []
    for name, p in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in frozen_modules:
            p.requires_grad_(False)
            frozen.append(name)
    setattr(model, _FROZEN_ATTR, (layer, sorted(frozen_modules)))
    return frozen


def frozen_until(model: nn.Module) -> str | None:
    """The layer given to :func:`freeze_until` (None when nothing is frozen)."""
    state = getattr(model, _FROZEN_ATTR, None)
    return state[0] if state else None


def train_mode(model: nn.Module, mode: bool = True) -> nn.Module:
    """``model.train(mode)``, except that normalisation layers frozen by :func:`freeze_until` stay in
    eval mode, so their running statistics stay those of the loaded weights (a frozen layer is
    frozen). Without frozen layers this is exactly ``model.train(mode)``."""
    model.train(mode)
    state = getattr(model, _FROZEN_ATTR, None)
    if mode and state:
        frozen_modules = set(state[1])
        for name, module in model.named_modules():
            if name in frozen_modules and isinstance(module, backbones._NORMS):
                module.eval()
    return model

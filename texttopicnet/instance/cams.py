"""Class (topic) activation maps for any backbone, and the network that gives features + CAMs together.

Two sources of CAMs (Zhou et al. 2016's definition: ``CAM_k = sum_c w_kc A_c`` over the maps
``A`` that global average pooling feeds into the linear layer ``w``; no bias):

- **GAP + linear backbones** (torchvision ResNet-50, DenseNet-161, GoogLeNet: the registry's
  ``gap_head``): the backbone's own head over its ``cam_layer`` (``layer4``, ``relu5``,
  ``inception5b``) gives the topic maps with no training.
- **Conv backbones without such a head** (CaffeNet, AlexNet, VGG-16): a :class:`CamHead`
  (conv 3x3 with ReLU on the last conv layer, global average pooling, linear to the K topics)
  trained on the topic labels over the frozen backbone, as the paper's VGG16-CAM (1024
  channels over relu5_3 of a frozen VGG-16; SEED_SYSTEMS 004) was trained on ImageNet classes.
  Training: :mod:`texttopicnet.instance.cam_training`.

:class:`CamNetwork` runs the backbone once and returns, per image, the features of any named
layer (the paper: relu5_1), the raw CAMs of all K topics on the same grid (resized bilinearly
when the CAM layer's grid differs) and the K topic scores (logits).

Example::

    net, info = load_network("RUN/train/model.safetensors")
    head, meta = load_cam_head("RUN/instance/cam_head/trained/cam_head.safetensors", info)
    cn = CamNetwork(net, head=head)                 # CaffeNet: features conv5, CAMs over conv5
    feats, cams, scores = cn(x)                     # (N,C,h,w), (N,K,h,w), (N,K)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UserError
from ..networks import backbones, layers

CAM_CHANNELS = 1024  # the paper's CAM layer: conv 3x3, 1024 filters (VGG16-CAM)
# (feature layer, CAM layer) for the backbones that need a trained CAM head. The paper takes
# features from relu5_1 and CAMs over relu5_3 (both 1/16 of the input); CaffeNet/AlexNet's last
# conv layer (conv5, 1/16) plays both roles.
CONV_DEFAULTS = {"caffenet": ("conv5", "conv5"), "alexnet": ("conv5", "conv5"), "vgg16": ("relu5_1", "relu5_3")}


def default_layers(arch: str) -> tuple[str, str]:
    """(feature layer, CAM layer) used when none is named."""
    spec = backbones.get(arch)
    if spec.gap_head:
        return spec.cam_layer, spec.cam_layer
    if arch in CONV_DEFAULTS:
        return CONV_DEFAULTS[arch]
    raise UserError(f"no default CAM layer for {arch}: name one with --cam-layer")


def needs_head(arch: str) -> bool:
    return not backbones.get(arch).gap_head


class CamHead(nn.Module):
    """conv 3x3 (ReLU) -> global average pooling -> linear: the paper's CAM layer for conv backbones."""

    def __init__(self, in_channels: int, num_outputs: int, channels: int = CAM_CHANNELS):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.fc = nn.Linear(channels, num_outputs)

    def config(self) -> dict:
        return {"in_channels": self.conv.in_channels, "channels": self.conv.out_channels,
                "num_outputs": self.fc.out_features}

    def maps(self, act: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(act))

    def forward(self, act: torch.Tensor) -> torch.Tensor:
        return self.fc(self.maps(act).mean(dim=(2, 3)))

    def cams(self, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw CAMs (N, K, h, w), logits (N, K)) from the backbone's activations."""
        m = self.maps(act)
        return cams_from_maps(m, self.fc.weight), self.fc(m.mean(dim=(2, 3)))


def cams_from_maps(maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``CAM[n, k] = sum_c weight[k, c] * maps[n, c]`` (N, K, h, w)."""
    return torch.einsum("kc,nchw->nkhw", weight.to(maps.dtype), maps)


def head_metadata(head: CamHead, backbone_info: dict, cam_layer: str, extra: dict | None = None) -> dict[str, str]:
    record = {"head": head.config(), "cam_layer": cam_layer, "arch": backbone_info.get("arch", "caffenet"),
              "backbone_sha256": backbone_info["sha256"], **(extra or {})}
    return {"cam_head": json.dumps(record, sort_keys=True)}


def load_cam_head(path: str | Path, backbone_info: dict | None = None) -> tuple[CamHead, dict]:
    """A trained :class:`CamHead` and its record; refuses a head trained over another backbone."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: CAM head not found; train it with experiments/instance_search/02_train_cam_head.py")
    try:
        sd = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            record = json.loads((fh.metadata() or {})["cam_head"])
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a CAM head file ({exc})") from None
    if backbone_info is not None and record.get("backbone_sha256") != backbone_info.get("sha256"):
        raise UserError(f"{path} was trained over the backbone {str(record.get('backbone_sha256'))[:12]}, not over "
                        f"{str(backbone_info.get('sha256'))[:12]} ({backbone_info.get('source')}): train a head for "
                        "this network (02_train_cam_head.py --weights ...)")
    cfg = record["head"]
    head = CamHead(cfg["in_channels"], cfg["num_outputs"], cfg["channels"])
    try:
        head.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: tensors do not match the recorded head ({exc})") from None
    return head.eval(), record


class CamNetwork(nn.Module):
    """Backbone (frozen, eval) + CAM source: ``x -> (features, raw CAMs, scores)``.

    ``head`` is a trained :class:`CamHead` for conv backbones; for GAP + linear backbones leave
    it None and the backbone's own head is used. ``feature_layer``/``cam_layer`` default to
    :func:`default_layers`; any layer name :mod:`texttopicnet.networks.layers` accepts works.
    """

    def __init__(self, net: nn.Module, head: CamHead | None = None, feature_layer: str | None = None,
                 cam_layer: str | None = None):
        super().__init__()
        self.net = net.eval()
        self.arch = backbones.arch_of(net)
        self.spec = backbones.get(self.arch)
        f_default, c_default = default_layers(self.arch)
        self.feature_layer = feature_layer or f_default
        self.cam_layer = cam_layer or c_default
        if head is None and not self.spec.gap_head:
            raise UserError(f"{self.arch} has no global-average-pooling head: its CAMs need a trained CAM head "
                            "(experiments/instance_search/02_train_cam_head.py)")
        if head is not None:
            self.head = head.eval()
        else:
            self.head = None
            if self.cam_layer != self.spec.cam_layer:
                raise UserError(f"{self.arch}'s own head pools {self.spec.cam_layer!r}; CAMs from another layer "
                                f"({self.cam_layer!r}) need a trained CAM head")
        self.run = layers.FeatureExtractor(net, list(dict.fromkeys([self.feature_layer, self.cam_layer])))

    @property
    def num_outputs(self) -> int:
        return (self.head.fc.out_features if self.head is not None else backbones.head_of(self.net).out_features)

    def preprocess(self, uint8: torch.Tensor) -> torch.Tensor:
        return backbones.preprocess(self.net, uint8)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        got = self.run(x)
        feats, act = got[self.feature_layer], got[self.cam_layer]
        if feats.dim() != 4 or act.dim() != 4:
            raise UserError(f"layers {self.feature_layer!r} and {self.cam_layer!r} must be convolutional maps")
        if self.head is not None:
            cams, scores = self.head.cams(act)
        else:
            lin = backbones.head_of(self.net)
            cams = cams_from_maps(act, lin.weight)
            scores = lin(act.mean(dim=(2, 3)))
        if cams.shape[-2:] != feats.shape[-2:]:
            cams = F.interpolate(cams, size=feats.shape[-2:], mode="bilinear", align_corners=False)
        return feats.float(), cams.float(), scores.float()


def backbone_activations(net: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The activations of ``layer`` (the frozen part a CAM head trains on)."""
    with torch.no_grad():
        return layers.extract(net, x, [layer])[layer]

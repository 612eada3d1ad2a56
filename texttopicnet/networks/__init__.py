"""Network definitions: CaffeNet (the paper's), the backbone registry, layers by name."""

from . import backbones, layers
from .caffenet import FEATURE_LAYERS, MEAN_BGR, CaffeNet, param_groups, preprocess_uint8

__all__ = ["FEATURE_LAYERS", "MEAN_BGR", "CaffeNet", "backbones", "layers", "param_groups", "preprocess_uint8"]

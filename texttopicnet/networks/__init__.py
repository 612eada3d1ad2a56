"""Network definitions."""

from .caffenet import FEATURE_LAYERS, MEAN_BGR, CaffeNet, param_groups, preprocess_uint8

__all__ = ["CaffeNet", "FEATURE_LAYERS", "MEAN_BGR", "param_groups", "preprocess_uint8"]

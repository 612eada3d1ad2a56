"""Sigmoid cross-entropy as Caffe's ``SigmoidCrossEntropyLoss`` computed it, and reference levels.

Caffe (2016, the version TextTopicNet trained with) summed the per-output binary
cross-entropies over every output and divided by the batch size, not by the number
of outputs: the loss of one image is the sum over its 40 topics. We keep that
normalisation so the paper's learning rate keeps its meaning.

Two reference levels make a loss readable:
- :func:`mean_distribution_loss`: predicting the training set's mean topic
  distribution for every image (what a network that ignores pixels can reach);
- :func:`min_possible_loss`: predicting every target exactly (sum of binary
  entropies of the soft targets; the loss never goes below it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def sigmoid_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-image sum of binary cross-entropies (float32 math)."""
    per_elem = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return per_elem.sum(dim=1).mean()


def _bce_sum(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    eps = 1e-12
    p = np.clip(p, eps, 1.0 - eps)
    return -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)).sum(axis=1)


def mean_distribution_loss(labels: np.ndarray, mean: np.ndarray | None = None) -> float:
    """Loss of always predicting ``mean`` (default ``labels.mean(0)``) as probabilities, same definition."""
    y = np.asarray(labels, dtype=np.float64)
    m = y.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    return float(_bce_sum(np.broadcast_to(m, y.shape), y).mean())


def min_possible_loss(labels: np.ndarray) -> float:
    """The floor: predicting each target exactly (mean per-image sum of binary entropies)."""
    y = np.asarray(labels, dtype=np.float64)
    return float(_bce_sum(y, y).mean())

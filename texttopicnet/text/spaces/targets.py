"""Training targets: what the CNN is trained to predict for a text, per space kind.

The CNN is trained with sigmoid cross-entropy, so a target must lie in [0, 1]. Transforms
(each row on its own), as the related work made them (../shared/SEED_SYSTEMS.md, 002):

- ``distribution`` (the LDA space): the topic distribution itself. The rows the paper
  trains on are made by the labels stage (``texttopicnet.text.labels``, gensim's 0.01
  cut-off as the release has it; ``LdaSpace.label_rows`` gives the same rows), not here;
  this transform only checks the rows (non-negative, each summing to a value in (0, 1])
  and passes them through.
- ``minshift_l2`` (the TextTopicNet fork, default for vector spaces): if the row's minimum
  is negative, subtract it (the minimum becomes 0); then, if the row sums to more than 0,
  divide by its L2 norm.
- ``minshift_max`` (LearnFromWebData): always subtract the minimum; then, if the maximum is
  above 0, divide by it (the largest entry becomes 1).

Both vector transforms are invariant to a positive per-row scale, so a tf-idf weighted
*mean* (ours) and LearnFromWebData's un-divided weighted *sum* give the same targets. A
zero row (a text with no known word) stays zero: drop it with the ``empty`` mask from
``space.embed(..., return_empty=True)`` as the labels stage drops LDA's empty articles.
The chosen transform's name is recorded by whoever writes the targets (``describe``).

Use::

    from texttopicnet.text.spaces import targets
    y = targets.make_targets(space.embed(texts), targets.default_target(space))
    targets.check_targets(y, "minshift_l2")
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...core.errors import DataError, UserError

SUM_TOLERANCE = 1e-5


def distribution(v: np.ndarray) -> np.ndarray:
    """Rows as they are (they must already be distributions: checked)."""
    out = np.asarray(v, dtype=np.float64)
    check_targets(out.astype(np.float32), "distribution")
    return out


def minshift_l2(v: np.ndarray) -> np.ndarray:
    """The TextTopicNet fork: shift a negative minimum to 0, then L2-normalise non-zero rows."""
    x = np.array(v, dtype=np.float64)
    lo = x.min(axis=1, keepdims=True)
    x = np.where(lo < 0, x - lo, x)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=x.copy(), where=x.sum(axis=1, keepdims=True) > 0)


def minshift_max(v: np.ndarray) -> np.ndarray:
    """LearnFromWebData: subtract the minimum, then divide by the maximum where it is above 0."""
    x = np.array(v, dtype=np.float64)
    x = x - x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    return np.divide(x, hi, out=x.copy(), where=hi > 0)


TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "distribution": distribution, "minshift_l2": minshift_l2, "minshift_max": minshift_max}
SOURCES = {"distribution": "the paper (LDA topic distribution; rows made by the labels stage)",
           "minshift_l2": "TextTopicNet fork (gombru/TextTopicNet): shift if negative, then L2",
           "minshift_max": "LearnFromWebData: v -= min(v); v /= max(v)"}
DEFAULT_TARGET = {"distribution": "distribution", "vector": "minshift_l2"}


def default_target(space_or_kind) -> str:
    """``distribution`` for distribution spaces, ``minshift_l2`` (the fork's) for vector spaces."""
    kind = getattr(space_or_kind, "kind", space_or_kind)
    if kind not in DEFAULT_TARGET:
        raise UserError(f"unknown space kind {kind!r}")
    return DEFAULT_TARGET[kind]


def allowed_targets(kind: str) -> tuple[str, ...]:
    return ("distribution",) if kind == "distribution" else ("minshift_l2", "minshift_max")


def make_targets(vectors: np.ndarray, name: str) -> np.ndarray:
    """float32 training targets from a space's embeddings (see the module docstring)."""
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise UserError(f"targets need a 2-D array of embeddings, got shape {v.shape}")
    if v.size and not np.isfinite(v).all():
        raise DataError("embeddings contain NaN or infinite values")
    if v.shape[0] == 0:
        return np.zeros(v.shape, dtype=np.float32)
    out = np.ascontiguousarray(TARGETS[name](v), dtype=np.float32)
    check_targets(out, name)
    return out


def check_targets(t: np.ndarray, name: str, tol: float = SUM_TOLERANCE) -> None:
    """Raise :class:`DataError` unless ``t`` is float32 (N, D), finite, in [0, 1], with the transform's row norm.

    ``distribution``: rows sum to a value in (0, 1] (the release's rows sum a little under 1); ``minshift_l2``: L2 norm 1 or an all-zero row;
    ``minshift_max``: maximum 1 or an all-zero row.
    """
    if t.ndim != 2 or t.dtype != np.float32:
        raise DataError(f"targets must be float32 (N, D), got {t.dtype} {t.shape}")
    if not np.isfinite(t).all():
        raise DataError(f"{int((~np.isfinite(t)).any(axis=1).sum())} target rows contain NaN/inf")
    if (t < 0).any() or (t > 1 + tol).any():
        raise DataError(f"{name} targets outside [0, 1]")
    x = t.astype(np.float64)
    if name == "distribution":
        # The release's rows leave out topics under the 0.01 cut-off: a sum in (0, 1].
        sums = x.sum(axis=1)
        err = np.where(sums > 0, np.maximum(sums - 1.0, 0.0), 1.0)
    else:
        size = np.linalg.norm(x, axis=1) if name == "minshift_l2" else x.max(axis=1, initial=0.0)
        err = np.where(np.abs(x).sum(axis=1) == 0, 0.0, np.abs(size - 1.0))
    if (err > tol).any():
        raise DataError(f"{int((err > tol).sum())} {name} target rows have the wrong norm (max error {err.max():.2e})")


def describe(name: str) -> dict:
    """What to record next to targets written with transform ``name``."""
    return {"target": name, "source": SOURCES[name]}

"""Training losses: the paper's sigmoid cross-entropy (default) and the related systems' alternatives.

Registry (``--loss`` of the training script; :func:`build_loss`):

- ``sigmoid_ce`` (default): Caffe's ``SigmoidCrossEntropyLoss`` as TextTopicNet trained with
  it. Caffe (2016) summed the per-output binary cross-entropies over every output and divided
  by the batch size, not by the number of outputs: the loss of one image is the sum over its
  40 topics. We keep that normalisation so the paper's learning rate keeps its meaning.
- ``mse``: Caffe's ``EuclideanLoss``, sum over images of ``|y_hat - y|^2`` divided by ``2N``
  (regression onto the target vector, e.g. a min-shifted word-embedding caption).
- ``cosine``: mean over images of ``1 - cos(y_hat, y)`` (scale-free regression).
- ``triplet``: the search demo's ranking loss (SEED_SYSTEMS 002). Outputs and targets are
  L2-normalised (``a`` = the image's output, ``p`` = its own caption, ``n`` = another caption
  of the batch); loss = sum over images of ``max(0, margin + |a-p|^2 - |a-n|^2)`` / ``2N``.
  The negative of image ``i`` is chosen among the OTHER rows ``j != i`` of the batch by
  squared Euclidean distance ``d_ij`` between the raw targets (the demo's data layer did
  this on the raw caption vectors):
  ``hard``: the farthest (lowest index on ties); ``random``: uniformly among all ``j != i``;
  ``soft`` (the demo's choice): uniformly among the ``j != i`` with ``d_ij`` greater than the
  batch mean distance (mean of ``d_ij`` over all ordered pairs ``i != j``); an anchor with no
  such caption takes the farthest. The random draw is ``u = torch.rand(N, generator=g)`` on
  CPU, anchor ``i`` taking candidate number ``floor(u_i * count_i)`` in increasing index
  order; ``g`` is seeded from ``(seed, step)`` when the caller passes ``step`` (training: the
  iteration, so a resumed run draws the same negatives), otherwise it is the loss's own
  generator seeded once with ``seed``. Unlike the demo's hand-written gradient (which
  ignored the normalisation's Jacobian), autograd differentiates the loss as written.

All losses take targets of any non-negative scale: topic rows that sum to 1 or less (the
release's 0.01 cut-off), or vectors from the min-shift/L2 or min-shift/max transforms; zero
rows give finite values (no NaN). The maths runs in float32 whatever the autocast dtype.

``check_targets(labels)`` says whether a label matrix suits a loss (sigmoid cross-entropy:
values in [0, 1]); ``evaluate(batches)`` is the mean per-image loss of a whole evaluation set.

Reference levels make a loss readable (``mean_baseline``: predicting the training set's
mean target for every image; ``min_possible``: predicting every target exactly); for
``sigmoid_ce`` they are :func:`mean_distribution_loss` and :func:`min_possible_loss`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UserError

NEGATIVES = ("random", "soft", "hard")


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


# --- the registry ------------------------------------------------------------------------------------

class Loss:
    """``loss(outputs, targets, step=None) -> scalar``; ``predict`` maps outputs into the target space."""

    name = ""

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor, step: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float()

    def config(self) -> dict:
        return {"name": self.name}

    def check_targets(self, labels: np.ndarray) -> str | None:
        """None when every target row suits this loss, else a sentence saying why not
        (finiteness is the packed store's check; only sigmoid cross-entropy bounds the values)."""
        return None

    def evaluate(self, batches) -> float:
        """Mean per-image loss over ``(outputs, targets)`` batches (call under ``no_grad``): each
        batch's loss weighted by its size (the training loop's end-of-run evaluation)."""
        total, count = 0.0, 0
        for outputs, targets in batches:
            total += float(self(outputs, targets, step=0)) * len(targets)
            count += len(targets)
        return total / count if count else float("nan")

    def _levels_on(self, predictions: np.ndarray, labels: np.ndarray) -> float:
        with torch.no_grad():
            return float(self._on_predictions(torch.from_numpy(predictions).double(),
                                              torch.from_numpy(labels).double()))

    def mean_baseline(self, labels: np.ndarray, mean: np.ndarray | None = None) -> float:
        y = np.asarray(labels, dtype=np.float64)
        m = y.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
        return self._levels_on(np.ascontiguousarray(np.broadcast_to(m, y.shape)), y)

    def min_possible(self, labels: np.ndarray) -> float:
        y = np.asarray(labels, dtype=np.float64)
        return self._levels_on(y.copy(), y)


class SigmoidCE(Loss):
    name = "sigmoid_ce"

    def __call__(self, outputs, targets, step=None):
        return sigmoid_cross_entropy(outputs, targets)

    def predict(self, outputs):
        return torch.sigmoid(outputs.float())

    def check_targets(self, labels):
        low, high = float(np.min(labels)), float(np.max(labels))
        if low < 0.0 or high > 1.0:
            return (f"sigmoid cross-entropy needs targets in [0, 1] (probabilities, e.g. topic distributions or "
                    f"vectors min-shifted and divided by their maximum); these range over [{low:.4g}, {high:.4g}]. "
                    "Train with --loss cosine, mse or triplet for raw vectors")
        return None

    def mean_baseline(self, labels, mean=None):
        return mean_distribution_loss(labels, mean)

    def min_possible(self, labels):
        return min_possible_loss(labels)


class MSE(Loss):
    name = "mse"

    def _on_predictions(self, pred, y):
        return ((pred - y) ** 2).sum() / (2 * len(y))

    def __call__(self, outputs, targets, step=None):
        return self._on_predictions(outputs.float(), targets.float())


class Cosine(Loss):
    name = "cosine"
    eps = 1e-8  # a zero row has cosine 0 with anything (loss 1), not NaN

    def _on_predictions(self, pred, y):
        return (1.0 - F.cosine_similarity(pred, y, dim=1, eps=self.eps)).mean()

    def __call__(self, outputs, targets, step=None):
        return self._on_predictions(outputs.float(), targets.float())

    def predict(self, outputs):
        return F.normalize(outputs.float(), dim=1)


def _seed_for(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1, np.uint64)[0] >> 1)


def pairwise_sq_distances(targets: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows: float64 differences on CPU (not the |x|^2 + |y|^2
    - 2xy shortcut, whose rounding could reorder near-equal distances), a block of rows at a time."""
    t = targets.detach().to("cpu", torch.float64)
    n, k = t.shape
    step = max(1, (1 << 22) // max(1, n * k))  # ~32 MB of float64 differences per block
    return torch.cat([((t[s:s + step, None, :] - t[None, :, :]) ** 2).sum(-1) for s in range(0, n, step)])


def choose_negatives(targets: torch.Tensor, rule: str, generator: torch.Generator) -> torch.Tensor:
    """Index of each row's negative caption under ``rule`` (see the module docstring); CPU int64."""
    if rule not in NEGATIVES:
        raise UserError(f"unknown negative rule {rule!r}; choose from {list(NEGATIVES)}")
    n = len(targets)
    if n < 2:
        raise UserError("the triplet loss needs at least 2 images per batch (negatives come from the batch)")
    d = pairwise_sq_distances(targets)
    other = ~torch.eye(n, dtype=torch.bool)
    masked = d.masked_fill(~other, -1.0)
    hardest = masked.argmax(dim=1)  # first maximum: lowest index on ties
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    if rule == "hard":
        return hardest
    if rule == "random":
        candidates = other
    else:
        candidates = other & (d > d[other].mean())
    count = candidates.sum(dim=1)
    pick = torch.minimum((u * count).floor().long(), (count - 1).clamp_min(0))
    # The pick-th True of each row: first column where the running count exceeds pick.
    position = (candidates.long().cumsum(dim=1) > pick[:, None]) & candidates
    chosen = position.long().argmax(dim=1)
    return torch.where(count > 0, chosen, hardest)


class Triplet(Loss):
    name = "triplet"

    def __init__(self, margin: float = 0.1, negatives: str = "soft", seed: int = 0):
        if negatives not in NEGATIVES:
            raise UserError(f"unknown negative rule {negatives!r}; choose from {list(NEGATIVES)}")
        if not margin >= 0:
            raise UserError(f"the triplet margin must be >= 0, got {margin}")
        self.margin, self.negatives, self.seed = float(margin), negatives, int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def config(self) -> dict:
        return {"name": self.name, "margin": self.margin, "negatives": self.negatives, "seed": self.seed}

    def _generator(self, step):
        return self.generator if step is None else torch.Generator().manual_seed(_seed_for(self.seed, step))

    def _on_predictions(self, pred, y, generator=None):
        neg = choose_negatives(y, self.negatives, generator or torch.Generator().manual_seed(self.seed))
        a = F.normalize(pred, dim=1)
        t = F.normalize(y, dim=1)  # zero rows stay zero
        p, nv = t, t[neg.to(t.device)]
        hinge = self.margin + ((a - p) ** 2).sum(1) - ((a - nv) ** 2).sum(1)
        return hinge.clamp_min(0).sum() / (2 * len(y))

    def __call__(self, outputs, targets, step=None):
        return self._on_predictions(outputs.float(), targets.float(), self._generator(step))

    def predict(self, outputs):
        return F.normalize(outputs.float(), dim=1)

    def evaluate(self, batches) -> float:
        # The negatives depend on the batch: score every output together, batched as mean_baseline is,
        # so the evaluation and its baseline draw their negatives from the same groups of images.
        pairs = [(o.detach().double().cpu(), y.detach().double().cpu()) for o, y in batches]
        if not pairs:
            return float("nan")
        return self._levels_on(torch.cat([o for o, _ in pairs]).numpy(), torch.cat([y for _, y in pairs]).numpy())

    def _levels_on(self, predictions, labels, batch_size: int = 128, max_rows: int = 8192):
        # In-batch negatives: evaluate on consecutive batches of (evenly spaced) rows, seed fixed.
        rows = np.arange(len(labels))
        if len(rows) > max_rows:
            rows = np.unique(np.linspace(0, len(labels) - 1, max_rows).round().astype(np.int64))
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(rows), batch_size):
                r = rows[s:s + batch_size]
                if len(r) < 2:
                    continue
                value = self._on_predictions(torch.from_numpy(predictions[r]).double(),
                                             torch.from_numpy(labels[r]).double(),
                                             torch.Generator().manual_seed(_seed_for(self.seed, s)))
                total, count = total + float(value) * len(r), count + len(r)
        return total / max(count, 1)


LOSSES: dict[str, type[Loss]] = {"sigmoid_ce": SigmoidCE, "cosine": Cosine, "mse": MSE, "triplet": Triplet}
DEFAULT_LOSS = "sigmoid_ce"


def build_loss(name: str = DEFAULT_LOSS, **options) -> Loss:
    """``build_loss("triplet", margin=0.1, negatives="soft", seed=0)``; unknown names/options are UserErrors."""
    import inspect

    cls = LOSSES.get(name)
    if cls is None:
        raise UserError(f"unknown loss {name!r}; choose from {list(LOSSES)}")
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("args", "kwargs")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"loss {name!r} does not take option(s) {unknown}; its options: {accepted or 'none'}")
    return cls(**options)

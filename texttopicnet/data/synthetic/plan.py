"""The in-memory plan of a demo corpus: text files, images to render, and the counts.

Layout modules (``layout_*.py``) add files to a :class:`Plan`; :func:`texttopicnet.data.synthetic.generate`
renders the images (possibly in worker processes) and writes everything out. Keeping
planning separate from rendering is what makes the output byte-identical for a seed
whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .render import ImageSpec
from .vocab import SUBJECTS


@dataclass
class ImageJob:
    relpath: str          # relative to the corpus folder
    spec: ImageSpec
    damage: str | None = None  # None | "truncate" (keep the first 55%) | "garbage" (JPEG magic + noise)


@dataclass
class Plan:
    files: dict[str, bytes] = field(default_factory=dict)
    images: list[ImageJob] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def text(self, relpath: str, content: str, encoding: str = "utf-8") -> None:
        if relpath in self.files:
            raise ValueError(f"duplicate file in plan: {relpath}")
        self.files[relpath] = content.encode(encoding)

    def image(self, relpath: str, spec: ImageSpec, damage: str | None = None) -> None:
        self.images.append(ImageJob(relpath, spec, damage))


def scaled(base: int, scale: float, minimum: int) -> int:
    """``base * scale`` rounded, never below ``minimum`` (small scales keep every edge case)."""
    return max(minimum, int(round(base * scale)))


def mix(rng: np.random.Generator, primary: str, p_two: float = 0.5,
        others: tuple[str, ...] = SUBJECTS) -> dict[str, float]:
    """Subject weights: ``primary`` alone, or with a second subject (Dirichlet weights, primary first)."""
    if rng.random() >= p_two:
        return {primary: 1.0}
    second = [s for s in others if s != primary][int(rng.integers(len(others) - 1))]
    w = np.sort(rng.dirichlet([3.0, 1.5]))[::-1]
    w = np.clip(w, 0.2, 0.8)
    w = w / w.sum()
    return {primary: round(float(w[0]), 4), second: round(float(w[1]), 4)}


def jitter(rng: np.random.Generator, weights: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """Per-image weights near the document's (an illustration shows its subjects unevenly)."""
    if len(weights) == 1:
        return tuple(weights.items())
    names = list(weights)
    w = rng.dirichlet([20.0 * weights[n] for n in names])
    return tuple((n, round(float(x), 4)) for n, x in zip(names, w))


def primaries(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` primary subjects covering every subject as evenly as possible, in random order."""
    reps = [SUBJECTS[i % len(SUBJECTS)] for i in range(n)]
    return [reps[i] for i in rng.permutation(n)]


def new_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def image_size(rng: np.random.Generator, lo: int = 256, hi: int = 320) -> tuple[int, int]:
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))

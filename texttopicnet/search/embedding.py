"""Images -> index rows: a trained network's outputs put in its text space.

The network predicts the text space from pixels (any registered backbone: its own input
size and preprocessing, ``networks.backbones``). Test-time input, as the paper's: warp to
the backbone's ``resize`` (256 for CaffeNet), centre crop (227), one forward pass; the
``prob`` output (sigmoid of the head, as the paper's retrieval used it) becomes a row:

- distribution spaces: ``prob / sum(prob)`` (the paper normalises the sigmoid outputs to
  sum 1 before KL, as ``experiments/multimodal_retrieval.py`` does);
- vector spaces: ``prob / |prob|`` (the CNN predicts L2-normalised non-negative targets).

Uploaded images go through the same path (:meth:`ImageEmbedder.embed_bytes`), decoded by
``data.images`` with its checks (decompression bombs refused before decoding) from a
private temporary file.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Iterator, Sequence

import numpy as np
import torch

from ..data.images import MAX_PIXELS, ImageReadError, iter_decoded, load_resized
from ..networks import backbones
from ..networks.layers import FeatureExtractor
from ..training.augment import center_crop

OUTPUT_LAYER = "prob"


def rows_from_outputs(outputs: np.ndarray, kind: str) -> np.ndarray:
    """float32 index rows from network outputs (see the module docstring); all-zero rows stay zero."""
    x = np.asarray(outputs, dtype=np.float64)
    if kind == "distribution":
        size = x.sum(axis=1, keepdims=True)
    else:
        size = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, size, out=np.zeros_like(x), where=size > 0).astype(np.float32)


class ImageEmbedder:
    """Runs ``net`` on images and returns index rows for a space of ``kind``."""

    def __init__(self, net: torch.nn.Module, kind: str, device: str | torch.device = "cpu",
                 max_pixels: int | None = MAX_PIXELS):
        self.spec = backbones.spec_of(net)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.kind = kind
        self.max_pixels = max_pixels
        self._extract = FeatureExtractor(self.net, [OUTPUT_LAYER])
        self._lock = threading.Lock()  # one forward pass at a time (server threads share the network)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """uint8 (resize, resize, 3); raises :class:`ImageReadError`."""
        return load_resized(path, self.spec.resize, max_pixels=self.max_pixels)

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (n, resize, resize, 3) -> float32 rows (n, num_outputs)."""
        x = torch.from_numpy(np.require(batch, dtype=np.uint8, requirements=['C', 'W'])).to(self.device)
        x = self.spec.preprocess(center_crop(x, self.spec.crop))
        with self._lock, torch.inference_mode():
            out = self._extract(x)[OUTPUT_LAYER]
        return rows_from_outputs(out.flatten(1).float().cpu().numpy(), self.kind)

    def embed_bytes(self, data: bytes) -> np.ndarray:
        """One uploaded image (its file bytes) -> float32 row; raises :class:`ImageReadError`."""
        fd, tmp = tempfile.mkstemp(prefix="ttn-upload-", suffix=".img")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            arr = self.load(tmp)
        except ImageReadError as exc:  # name the upload, not our private temporary file
            raise ImageReadError(exc.message.replace(tmp, "upload"), exc.reason) from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return self.embed_arrays(arr[None])[0]


def iter_batches(embedder: ImageEmbedder, paths: Sequence[str | os.PathLike], batch_size: int, workers: int = 2
                 ) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str, str]]]]:
    """Yield (positions decoded, rows float32 (n, K) or None, [(position, reason, message)]) per batch.

    Images are decoded by a thread pool one batch ahead of the network (PIL releases the GIL).
    """
    for kept, arrays, bad in iter_decoded(paths, embedder.load, batch_size, workers):
        yield (kept, (embedder.embed_arrays(np.stack(arrays)) if arrays else None),
               [(i, exc.reason, str(exc)) for i, exc in bad])

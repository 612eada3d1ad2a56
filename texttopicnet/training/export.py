"""Export trained CaffeNet weights for the experiment stage: ``model.safetensors`` + ``model.sha256``.

The file holds the plain CaffeNet state dict (keys exactly the model's, no
``module.`` / ``_orig_mod.`` prefixes, contiguous CPU float32 tensors) and the single
metadata entry ``num_outputs``; ``model.sha256`` holds the file's sha256 hex digest on
one line. Both are written atomically. One metadata key on purpose: safetensors writes
several keys in a random order, so the same weights would get a different sha256 (and
the experiments' feature cache, keyed by it, would miss).

Example::

    digest = export_weights(model, run / "train" / "model.safetensors")
    state = load_exported(run / "train" / "model.safetensors")   # dict name -> tensor
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..core.io import atomic_path, sha256_file, write_text
from .checkpoint import clean_state_dict


def export_weights(model: torch.nn.Module | dict, path: str | Path) -> str:
    """Write the state dict as safetensors and its sha256 next to it; returns the digest.

    Deterministic: the same weights always give the same bytes."""
    path = Path(path)
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in clean_state_dict(sd).items()}
    meta = {"num_outputs": str(int(sd["fc8.weight"].shape[0]))}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    digest = sha256_file(path)
    write_text(path.with_suffix(".sha256"), digest + "\n")
    return digest


def load_exported(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))

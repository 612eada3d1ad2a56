"""Export trained weights for the experiment stage: ``model.safetensors`` + ``model.sha256``.

The file holds the plain state dict (keys exactly the model's, no ``module.`` /
``_orig_mod.`` prefixes, contiguous CPU float32 tensors; integer buffers keep their type) and ONE metadata entry,
``backbones.export_metadata(model)``: ``num_outputs`` for CaffeNet (the historical
header: files and checksums unchanged), ``arch`` (the JSON of ``backbones.describe``) for
every other architecture, so ``load_network`` needs no flag. ``model.sha256`` holds the
file's sha256 hex digest on one line. Both are written atomically. One metadata key on
purpose: safetensors writes several keys in a random order, so the same weights would get
a different sha256 (and the experiments' feature cache, keyed by it, would miss).

Example::

    digest = export_weights(model, run / "train" / "model.safetensors")
    state = load_exported(run / "train" / "model.safetensors")   # dict name -> tensor
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..core.io import atomic_path, sha256_file, write_text
from ..networks import backbones
from .checkpoint import clean_state_dict


def export_weights(model: torch.nn.Module | dict, path: str | Path) -> str:
    """Write the state dict as safetensors and its sha256 next to it; returns the digest.

    ``model``: a network built by ``networks.backbones`` (its architecture goes in the header),
    or a bare CaffeNet state dict. Deterministic: the same weights always give the same bytes."""
    path = Path(path)
    if isinstance(model, torch.nn.Module):
        sd, meta = model.state_dict(), backbones.export_metadata(model)
    else:
        if "fc8.weight" not in model:
            raise ValueError("export_weights: a bare state dict must be CaffeNet's; pass the model itself for "
                             "other architectures (their header records the architecture)")
        sd, meta = model, {"num_outputs": str(int(model["fc8.weight"].shape[0]))}
    # Floating tensors as float32 (whatever the training precision); integer buffers (BatchNorm's
    # num_batches_tracked) keep their type.
    sd = {k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()).contiguous()
          for k, v in clean_state_dict(sd).items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    digest = sha256_file(path)
    write_text(path.with_suffix(".sha256"), digest + "\n")
    return digest


def load_exported(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))

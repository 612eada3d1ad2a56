"""Training checkpoints: atomic save, safe load, RNG capture, state-dict hygiene.

A checkpoint is a plain ``dict`` of tensors and Python primitives (no pickled
classes), so it loads with ``torch.load(weights_only=True)``: loading a file from
somewhere else cannot run code. Saving goes through a temporary file that is
fsync'ed and renamed over the old checkpoint, so a run killed mid-save (even by
``kill -9``) keeps the previous checkpoint intact.

Usage::

    save_checkpoint(run / "checkpoint.pt", {"model": clean_state_dict(model.state_dict()), ...})
    state = load_checkpoint(run / "checkpoint.pt")
    load_state_dict_exact(model, state["model"])
"""

from __future__ import annotations

import os
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..core.errors import DataError
from ..core.io import atomic_path

# Wrappers add these to parameter names: DistributedDataParallel ("module.") and
# torch.compile ("_orig_mod."); exported weights never carry them.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    A missing or unreadable file raises :class:`DataError` naming the path.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise DataError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a dict checkpoint, found {type(state).__name__}")
    return state


def capture_rng_state() -> dict:
    """Every global RNG a training step touches: Python, NumPy, torch CPU and all CUDA devices.

    NumPy's state is stored as tensors/ints (not an ndarray) so the dict stays
    loadable with ``weights_only=True``.
    """
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": (py[0], list(py[1]), py[2]),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are restored when the device count matches)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"],
                             s["has_gauss"], s["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def clean_state_dict(sd: Mapping[str, Any]) -> "OrderedDict[str, Any]":
    """Strip ``module.`` / ``_orig_mod.`` prefixes (in any nesting order) from every key."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    for key, value in sd.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        if key in out:
            raise ValueError(f"two state-dict entries map to {key!r} after removing wrapper prefixes")
        out[key] = value
    return out


def load_state_dict_exact(model: torch.nn.Module, sd: Mapping[str, Any]) -> None:
    """Load ``sd`` (prefixes cleaned) into ``model``, requiring exactly the model's keys and shapes.

    Raises :class:`DataError` listing missing / unexpected keys or mismatched shapes,
    instead of torch's long traceback.
    """
    sd = clean_state_dict(sd)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append(f"shape mismatches [{'; '.join(shapes)}]")
        raise DataError(f"state dict does not match {type(model).__name__}: " + ", ".join(parts))
    model.load_state_dict(sd, strict=True)

"""Load any network the experiments accept: a training checkpoint, a .safetensors state dict, or "random".

- ``RUN/train/checkpoint.pt`` (plain dict with ``model``, ``optimizer``, ... written by the
  training stage; read with ``torch.load(weights_only=True)``) or any dict-like ``.pt``
  holding a ``model`` state dict (e.g. a fine-tuning checkpoint);
- ``.safetensors``: an exported or converted CaffeNet state dict (``num_outputs`` is
  taken from ``fc8.weight``; a fine-tuned VOC model has a 20-way fc8);
- ``random``: the random-init baseline of the same architecture, seeded (the paper's
  "random" row), ``num_outputs`` (default 40) outputs.

The key set must match :class:`~texttopicnet.networks.CaffeNet` exactly. Every failure is
a :class:`~texttopicnet.core.errors.UserError` naming the file.

Example::

    from texttopicnet.weights.loading import load_network
    net, info = load_network("runs/demo/train/model.safetensors")
    info["sha256"][:12]   # names the feature cache folder
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.io import sha256_file
from ..networks.caffenet import CaffeNet

DEFAULT_OUTPUTS = 40  # the paper's 40 LDA topics
SUFFIXES = (".pt", ".pth", ".safetensors")


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path}: not a readable .safetensors file ({exc})") from None
    from ..training.checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except UserError:
        raise
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt  # a bare state dict saved with torch.save
    raise UserError(f"{path}: a .pt file must be a training checkpoint with a 'model' entry or a state dict")


def _tag_hint(path: Path) -> str:
    # RUN/train/{checkpoint.pt,model.safetensors} is "our trained network" in the tables.
    if path.parent.name == "train":
        return "trained"
    if path.parent.name == "finetune" or path.parent.parent.name == "finetune":
        return f"finetuned-{path.parent.name}"
    return path.stem


def load_network(spec: str | os.PathLike, num_outputs: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu") -> tuple[CaffeNet, dict]:
    """Build a CaffeNet in eval mode from ``spec``; return it with a description.

    The dict has ``tag_hint`` (a default results tag), ``sha256`` (of the file, or
    ``random-seed<N>-k<K>``), ``num_outputs``, ``source`` (absolute path or "random")
    and ``seed``. ``num_outputs`` is only needed for "random"; for a file, a value that
    disagrees with the file's fc8 is a UserError.
    """
    if str(spec) == "random":
        k = int(num_outputs or DEFAULT_OUTPUTS)
        if k < 1:
            raise UserError(f"num_outputs must be positive, got {k}")
        # Seed a private generator state so building the network does not disturb callers.
        with torch.random.fork_rng(devices=[]):
            net = CaffeNet(num_outputs=k)
            # Re-draw from the seed: conv1..fc7 come first in reset_parameters, so the random
            # baseline's features are the same whatever its number of outputs (12 or 40).
            torch.manual_seed(seed)
            net.reset_parameters()
        info = {"tag_hint": "random", "sha256": f"random-seed{seed}-k{k}", "num_outputs": k,
                "source": "random", "seed": seed}
        return net.to(device).eval(), info

    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: weights file not found; pass a checkpoint .pt, a .safetensors state dict "
                        "or the word 'random'")
    if path.suffix not in SUFFIXES:
        raise UserError(f"{path}: unknown weights format {path.suffix!r}; expected one of {SUFFIXES} or 'random'")
    from ..training.checkpoint import clean_state_dict, load_state_dict_exact

    try:
        sd = clean_state_dict(_read_state_dict(path))
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    w = sd.get("fc8.weight")
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise UserError(f"{path}: no 2-D 'fc8.weight' tensor: not a CaffeNet state dict "
                        f"(keys: {sorted(sd)[:6]}...)")
    k = int(w.shape[0])
    if num_outputs is not None and int(num_outputs) != k:
        raise UserError(f"{path}: fc8 has {k} outputs but {num_outputs} were asked for")
    net = CaffeNet(num_outputs=k)
    try:
        load_state_dict_exact(net, sd)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"{path}: state dict does not match CaffeNet ({exc})") from None
    info = {"tag_hint": _tag_hint(path), "sha256": sha256_file(path), "num_outputs": k,
            "source": str(path.absolute()), "seed": seed}
    return net.to(device).eval(), info

"""Load any network the experiments accept, for any registered architecture.

``load_network(spec, ...)`` takes:

- ``RUN/train/checkpoint.pt`` (plain dict with ``model``, ``optimizer``, ... written by the
  training stage; read with ``torch.load(weights_only=True)``) or any dict-like ``.pt``/``.pth``
  holding a ``model`` state dict (e.g. a fine-tuning checkpoint). Its ``arch`` entry
  (``networks.backbones.describe``: ``{"arch", "num_outputs", "options"}``) names the
  architecture; checkpoints without one are CaffeNet (they predate the registry);
- ``.safetensors``: an exported or converted state dict. Its header's ``arch`` entry (JSON of
  ``describe``) names the architecture; files without it are CaffeNet (our exports and
  converted ``.caffemodel`` files, unchanged), ``num_outputs`` taken from ``fc8.weight``;
- a bare state dict ``.pth``/``.pt`` (``torch.save(model.state_dict())``, e.g. torchvision
  ImageNet weights a user has): it does not record its architecture, so ``arch=`` is needed
  (a CaffeNet key set is recognised). The file's head is loaded as it is (1000 ImageNet
  outputs); ``num_outputs=K`` with ``replace_head=True`` swaps in a fresh K-way head (seeded).
  Two conversions torchvision itself makes are applied and reported in ``info["notes"]``:
  the auxiliary classifiers of GoogLeNet files (``aux1.*``, ``aux2.*``: our GoogLeNet has none)
  are dropped, and the legacy ``norm.1``-style DenseNet keys renamed; a GoogLeNet file loads
  with ``transform_input=True`` (torchvision's ImageNet GoogLeNet expects it) unless
  ``options`` says otherwise;
- ``.caffemodel``: converted in memory by :mod:`texttopicnet.weights.caffe_import` (CaffeNet);
- ``random``: the random-init baseline of ``arch`` (default CaffeNet), seeded (the paper's
  "random" row), ``num_outputs`` (default 40) outputs.

The key set must match the architecture exactly (missing, unexpected and wrongly shaped
tensors are named); ``module.``/``_orig_mod.`` wrapper prefixes are removed and reported in
``info["notes"]``. Every failure is a :class:`~texttopicnet.core.errors.UserError` naming the file.

Example::

    from texttopicnet.weights.loading import load_network
    net, info = load_network("runs/demo/train/model.safetensors")
    info["sha256"][:12], info["arch"]   # the feature cache folder, "caffenet"
    net, info = load_network("resnet50-imagenet.pth", arch="resnet50", num_outputs=40, replace_head=True)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..core.errors import DataError, UserError
from ..core.io import sha256_file
from ..networks import backbones

DEFAULT_OUTPUTS = 40  # the paper's 40 LDA topics
SUFFIXES = (".pt", ".pth", ".safetensors", ".caffemodel")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _read_safetensors(path: Path) -> tuple[dict, dict | None]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable .safetensors file ({exc})") from None
    if "arch" not in meta:
        return sd, None
    try:
        record = json.loads(meta["arch"])
    except ValueError:
        raise UserError(f"{path}: the header's 'arch' entry is not JSON: {meta['arch'][:80]!r}") from None
    return sd, record


def _read_torch(path: Path) -> tuple[dict, dict | None, bool]:
    """(state dict, recorded architecture or None, whether it was a bare state dict)."""
    from ..training.checkpoint import load_checkpoint

    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except (UserError, DataError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        record = ckpt.get("arch")
        return ckpt["model"], (record if isinstance(record, dict) else None), False
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt, None, True
    raise UserError(f"{path}: a .pt/.pth file must be a training checkpoint with a 'model' entry or a state dict")


def _read_caffemodel(path: Path) -> dict:
    from . import caffe_import

    try:
        state, _ = caffe_import.convert(path)
    except DataError as exc:
        raise UserError(str(exc)) from None
    return dict(state)


def _strip_wrappers(sd: dict, notes: list[str]) -> dict:
    out, stripped = {}, 0
    for key, value in sd.items():
        new = key
        while new.startswith(_WRAPPER_PREFIXES):
            new = new[len(next(p for p in _WRAPPER_PREFIXES if new.startswith(p))):]
        if new in out:
            raise UserError(f"two entries map to {new!r} once the wrapper prefixes are removed")
        stripped += new != key
        out[new] = value
    if stripped:
        notes.append(f"removed DistributedDataParallel/torch.compile prefixes ('module.', '_orig_mod.') "
                     f"from {stripped} keys")
    return out


def _torchvision_conversions(arch: str, sd: dict, notes: list[str]) -> dict:
    if arch == "googlenet":
        aux = [k for k in sd if k.startswith(("aux1.", "aux2."))]
        if aux:
            sd = {k: v for k, v in sd.items() if k not in set(aux)}
            notes.append(f"dropped GoogLeNet's auxiliary classifiers ({len(aux)} tensors of aux1/aux2): "
                         "training-only heads, not part of our GoogLeNet (torchvision drops them the same way)")
    if arch == "densenet161":
        from ..networks.torchvision_nets import rename_legacy_densenet_keys

        sd, renamed = rename_legacy_densenet_keys(sd)
        if renamed:
            notes.append(f"renamed {renamed} legacy DenseNet keys ('norm.1' -> 'norm1' ...), as torchvision does")
    return sd


def _check_exact(model: torch.nn.Module, sd: dict, arch: str, notes: list[str]) -> dict:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    # Files saved before PyTorch 0.4.1 lack BatchNorm's step counter; it only matters for
    # momentum=None, so it starts at 0 (torch's own loader does the same for such files).
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    if counters and len(counters) == len(missing):
        sd = {**sd, **{k: torch.zeros((), dtype=expected[k].dtype) for k in counters}}
        notes.append(f"{len(counters)} BatchNorm num_batches_tracked counters absent from the file: set to 0")
        missing = []
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs {arch} {tuple(v.shape)}"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:12]}{' ...' if len(missing) > 12 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:12]}{' ...' if len(unexpected) > 12 else ''}")
        if shapes:
            parts.append(f"shape mismatches [{'; '.join(shapes[:6])}]")
        raise UserError(f"state dict does not match {arch}: " + ", ".join(parts))
    return sd


_KEYSETS: dict[str, frozenset] = {}


def _matching_archs(sd: dict) -> list[str]:
    """Registered architectures whose key set equals the file's (GoogLeNet's aux heads aside).
    Key sets do not depend on the number of outputs; each is built once on the meta device."""
    keys = {k for k in sd if not k.startswith(("aux1.", "aux2."))}
    found = []
    for name in backbones.names():
        if name not in _KEYSETS:
            with torch.device("meta"):
                _KEYSETS[name] = frozenset(backbones.build(name, 1).state_dict())
        if keys == _KEYSETS[name]:
            found.append(name)
    return found


def _tag_hint(path: Path) -> str:
    # RUN/train/{checkpoint.pt,model.safetensors} is "our trained network" in the tables.
    if path.parent.name == "train":
        return "trained"
    if path.parent.name == "finetune" or path.parent.parent.name == "finetune":
        return f"finetuned-{path.parent.name}"
    return path.stem


def _random(arch: str, num_outputs: int | None, seed: int, options: dict | None, device) -> tuple:
    k = int(num_outputs or DEFAULT_OUTPUTS)
    if k < 1:
        raise UserError(f"num_outputs must be positive, got {k}")
    net = backbones.build(arch, k, seed=seed, **(options or {}))
    # CaffeNet keeps its historical cache key; other architectures name themselves in it, and
    # non-default options (e.g. GoogLeNet's transform_input) too, so caches never mix networks.
    sha = f"random-seed{seed}-k{k}" if arch == "caffenet" else f"random-{arch}-seed{seed}-k{k}"
    opts = backbones.describe(net)["options"]
    if arch != "caffenet" and opts != dict(backbones.get(arch).options):
        sha += "-o" + hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:8]
    info = {"tag_hint": "random", "sha256": sha, "num_outputs": k, "source": "random", "seed": seed,
            "arch": arch, "options": opts, "notes": []}
    return net.to(device).eval(), info


def load_network(spec: str | os.PathLike, num_outputs: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu", *, arch: str | None = None, replace_head: bool = False,
                 options: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """Build the network in eval mode from ``spec``; return it with a description.

    The dict has ``tag_hint`` (a default results tag), ``sha256`` (of the file, or
    ``random-seed<N>-k<K>`` for CaffeNet / ``random-<arch>-seed<N>-k<K>``; when a head is
    replaced or ``options`` are given, a digest of the file's sha256 and those settings, so
    the feature cache never mixes networks), ``file_sha256`` (files only), ``num_outputs``,
    ``source`` (absolute path or "random"), ``seed``, ``arch``, ``options`` (the
    architecture's options) and ``notes`` (conversions applied, e.g. a replaced head).
    ``arch`` is needed only for "random" (default caffenet) and bare state dicts; for a file
    that records one, a different ``arch`` is a UserError. ``num_outputs`` is needed only for
    "random"; for a file, a value that disagrees with the file's head is a UserError unless
    ``replace_head`` (then a new head is drawn from ``seed``).
    """
    if arch is not None:
        backbones.get(arch)  # unknown names fail here, listing the registered ones
    if str(spec) == "random":
        return _random(arch or backbones.DEFAULT_ARCH, num_outputs, seed, options, device)

    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: weights file not found; pass a checkpoint .pt, a .safetensors state dict, "
                        "a torchvision .pth (with --arch), a .caffemodel or the word 'random'")
    if path.suffix not in SUFFIXES:
        raise UserError(f"{path}: unknown weights format {path.suffix!r}; expected one of {SUFFIXES} or 'random'")
    notes: list[str] = []
    bare = False
    try:
        if path.suffix == ".safetensors":
            sd, record = _read_safetensors(path)
        elif path.suffix == ".caffemodel":
            sd, record = _read_caffemodel(path), {"arch": "caffenet"}
        else:
            sd, record, bare = _read_torch(path)
        sd = _strip_wrappers(sd, notes)
        if record is not None and not isinstance(record.get("arch"), str):
            raise UserError(f"the recorded architecture {record!r} has no 'arch' name")
        recorded = record["arch"] if record else None
        if recorded and arch and recorded != arch:
            raise UserError(f"the file records architecture {recorded!r} but {arch!r} was asked for")
        name = recorded or arch
        if name is None:
            if "fc8.weight" in sd:
                name = "caffenet"  # our files from before the registry
            else:
                found = _matching_archs(sd)
                hint = f" (its keys match {found})" if found else ""
                raise UserError(f"the file does not record its architecture: pass --arch, one of "
                                f"{backbones.names()}{hint}")
        bb = backbones.get(name)
        opts = dict((record or {}).get("options") or {})
        if bare and name == "googlenet" and "transform_input" not in (options or {}):
            opts["transform_input"] = True
            notes.append("GoogLeNet state dict: transform_input=True (torchvision's ImageNet GoogLeNet expects "
                         "it; pass options={'transform_input': False} for weights trained without it)")
        opts.update(options or {})
        if name != "caffenet":
            sd = _torchvision_conversions(name, sd, notes)
        w = sd.get(f"{bb.head}.weight")
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise UserError(f"no 2-D '{bb.head}.weight' tensor: not a {name} state dict (keys: {sorted(sd)[:6]}...)")
        k = int(w.shape[0])
        if num_outputs is not None and int(num_outputs) != k and not replace_head:
            raise UserError(f"{bb.head} has {k} outputs but {num_outputs} were asked for "
                            "(replace_head=True draws a new head of that size)")
        with torch.device("meta"):  # no memory, no initialisation, no RNG draw: the file supplies everything
            net = backbones.build(name, k, **opts)
        sd = _check_exact(net, sd, name, notes)
        expected = net.state_dict()
        sd = {key: (v.to(expected[key].dtype) if v.is_floating_point() or v.dtype != expected[key].dtype else v)
                   .contiguous() for key, v in sd.items()}
        net.load_state_dict(sd, strict=True, assign=True)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    file_sha = sha256_file(path)
    identity = file_sha
    if num_outputs is not None and int(num_outputs) != k:
        backbones.replace_head(net, int(num_outputs), seed=seed)
        notes.append(f"replaced the {k}-way head '{bb.head}' by a new {num_outputs}-way head (seed {seed})")
        k = int(num_outputs)
        identity = None
    if options:
        identity = None
    final_options = backbones.describe(net)["options"]
    if identity is None:
        # Not the file's network as stored: name it by what was built (the feature cache keys on it).
        blob = json.dumps({"file": file_sha, "num_outputs": k, "seed": seed, "options": final_options},
                          sort_keys=True).encode()
        identity = hashlib.sha256(blob).hexdigest()
    info = {"tag_hint": _tag_hint(path), "sha256": identity, "file_sha256": file_sha, "num_outputs": k,
            "source": str(path.absolute()), "seed": seed, "arch": name, "options": final_options, "notes": notes}
    return net.to(device).eval(), info

"""Convert a Caffe ``.caffemodel`` (the published TextTopicNet weights) into our CaffeNet state dict.

No Caffe needed: :mod:`texttopicnet.weights.caffe_proto` decodes the protobuf bytes. Each
Caffe layer with learned blobs maps to the CaffeNet module of the same name
(``conv1.weight`` <- blob 0 of layer ``conv1``, ``conv1.bias`` <- blob 1). The
layouts already agree: convolution weights are (out, in/groups, kh, kw) in both
frameworks, so grouped convolutions map directly; inner products are (out, in) and
Caffe flattens pool5 in C, H, W order exactly as ``torch.flatten`` does, so fc6 needs
no permutation. Legacy files store an fc weight as (1, 1, out, in) and a bias as
(1, 1, 1, out): leading singleton axes are dropped, nothing else is reshaped.

The conversion asserts the exact set of layers and shapes and names anything
unexpected (extra layers with weights, missing layers, wrong shapes, a missing bias).

Use::

    from texttopicnet.weights import caffe_import
    state, report = caffe_import.convert("TextTopicNet_Wikipedia_ImageCLEF_40Topics.caffemodel")
    caffe_import.save_safetensors(state, "out.safetensors", report)

or the script ``pretrained/convert_caffemodel.py``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..core.errors import DataError
from ..core.io import atomic_path, sha256_file
from . import caffe_proto

CONVERTER = "texttopicnet.caffe_import/1"


@dataclass
class ConversionReport:
    source: str
    source_sha256: str
    format: str                                   # NetParameter field the layers came from
    num_outputs: int
    mapped: dict[str, str] = field(default_factory=dict)      # our layer <- Caffe layer name
    parameter_free: list[str] = field(default_factory=list)   # Caffe layers without blobs (ReLU, pool...)
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, str]:
        """String-only metadata for the .safetensors header."""
        return {
            "source": os.path.basename(self.source),
            "source_sha256": self.source_sha256,
            "num_outputs": str(self.num_outputs),
            "caffe_format": self.format,
            "layer_map": ",".join(f"{ours}={theirs}" for ours, theirs in self.mapped.items()),
            "converter": CONVERTER,
        }


def caffenet_shapes(num_outputs: int) -> "OrderedDict[str, tuple[int, ...]]":
    """Parameter shapes of our CaffeNet, built on the meta device (no memory, no init cost)."""
    from ..networks.caffenet import CaffeNet

    with torch.device("meta"):
        net = CaffeNet(num_outputs=num_outputs)
    return OrderedDict((k, tuple(v.shape)) for k, v in net.state_dict().items())


def _layers_of(shapes: Mapping[str, tuple[int, ...]]) -> "OrderedDict[str, list[str]]":
    out: "OrderedDict[str, list[str]]" = OrderedDict()
    for key in shapes:
        layer, _, param = key.rpartition(".")
        out.setdefault(layer, []).append(param)
    return out


def _strip_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _fit(blob: caffe_proto.Blob, want: tuple[int, ...], where: str) -> np.ndarray:
    """Blob data as a float32 array of shape ``want``; legacy singleton axes allowed, nothing else."""
    got = tuple(blob.shape)
    if int(np.prod(got, dtype=np.int64)) != blob.data.size:
        raise DataError(f"{where}: blob shape {got} holds {int(np.prod(got))} values but the file has "
                        f"{blob.data.size}: the .caffemodel is damaged")
    if got != want and _strip_ones(got) != _strip_ones(want):
        raise DataError(f"{where}: shape {got} in the .caffemodel, expected {want}")
    return blob.data.astype(np.float32, copy=False).reshape(want)


def _resolve_head(by_name: dict[str, caffe_proto.Layer], wanted: list[str], renames: dict[str, str],
                  report: ConversionReport) -> None:
    """The fine-tuned VOC model may call its new classifier something other than ``fc8``.

    When ``fc8`` is absent and exactly one unexpected InnerProduct layer with weights
    remains, use it as fc8 and say so; otherwise the caller must pass ``--rename``.
    """
    head = wanted[-1]
    if head in renames.values() or head in by_name:
        return
    taken = set(wanted) | set(renames)
    extra = [n for n, lay in by_name.items() if n not in taken and lay.type == "InnerProduct"]
    if len(extra) == 1:
        renames[extra[0]] = head
        report.notes.append(f"no Caffe layer named '{head}'; using the only other InnerProduct "
                            f"layer '{extra[0]}' as {head}")


def convert_net(net: caffe_proto.Net, source: str = "<bytes>", source_sha256: str = "",
                num_outputs: int | None = None, shapes: Mapping[str, tuple[int, ...]] | None = None,
                renames: Mapping[str, str] | None = None) -> tuple["OrderedDict[str, torch.Tensor]",
                                                                    ConversionReport]:
    """Map a decoded net onto the parameters in ``shapes`` (default: our CaffeNet's).

    ``num_outputs`` defaults to fc8's output count in the file. ``renames`` maps a
    Caffe layer name to ours (e.g. ``{"fc8_voc": "fc8"}``). Raises :class:`DataError`
    naming every problem found.
    """
    renames = dict(renames or {})
    with_blobs: dict[str, caffe_proto.Layer] = {}
    report = ConversionReport(source=source, source_sha256=source_sha256, format=net.format, num_outputs=0)
    duplicates = []
    for layer in net.layers:
        if not layer.blobs:
            report.parameter_free.append(layer.name)
        elif layer.name in with_blobs:
            duplicates.append(layer.name)
        else:
            with_blobs[layer.name] = layer
    if duplicates:
        raise DataError(f"{source}: several layers with weights share the name(s) {sorted(set(duplicates))}")
    if not with_blobs:
        raise DataError(f"{source}: no layer with weights found (format: {net.format}); "
                        "is this a .caffemodel (weights) rather than a .prototxt or solverstate?")

    if shapes is None:
        if num_outputs is None:
            num_outputs = _infer_outputs(with_blobs, renames, source)
        shapes = caffenet_shapes(num_outputs)
    wanted = _layers_of(shapes)
    _resolve_head(with_blobs, list(wanted), renames, report)
    ours_to_caffe = {ours: theirs for theirs, ours in renames.items()}

    problems: list[str] = []
    unknown_renames = sorted(set(renames) - set(with_blobs))
    if unknown_renames:
        problems.append(f"--rename names Caffe layer(s) not in the file: {unknown_renames}")
    used = set()
    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for ours, params in wanted.items():
        theirs = ours_to_caffe.get(ours, ours)
        layer = with_blobs.get(theirs)
        if layer is None:
            problems.append(f"layer '{theirs}' is missing")
            continue
        used.add(theirs)
        report.mapped[ours] = theirs
        if len(layer.blobs) != len(params):
            problems.append(f"layer '{theirs}' has {len(layer.blobs)} blob(s), expected {len(params)} "
                            f"({', '.join(params)})")
            continue
        for param, blob in zip(params, layer.blobs):
            key = f"{ours}.{param}"
            try:
                state[key] = torch.from_numpy(np.array(_fit(blob, tuple(shapes[key]), f"layer '{theirs}' {param}")))
            except DataError as exc:
                problems.append(str(exc))
    unexpected = [f"'{n}' ({lay.type or '?'}, {len(lay.blobs)} blob(s))" for n, lay in with_blobs.items()
                  if n not in used]
    if unexpected:
        problems.append("unexpected layer(s) with weights: " + ", ".join(unexpected))
    if problems:
        raise DataError(f"{source} does not match CaffeNet: " + "; ".join(problems))
    head_w = [k for k in state if k.endswith(".weight")][-1]
    report.num_outputs = int(state[head_w].shape[0])
    if any(blob.data.dtype == np.float64 for lay in with_blobs.values() for blob in lay.blobs):
        report.notes.append("double_data blobs were rounded to float32")
    return state, report


def _infer_outputs(with_blobs: dict[str, caffe_proto.Layer], renames: Mapping[str, str], source: str) -> int:
    head = next((theirs for theirs, ours in renames.items() if ours == "fc8"), "fc8")
    layer = with_blobs.get(head)
    if layer is None:
        known = {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"} | set(renames)
        extra = [n for n, lay in with_blobs.items() if n not in known and lay.type == "InnerProduct"]
        layer = with_blobs[extra[0]] if len(extra) == 1 else None
    if layer is None or not layer.blobs:
        raise DataError(f"{source}: cannot find the classifier layer fc8 (layers with weights: "
                        f"{sorted(with_blobs)}); name it with --rename CAFFE_NAME=fc8")
    shape = _strip_ones(layer.blobs[0].shape)
    if len(shape) != 2:
        raise DataError(f"{source}: layer '{layer.name}' weight has shape {layer.blobs[0].shape}, "
                        "expected (outputs, 4096)")
    return int(shape[0])


def read_caffemodel(path: str | os.PathLike) -> caffe_proto.Net:
    """Decode a ``.caffemodel`` file; a missing, truncated or foreign file is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (get the published weights with pretrained/download.py)")
    data = path.read_bytes()
    try:
        return caffe_proto.parse_net(data)
    except caffe_proto.WireFormatError as exc:
        raise DataError(f"{path}: not a readable .caffemodel ({exc}); the file may be truncated or "
                        "be something else (an HTML error page from a failed download?)") from None


def convert(path: str | os.PathLike, num_outputs: int | None = None,
            renames: Mapping[str, str] | None = None,
            shapes: Mapping[str, tuple[int, ...]] | None = None):
    """Read and convert a ``.caffemodel`` file: ``(state_dict, ConversionReport)``."""
    net = read_caffemodel(path)
    return convert_net(net, source=str(path), source_sha256=sha256_file(path), num_outputs=num_outputs,
                       shapes=shapes, renames=renames)


def save_safetensors(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     report: ConversionReport) -> Path:
    """Write the state dict atomically as ``.safetensors`` with the report as header metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=report.metadata())
    return path


def output_is_current(output: str | os.PathLike, source_sha256: str) -> bool:
    """True when ``output`` exists and its header records this source sha256 and converter version."""
    output = Path(output)
    if not output.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(output), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception:  # a damaged output is simply redone
        return False
    return meta.get("source_sha256") == source_sha256 and meta.get("converter") == CONVERTER


def check_forward(state: Mapping[str, torch.Tensor]) -> None:
    """Load the weights strictly and run one mean image: catches NaN/inf weights before anything is written."""
    net = load_into_caffenet(state)
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 227, 227))
    if not torch.isfinite(out).all():
        raise DataError(f"the converted network gives non-finite outputs on a mean image: the weights in "
                        "the .caffemodel are damaged")


def convert_file(src: str | os.PathLike, output: str | os.PathLike | None = None, *, force: bool = False,
                 num_outputs: int | None = None, renames: Mapping[str, str] | None = None,
                 log=print) -> tuple[Path, ConversionReport | None]:
    """Convert ``src`` to ``output`` (default ``src`` with ``.safetensors``) unless it is already current.

    Returns the output path and the report (``None`` when an up-to-date output was kept).
    The forward check runs before writing, so a damaged model never reaches disk.
    """
    src = Path(src)
    output = Path(output) if output is not None else src.with_suffix(".safetensors")
    if not src.is_file():
        raise DataError(f"{src}: file not found (run pretrained/download.py to fetch the published models)")
    source_sha = sha256_file(src)
    if not force and output_is_current(output, source_sha):
        log(f"already done: {output} was converted from this file (sha256 {source_sha[:12]}); --force redoes it")
        return output, None
    state, report = convert_net(read_caffemodel(src), source=str(src), source_sha256=source_sha,
                                num_outputs=num_outputs, renames=renames)
    for note in report.notes:
        log(f"note: {note}")
    log(f"read {len(report.mapped)} layers with weights ({report.format}); "
        f"parameter-free layers ignored: {', '.join(report.parameter_free) or 'none'}")
    check_forward(state)
    save_safetensors(state, output, report)
    n_params = sum(t.numel() for t in state.values())
    log(f"wrote {output}: {len(state)} tensors, {n_params:,} parameters, {report.num_outputs} outputs")
    return output, report


def load_into_caffenet(state: Mapping[str, torch.Tensor]):
    """A CaffeNet with exactly these weights (strict key/shape check), in eval mode."""
    from ..networks.caffenet import CaffeNet

    head = state["fc8.weight"].shape[0]
    net = CaffeNet(num_outputs=head)
    net.load_state_dict(dict(state), strict=True)
    return net.eval()

"""A minimal protobuf wire-format reader for Caffe's ``.caffemodel`` files (no Caffe, no .proto).

A ``.caffemodel`` is a serialised ``caffe.NetParameter`` (proto2). Only the fields
that carry learned weights are decoded (field numbers from caffe.proto, listed in
REFERENCE.md); every other field is skipped by its wire type, so files written by
any Caffe version (or fork) with extra fields still read:

========================  ==============================================================
message                   fields read
========================  ==============================================================
``NetParameter``          ``name = 1``, ``layer = 100`` (LayerParameter), legacy ``layers = 2`` (V1)
``LayerParameter``        ``name = 1``, ``type = 2`` (string), ``blobs = 7``
``V1LayerParameter``      ``name = 4``, ``type = 5`` (enum), ``blobs = 6``
``BlobProto``             ``shape = 7``, ``data = 5`` (float), ``double_data = 8``,
                          legacy ``num/channels/height/width = 1..4``
``BlobShape``             ``dim = 1`` (int64)
========================  ==============================================================

Repeated numeric fields are accepted both packed (one length-delimited run, what
Caffe writes) and unpacked (one tagged value per element, what a proto2 writer
without ``[packed = true]`` produces). Float arrays are decoded with NumPy straight
from the file buffer, so a 150 MB ``fc6`` blob costs one copy.

Use :func:`parse_net` (bytes -> :class:`CaffeNet`); :mod:`texttopicnet.weights.caffe_import`
maps the result onto our PyTorch CaffeNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

# Wire types (protobuf encoding spec).
VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5

# caffe.proto V1LayerParameter.LayerType, for readable names in reports.
V1_LAYER_TYPES = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}


class WireFormatError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated or not a .caffemodel)."""


@dataclass
class Blob:
    shape: tuple[int, ...]        # from BlobShape, else the legacy (num, channels, height, width)
    data: np.ndarray              # 1-D, float32 (``data``) or float64 (``double_data``)
    legacy_shape: bool = False    # True when the shape came from num/channels/height/width


@dataclass
class Layer:
    name: str
    type: str
    blobs: list[Blob] = field(default_factory=list)
    v1: bool = False              # from the legacy ``layers`` field (V1LayerParameter)


@dataclass
class Net:
    name: str
    layers: list[Layer]
    format: str                   # "layer", "v1 layers" or "layer+v1 layers"


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, new position)."""
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise WireFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireFormatError("varint longer than 10 bytes")


def read_field(buf: memoryview, pos: int) -> tuple[int, int, object, int]:
    """Decode the field starting at ``pos``: ``(field_number, wire_type, value, position_after)``.

    ``value`` is an int for varints, a memoryview slice for length-delimited fields and
    the raw 4/8 bytes (memoryview) for fixed32/fixed64. Groups (deprecated, never used
    by Caffe) are rejected.
    """
    end = len(buf)
    key, pos = read_varint(buf, pos)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise WireFormatError("field number 0")
    if wire == VARINT:
        value, pos = read_varint(buf, pos)
    elif wire == LEN:
        size, pos = read_varint(buf, pos)
        if pos + size > end:
            raise WireFormatError(f"field {number}: length {size} runs past the end of the message")
        value, pos = buf[pos:pos + size], pos + size
    elif wire == FIXED32 or wire == FIXED64:
        size = 4 if wire == FIXED32 else 8
        if pos + size > end:
            raise WireFormatError(f"field {number}: truncated fixed-width value")
        value, pos = buf[pos:pos + size], pos + size
    else:
        raise WireFormatError(f"field {number}: unsupported wire type {wire}")
    return number, wire, value, pos


def iter_fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """Yield ``(field_number, wire_type, value)`` for every field of one message."""
    pos = 0
    while pos < len(buf):
        number, wire, value, pos = read_field(buf, pos)
        yield number, wire, value


def _unpacked_run(buf: memoryview, pos: int, tag: int, width: int) -> int:
    """Number of consecutive ``tag``-byte + ``width``-byte records starting at ``pos``.

    Unpacked repeated floats are 5-byte records (tag 0x2D + float). Checking the tag
    column of a strided NumPy view finds the whole run at once instead of looping in
    Python over millions of elements. Each row that starts with the tag is a genuine
    record because parsing is sequential, so the run ends at the first row that
    does not.
    """
    rec = width + 1
    n = (len(buf) - pos) // rec
    if n == 0:
        return 0
    tags = np.frombuffer(buf, dtype=np.uint8, count=n * rec, offset=pos).reshape(n, rec)[:, 0]
    bad = np.flatnonzero(tags != tag)
    return int(bad[0]) if bad.size else n


def _parse_shape(buf: memoryview) -> tuple[int, ...]:
    dims: list[int] = []
    for number, wire, value in iter_fields(buf):
        if number != 1:
            continue
        if wire == VARINT:
            dims.append(_signed64(value))
        elif wire == LEN:  # packed int64
            pos = 0
            while pos < len(value):
                v, pos = read_varint(value, pos)
                dims.append(_signed64(v))
        else:
            raise WireFormatError(f"BlobShape.dim has wire type {wire}")
    return tuple(dims)


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_blob(buf: memoryview) -> Blob:
    """Decode one ``BlobProto``; float data stays as NumPy arrays (little-endian, as on the wire)."""
    shape: tuple[int, ...] | None = None
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}  # an absent legacy axis counts as 1, so counts still multiply out
    has_legacy = False
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, _ = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        # Unpacked floats/doubles: consume the whole run of records in one NumPy step
        # (n == 0 means a truncated record: read_field below reports it).
        if number == 5 and wire == FIXED32 and (n := _unpacked_run(buf, pos, key, 4)):
            rows = np.frombuffer(buf, dtype=np.uint8, count=n * 5, offset=pos).reshape(n, 5)
            floats.append(np.ascontiguousarray(rows[:, 1:]).view("<f4").reshape(-1))
            pos += n * 5
            continue
        if number == 8 and wire == FIXED64 and (n := _unpacked_run(buf, pos, key, 8)):
            rows = np.frombuffer(buf, dtype=np.uint8, count=n * 9, offset=pos).reshape(n, 9)
            doubles.append(np.ascontiguousarray(rows[:, 1:]).view("<f8").reshape(-1))
            pos += n * 9
            continue
        number, wire, value, pos = read_field(buf, pos)
        if number == 7 and wire == LEN:
            shape = _parse_shape(value)
        elif number == 5 and wire == LEN:
            if len(value) % 4:
                raise WireFormatError("packed float data length is not a multiple of 4")
            floats.append(np.frombuffer(value, dtype="<f4"))
        elif number == 8 and wire == LEN:
            if len(value) % 8:
                raise WireFormatError("packed double data length is not a multiple of 8")
            doubles.append(np.frombuffer(value, dtype="<f8"))
        elif number in legacy and wire == VARINT:
            legacy[number] = _signed64(value)
            has_legacy = True
        # diff (6), double_diff (9) and unknown fields are ignored: not needed for inference.
    legacy_shape = shape is None and has_legacy
    if shape is None:
        shape = tuple(legacy[i] for i in (1, 2, 3, 4)) if has_legacy else ()
    if floats and doubles:
        raise WireFormatError("blob has both float and double data")
    parts = floats or doubles
    if not parts:
        data = np.zeros(0, dtype=np.float32)
    elif len(parts) == 1:
        data = parts[0]
    else:
        data = np.concatenate(parts)
    return Blob(shape=shape, data=data, legacy_shape=legacy_shape)


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


def parse_layer(buf: memoryview, v1: bool) -> Layer:
    """Decode a ``LayerParameter`` (``v1=False``) or a legacy ``V1LayerParameter``."""
    name_no, type_no, blobs_no = (4, 5, 6) if v1 else (1, 2, 7)
    name, type_name, blobs = "", "", []
    for number, wire, value in iter_fields(buf):
        if number == name_no and wire == LEN:
            name = _text(value)
        elif number == type_no:
            if v1 and wire == VARINT:
                type_name = V1_LAYER_TYPES.get(value, f"V1 type {value}")
            elif not v1 and wire == LEN:
                type_name = _text(value)
        elif number == blobs_no and wire == LEN:
            blobs.append(parse_blob(value))
        elif v1 and number == 1 and wire == LEN:
            # V1LayerParameter.layer = V0LayerParameter: the pre-2014 format.
            raise WireFormatError("this .caffemodel uses Caffe's V0 layer format (before 2014); upgrade it "
                                  "once with Caffe's tools/upgrade_net_proto_binary and convert the result")
    return Layer(name=name, type=type_name, blobs=blobs, v1=v1)


def parse_net(data: bytes | bytearray | memoryview) -> Net:
    """Decode a whole ``NetParameter``. Raises :class:`WireFormatError` on malformed bytes."""
    buf = memoryview(data)
    name, new, old = "", [], []
    for number, wire, value in iter_fields(buf):
        if number == 1 and wire == LEN:
            name = _text(value)
        elif number == 100 and wire == LEN:
            new.append(parse_layer(value, v1=False))
        elif number == 2 and wire == LEN:
            old.append(parse_layer(value, v1=True))
    fmt = "+".join(x for x, layers in (("layer", new), ("v1 layers", old)) if layers) or "empty"
    return Net(name=name, layers=new + old, format=fmt)

"""Benchmark: reading a .caffemodel with texttopicnet.weights.caffe_proto vs the protobuf runtime and a naive decoder.

Rows:
- ``decode packed blobs``: a CaffeNet-sized NetParameter (57M floats, 230 MB; a few
  million in quick mode) decoded by our reader + converter into a state dict, vs the
  ``protobuf`` package (upb C runtime) parsing the same bytes with message classes built
  from caffe.proto's field numbers, then copying each blob into NumPy (what a
  pycaffe-free converter built on protobuf would do);
- ``decode unpacked floats``: a blob written without ``[packed=true]`` (legacy writers),
  our vectorised run detection vs a per-element field loop in Python.

Run: ``python benchmarks/bench_caffe_import.py [--quick]`` (prints JSON rows).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import median_time, row  # noqa: E402
from texttopicnet.weights import caffe_import, caffe_proto  # noqa: E402


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _blob(shape, data: np.ndarray) -> bytes:
    dims = b"".join(_varint(d) for d in shape)
    return _field(7, _field(1, dims)) + _field(5, data.astype("<f4").tobytes())


def encode_net(shapes, seed=0) -> bytes:
    """Setup only: a NetParameter with packed blobs, written directly in wire format."""
    rng = np.random.default_rng(seed)
    layers = {}
    for key, shape in shapes.items():
        layers.setdefault(key.rpartition(".")[0], []).append(shape)
    parts = []
    for name, blob_shapes in layers.items():
        body = _field(1, name.encode()) + _field(2, b"Convolution" if name.startswith("conv") else b"InnerProduct")
        for shape in blob_shapes:
            body += _field(7, _blob(shape, rng.standard_normal(int(np.prod(shape)), dtype=np.float32)))
        parts.append(_field(100, body))
    return b"".join(parts)


def protobuf_parser():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="bench_caffe.proto", package="caffe", syntax="proto2")
    m = fdp.message_type.add(name="BlobShape")
    f = m.field.add(name="dim", number=1, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    f.options.packed = True
    m = fdp.message_type.add(name="BlobProto")
    m.field.add(name="shape", number=7, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=".caffe.BlobShape")
    f = m.field.add(name="data", number=5, type=F.TYPE_FLOAT, label=F.LABEL_REPEATED)
    f.options.packed = True
    m = fdp.message_type.add(name="LayerParameter")
    m.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="type", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="blobs", number=7, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".caffe.BlobProto")
    m = fdp.message_type.add(name="NetParameter")
    m.field.add(name="layer", number=100, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                type_name=".caffe.LayerParameter")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    net_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))

    def parse(data: bytes) -> dict:
        net = net_cls.FromString(data)
        return {f"{lay.name}.{p}": np.array(b.data, dtype=np.float32).reshape(tuple(b.shape.dim))
                for lay in net.layer for p, b in zip(("weight", "bias"), lay.blobs)}
    return parse


def naive_unpacked(buf: bytes) -> np.ndarray:
    """Baseline: one Python iteration per tagged float."""
    mv = memoryview(buf)
    values = []
    pos = 0
    while pos < len(mv):
        number, wire, value, pos = caffe_proto.read_field(mv, pos)
        if number == 5 and wire == caffe_proto.FIXED32:
            values.append(struct.unpack("<f", value)[0])
    return np.asarray(values, dtype=np.float32)


def run(workdir: Path, quick: bool) -> list[dict]:
    rows = []
    repeat = 3
    num_out = 40
    shapes = caffe_import.caffenet_shapes(num_out)
    if quick:  # same layer names, a tenth of the big layers
        shapes = dict(shapes, **{"fc6.weight": (409, 9216), "fc6.bias": (409,), "fc7.weight": (409, 409),
                                 "fc7.bias": (409,), "fc8.weight": (num_out, 409)})
    data = encode_net(shapes)
    n_floats = sum(int(np.prod(s)) for s in shapes.values())

    def ours():
        return caffe_import.convert_net(caffe_proto.parse_net(data), shapes=shapes)[0]

    parse = protobuf_parser()
    a, b = ours(), parse(data)
    assert all(np.array_equal(a[k].numpy(), b[k]) for k in shapes), "readers disagree"
    t_ours = median_time(ours, repeat=repeat)
    t_pb = median_time(lambda: parse(data), repeat=repeat)
    rows.append(row("caffe_import", f"decode packed blobs ({len(data) / 1e6:.0f} MB, {n_floats / 1e6:.1f}M floats)",
                    t_ours, t_pb, items=n_floats, unit="floats", target=">= 1x protobuf runtime",
                    target_ratio=1.0, notes="baseline: protobuf (upb) ParseFromString + NumPy copy per blob"))

    n = 200_000 if quick else 2_000_000
    vals = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
    rec = np.empty((n, 5), dtype=np.uint8)
    rec[:, 0] = (5 << 3) | 5
    rec[:, 1:] = vals.view(np.uint8).reshape(n, 4)
    unpacked = rec.tobytes()

    def ours_unpacked():
        return caffe_proto.parse_blob(memoryview(unpacked)).data

    assert np.array_equal(ours_unpacked(), naive_unpacked(unpacked))
    t_ours = median_time(ours_unpacked, repeat=repeat)
    t_naive = median_time(lambda: naive_unpacked(unpacked), repeat=1 if not quick else repeat)
    rows.append(row("caffe_import", f"decode unpacked floats ({n / 1e6:.1f}M)", t_ours, t_naive, items=n,
                    unit="floats", target=">= 20x naive loop", target_ratio=20.0,
                    notes="baseline: per-element read_field + struct.unpack in Python"))
    return rows


if __name__ == "__main__":
    print(json.dumps(run(ROOT / "benchmarks" / "_work", quick="--quick" in sys.argv), indent=2))

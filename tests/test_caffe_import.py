"""Caffe .caffemodel import, checked against an independent encoder.

The .caffemodel files are written by the ``protobuf`` package itself: message types
are built here with the descriptor API from caffe.proto's field numbers (not from our
reader's tables), filled with random blobs and serialised. The converter must give
back every tensor bit for bit, and the converted CaffeNet must compute exactly what
the same weights loaded directly compute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_script
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from safetensors import safe_open
from safetensors.torch import load_file

from texttopicnet.core.errors import DataError, UserError
from texttopicnet.core.io import sha256_file
from texttopicnet.networks.caffenet import CaffeNet
from texttopicnet.weights import caffe_import, caffe_proto
from texttopicnet.weights.loading import load_network

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED


def _msg(fdp, name, fields):
    m = fdp.message_type.add(name=name)
    for fname, number, ftype, label, extra in fields:
        f = m.field.add(name=fname, number=number, type=ftype, label=label)
        if ftype == F.TYPE_MESSAGE:
            f.type_name = f".caffe.{extra['msg']}"
        if extra.get("packed") is not None:
            f.options.packed = extra["packed"]


@pytest.fixture(scope="module")
def caffe_pb():
    """caffe.proto's relevant messages (plus a few unknown-to-our-reader fields of every wire type).

    ``BlobProto`` packs its repeated numbers like Caffe; ``LegacyBlobProto`` has the
    same field numbers unpacked, to produce the other legal encoding.
    """
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe_test.proto", package="caffe", syntax="proto2")
    _msg(fdp, "BlobShape", [("dim", 1, F.TYPE_INT64, REP, {"packed": True})])
    for name, packed in (("BlobProto", True), ("LegacyBlobProto", False)):
        _msg(fdp, name, [
            ("shape", 7, F.TYPE_MESSAGE, OPT, {"msg": "BlobShape"}),
            ("data", 5, F.TYPE_FLOAT, REP, {"packed": packed}),
            ("diff", 6, F.TYPE_FLOAT, REP, {"packed": packed}),
            ("double_data", 8, F.TYPE_DOUBLE, REP, {"packed": packed}),
            ("num", 1, F.TYPE_INT32, OPT, {}), ("channels", 2, F.TYPE_INT32, OPT, {}),
            ("height", 3, F.TYPE_INT32, OPT, {}), ("width", 4, F.TYPE_INT32, OPT, {}),
        ])
    _msg(fdp, "LayerParameter", [
        ("name", 1, F.TYPE_STRING, OPT, {}), ("type", 2, F.TYPE_STRING, OPT, {}),
        ("bottom", 3, F.TYPE_STRING, REP, {}), ("top", 4, F.TYPE_STRING, REP, {}),
        ("loss_weight", 5, F.TYPE_FLOAT, REP, {}),          # fixed32, unknown to the reader
        ("blobs", 7, F.TYPE_MESSAGE, REP, {"msg": "BlobProto"}),
        ("phase", 10, F.TYPE_INT32, OPT, {}),                # varint, unknown
        ("some_double", 4242, F.TYPE_DOUBLE, OPT, {}),       # fixed64, unknown
    ])
    _msg(fdp, "V1LayerParameter", [
        ("bottom", 2, F.TYPE_STRING, REP, {}), ("top", 3, F.TYPE_STRING, REP, {}),
        ("name", 4, F.TYPE_STRING, OPT, {}), ("type", 5, F.TYPE_INT32, OPT, {}),  # enum on the wire = varint
        ("blobs", 6, F.TYPE_MESSAGE, REP, {"msg": "LegacyBlobProto"}),
        ("blobs_lr", 7, F.TYPE_FLOAT, REP, {}),
    ])
    _msg(fdp, "NetParameter", [
        ("name", 1, F.TYPE_STRING, OPT, {}),
        ("layers", 2, F.TYPE_MESSAGE, REP, {"msg": "V1LayerParameter"}),
        ("input", 3, F.TYPE_STRING, REP, {}),
        ("force_backward", 5, F.TYPE_BOOL, OPT, {}),
        ("layer", 100, F.TYPE_MESSAGE, REP, {"msg": "LayerParameter"}),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in ("NetParameter", "LayerParameter", "V1LayerParameter")}


def _random_state(shapes, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        a = rng.standard_normal(shape, dtype=np.float32) * 0.05
        flat = a.reshape(-1)
        flat[:3] = (-0.0, 1e-42, -2.5e-39)  # signed zero and denormals must survive exactly
        out[key] = a
    return out


def _layers(shapes):
    names = []
    for key in shapes:
        layer = key.rpartition(".")[0]
        if layer not in names:
            names.append(layer)
    return names


def encode_current(pb, shapes, arrays, extra_layers=(), name="test"):
    """NetParameter with the current ``layer`` field; blob shapes in ``shape.dim``."""
    net = pb["NetParameter"](name=name, input=["data"], force_backward=True)
    net.layer.add(name="data", type="Input", top=["data"])
    prev = "data"
    for lname in _layers(shapes):
        kind = "InnerProduct" if lname.startswith("fc") else "Convolution"
        lay = net.layer.add(name=lname, type=kind, bottom=[prev], top=[lname], phase=1, loss_weight=[0.0],
                            some_double=2.5)
        for param in ("weight", "bias"):
            blob = lay.blobs.add()
            blob.shape.dim.extend(shapes[f"{lname}.{param}"])
            blob.data.extend(arrays[f"{lname}.{param}"].reshape(-1).tolist())
            blob.diff.extend([1.0, 2.0])  # diffs are ignored by the reader
        net.layer.add(name=f"relu_{lname}", type="ReLU", bottom=[lname], top=[lname])
        prev = lname
    for lname, kind, blob_shapes in extra_layers:
        lay = net.layer.add(name=lname, type=kind)
        for shape in blob_shapes:
            blob = lay.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend([0.5] * int(np.prod(shape)))
    net.layer.add(name="loss", type="SigmoidCrossEntropyLoss", bottom=[prev, "label"])
    return net.SerializeToString()


def encode_v1(pb, shapes, arrays):
    """Legacy NetParameter: ``layers`` (V1, enum types), num/channels/height/width, unpacked floats,
    fc weights as (1, 1, out, in) and biases as (1, 1, 1, out)."""
    net = pb["NetParameter"](name="legacy")
    net.layers.add(name="data", type=5, top=["data"])
    for lname in _layers(shapes):
        lay = net.layers.add(name=lname, type=14 if lname.startswith("fc") else 4, blobs_lr=[1.0, 2.0])
        for param in ("weight", "bias"):
            shape = shapes[f"{lname}.{param}"]
            legacy = (1,) * (4 - len(shape)) + tuple(shape)
            blob = lay.blobs.add(num=legacy[0], channels=legacy[1], height=legacy[2], width=legacy[3])
            blob.data.extend(arrays[f"{lname}.{param}"].reshape(-1).tolist())
        net.layers.add(name=f"relu_{lname}", type=18)
    net.layers.add(name="pool5", type=17)
    return net.SerializeToString()


SMALL = {  # a shape-checked subset: same layer names and ranks as CaffeNet, tiny sizes
    "conv1.weight": (4, 3, 3, 3), "conv1.bias": (4,),
    "conv2.weight": (6, 2, 3, 3), "conv2.bias": (6,),  # grouped: in/groups
    "fc6.weight": (5, 24), "fc6.bias": (5,),
    "fc8.weight": (3, 5), "fc8.bias": (3,),
}


def _assert_bitwise(state, arrays):
    assert list(state) == list(arrays)
    for key, want in arrays.items():
        got = state[key].numpy()
        assert got.dtype == np.float32 and got.shape == want.shape, key
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{key} differs"


def test_full_caffenet_roundtrip_bitwise_and_forward(caffe_pb, tmp_path):
    """One full-size CaffeNet (20-way head, like the fine-tuned VOC model) through the script."""
    shapes = caffe_import.caffenet_shapes(20)
    arrays = _random_state(shapes, seed=1)
    src = tmp_path / "net.caffemodel"
    src.write_bytes(encode_current(caffe_pb, shapes, arrays))
    del arrays["fc6.weight"]  # free 150 MB; regenerated below only for the comparison
    script = load_script("pretrained/convert_caffemodel.py")
    out = tmp_path / "net.safetensors"
    assert script.main([str(src), "--output", str(out)]) == 0
    arrays = _random_state(shapes, seed=1)
    converted = load_file(str(out))
    _assert_bitwise({k: converted[k] for k in shapes}, arrays)
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["source_sha256"] == sha256_file(src) and meta["num_outputs"] == "20"
    assert meta["source"] == "net.caffemodel"

    # Forward pass: converted file vs the same weights loaded straight from NumPy.
    direct = CaffeNet(num_outputs=20).eval()
    direct.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    net, info = load_network(out)  # the loader every experiment uses
    assert info["num_outputs"] == 20 and info["sha256"] == sha256_file(out)
    x = torch.randn(2, 3, 227, 227, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        a, b = direct.extract(x, ["pool5", "fc8"]), net.extract(x, ["pool5", "fc8"])
    assert torch.equal(a["pool5"], b["pool5"]) and torch.equal(a["fc8"], b["fc8"])
    assert b["fc8"].shape == (2, 20) and a["fc8"].abs().sum() > 0
    # The .caffemodel itself loads too (converted in memory), named by its own checksum.
    raw, raw_info = load_network(src)
    assert raw_info["arch"] == "caffenet" and raw_info["sha256"] == sha256_file(src)
    with torch.no_grad():
        assert torch.equal(raw.extract(x, ["fc8"])["fc8"], b["fc8"])
    del raw

    # Idempotent: a second run keeps the file; --force redoes it.
    mtime = out.stat().st_mtime_ns
    assert script.main([str(src), "--output", str(out)]) == 0
    assert out.stat().st_mtime_ns == mtime


def test_legacy_v1_layers_unpacked_and_4d_fc_blobs(caffe_pb):
    arrays = _random_state(SMALL, seed=2)
    data = encode_v1(caffe_pb, SMALL, arrays)
    net = caffe_proto.parse_net(data)
    assert net.format == "v1 layers"
    fc6 = next(lay for lay in net.layers if lay.name == "fc6")
    assert fc6.type == "InnerProduct" and fc6.blobs[0].shape == (1, 1, 5, 24) and fc6.blobs[0].legacy_shape
    assert next(lay for lay in net.layers if lay.name == "pool5").type == "Pooling"
    state, report = caffe_import.convert_net(net, shapes=SMALL)
    _assert_bitwise(state, arrays)
    assert "pool5" in report.parameter_free and report.num_outputs == 3


def test_current_format_small_with_unknown_fields(caffe_pb):
    arrays = _random_state(SMALL, seed=3)
    net = caffe_proto.parse_net(encode_current(caffe_pb, SMALL, arrays))
    assert net.name == "test" and net.format == "layer"
    assert net.layers[0].name == "data" and net.layers[-1].type == "SigmoidCrossEntropyLoss"
    state, report = caffe_import.convert_net(net, shapes=SMALL)
    _assert_bitwise(state, arrays)
    assert report.mapped == {"conv1": "conv1", "conv2": "conv2", "fc6": "fc6", "fc8": "fc8"}


def test_double_data_is_read(caffe_pb):
    net = caffe_pb["NetParameter"]()
    lay = net.layer.add(name="fc8", type="InnerProduct")
    values = np.random.default_rng(4).standard_normal(6)
    w = lay.blobs.add()
    w.shape.dim.extend([2, 3])
    w.double_data.extend(values.tolist())
    b = lay.blobs.add()
    b.shape.dim.extend([2])
    b.double_data.extend([1.0, -2.0])
    state, report = caffe_import.convert_net(caffe_proto.parse_net(net.SerializeToString()),
                                             shapes={"fc8.weight": (2, 3), "fc8.bias": (2,)})
    assert np.array_equal(state["fc8.weight"].numpy(), values.astype(np.float32).reshape(2, 3))
    assert state["fc8.bias"].tolist() == [1.0, -2.0]
    assert any("double" in n for n in report.notes)


def test_problems_are_named(caffe_pb):
    arrays = _random_state(SMALL, seed=5)
    extra = [("bn1", "BatchNorm", [(4,), (4,)])]
    net = caffe_proto.parse_net(encode_current(caffe_pb, SMALL, arrays, extra_layers=extra))
    with pytest.raises(DataError, match=r"unexpected layer\(s\) with weights: 'bn1' \(BatchNorm"):
        caffe_import.convert_net(net, shapes=SMALL)
    wrong = dict(SMALL, **{"fc6.weight": (5, 25)})
    net = caffe_proto.parse_net(encode_current(caffe_pb, SMALL, arrays))
    with pytest.raises(DataError, match=r"layer 'fc6' weight: shape \(5, 24\) in the .caffemodel, expected \(5, 25\)"):
        caffe_import.convert_net(net, shapes=wrong)
    bigger = dict(SMALL, **{"fc7.weight": (5, 5), "fc7.bias": (5,)})
    with pytest.raises(DataError, match="layer 'fc7' is missing"):
        caffe_import.convert_net(net, shapes=bigger)


def test_renamed_head_is_mapped_and_reported(caffe_pb):
    arrays = _random_state(SMALL, seed=6)
    data = encode_current(caffe_pb, SMALL, arrays).replace(b"fc8", b"fcV")  # same length: still valid
    net = caffe_proto.parse_net(data)
    state, report = caffe_import.convert_net(net, shapes=SMALL)
    assert report.mapped["fc8"] == "fcV" and any("'fcV' as fc8" in n for n in report.notes)
    _assert_bitwise(state, arrays)
    with pytest.raises(DataError, match="not in the file"):
        caffe_import.convert_net(net, shapes=SMALL, renames={"nope": "fc8"})


def test_damaged_files_give_one_clear_error(caffe_pb, tmp_path):
    script = load_script("pretrained/convert_caffemodel.py")
    arrays = _random_state(SMALL, seed=7)
    data = encode_current(caffe_pb, SMALL, arrays)
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable .caffemodel"):
        caffe_import.read_caffemodel(truncated)
    html = tmp_path / "page.caffemodel"
    html.write_bytes(b"<!DOCTYPE html><html><body>Google Drive - virus scan warning</body></html>")
    with pytest.raises(UserError):
        script.main([str(html), "--output", str(tmp_path / "x.safetensors")])
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(UserError, match="file not found"):
        script.main([str(tmp_path / "missing.caffemodel")])
    with pytest.raises(UserError, match="CAFFE_NAME=OUR_NAME"):
        script.main([str(truncated), "--rename", "fc8"])


def test_varint_and_field_reader():
    assert caffe_proto.read_varint(memoryview(bytes([0xAC, 0x02])), 0) == (300, 2)
    # field 100, wire type 2 needs a two-byte key: (100 << 3) | 2 = 802
    number, wire, value, pos = caffe_proto.read_field(memoryview(bytes([0xA2, 0x06, 0x02, 0x41, 0x42])), 0)
    assert (number, wire, bytes(value), pos) == (100, 2, b"AB", 5)
    with pytest.raises(caffe_proto.WireFormatError):
        caffe_proto.read_field(memoryview(bytes([0xA2, 0x06, 0x05, 0x41])), 0)
    # An unpacked float record cut short must be an error, not an endless loop or a silent drop.
    whole = bytes([0x2D]) + np.float32(1.5).tobytes()
    assert caffe_proto.parse_blob(memoryview(whole * 3)).data.tolist() == [1.5] * 3
    with pytest.raises(caffe_proto.WireFormatError, match="truncated"):
        caffe_proto.parse_blob(memoryview(whole * 2 + whole[:3]))

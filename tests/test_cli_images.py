"""Shared CLI plumbing (one line + exit 2 on user errors) and robust image decoding."""

import io as _io

import numpy as np
import pytest
from PIL import Image

from texttopicnet.core import cli
from texttopicnet.core.errors import DataError
from texttopicnet.data import images


def test_run_main_turns_user_error_into_exit_2(capsys):
    def main(argv=None):
        raise DataError("/nowhere/VOC2007: folder not found; run `python data/download.py voc2007`")

    with pytest.raises(SystemExit) as exc:
        cli.run_main(main, [])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nowhere/VOC2007" in err and "Traceback" not in err


def test_parent_parsers_and_print_config(tmp_path, capsys):
    p = cli.make_parser("Stage doc.\n\nMore.", parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser()])
    args = p.parse_args(["--out", str(tmp_path), "--seed", "7"])
    assert args.out == tmp_path and args.seed == 7 and args.workers >= 1 and args.force is False
    cli.print_config("demo", args)
    out = capsys.readouterr().out
    assert "seed" in out and "7" in out and str(tmp_path) in out


def _save(img, path, fmt, **kw):
    img.save(path, fmt, **kw)
    return path


@pytest.mark.parametrize("mode,fmt,ext", [("RGB", "JPEG", "jpg"), ("L", "JPEG", "jpg"), ("CMYK", "JPEG", "jpg"),
                                           ("P", "PNG", "png"), ("RGBA", "PNG", "png"), ("LA", "PNG", "png"),
                                           ("I;16", "PNG", "png"), ("1", "PNG", "png")])
def test_load_resized_any_mode(tmp_path, mode, fmt, ext):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (300, 280, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (300, 280), dtype=np.uint16))
    else:
        img = base.convert(mode)
    path = _save(img, tmp_path / f"x.{ext}", fmt)
    arr = images.load_resized(path, 256)
    assert arr.shape == (256, 256, 3) and arr.dtype == np.uint8
    info = images.probe(path)
    assert (info.width, info.height) == (280, 300)
    assert info.is_jpeg == (fmt == "JPEG")


def test_probe_checks_content_not_extension(tmp_path):
    path = _save(Image.new("RGB", (300, 300)), tmp_path / "fake.jpg", "PNG")
    info = images.probe(path)
    assert info.format == "PNG" and not info.is_jpeg


def test_truncated_jpeg_still_decodes(tmp_path):
    buf = _io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 120, np.uint8)).save(buf, "JPEG")
    path = tmp_path / "trunc.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    assert images.load_resized(path).shape == (256, 256, 3)


@pytest.mark.parametrize("payload", [b"", b"\xff\xd8\xff" + b"\x00" * 10, b"not an image at all"])
def test_corrupt_files_raise_image_read_error(tmp_path, payload):
    path = tmp_path / "bad.jpg"
    path.write_bytes(payload)
    with pytest.raises(images.ImageReadError) as exc:
        images.load_resized(path)
    assert str(path) in str(exc.value)
    with pytest.raises(images.ImageReadError):
        images.probe(path) if payload[:3] != b"\xff\xd8\xff" else images.load_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(images.ImageReadError, match="not found"):
        images.load_rgb(tmp_path / "nope.jpg")


def test_keep_aspect_center_crops(tmp_path):
    arr = np.zeros((200, 400, 3), np.uint8)
    arr[:, :100] = 255  # white left quarter is cropped away when keeping the aspect ratio
    path = _save(Image.fromarray(arr), tmp_path / "wide.png", "PNG")
    warped = images.load_resized(path, 256)
    kept = images.load_resized(path, 256, keep_aspect=True)
    assert warped[:, :32].mean() > 200 and kept[:, :32].mean() < 60


# --- every failure is an ImageReadError with a reason; oversized headers are refused before decoding ---

def _jpeg_claiming(path, w, h):
    """A real 32x32 JPEG whose SOF0 header is patched to claim w x h (written independently of PIL's encoder)."""
    import struct

    buf = _io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    path.write_bytes(bytes(data))
    return path


def _png_claiming(path, w, h):
    """A PNG built by hand (zlib CRCs) whose IHDR claims w x h."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("maker,size", [(_jpeg_claiming, (65000, 65000)), (_png_claiming, (100000, 100000))])
def test_decompression_bomb_is_refused_everywhere(tmp_path, maker, size):
    path = maker(tmp_path / "bomb.img", *size)
    with pytest.raises(Image.DecompressionBombError):  # what PIL alone does: the release's stage 1 crashed here
        Image.open(path)
    for fn in (images.probe, images.check_decodes, images.load_rgb, images.load_resized):
        with pytest.raises(images.ImageReadError) as exc:
            fn(path)
        assert exc.value.reason == "decompression_bomb" and str(path) in str(exc.value)


def test_own_pixel_limit_and_warnings_as_errors(tmp_path):
    import warnings

    path = _jpeg_claiming(tmp_path / "big.jpg", 10000, 10000)  # 1e8 px: PIL only warns (its limit is 89.5M)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python -W error must not turn PIL's warning into a crash
        info = images.probe(path)
        assert (info.width, info.height) == (10000, 10000)
        images.check_decodes(path)  # a truncated body decodes leniently (1/8 scale here)
    with pytest.raises(images.ImageReadError) as exc:
        images.probe(path, max_pixels=10000 * 10000 - 1)
    assert exc.value.reason == "decompression_bomb" and "limit" in str(exc.value)
    small = _save(Image.new("RGB", (300, 200)), tmp_path / "s.png", "PNG")
    with pytest.raises(images.ImageReadError, match="decompression bomb"):
        images.load_rgb(small, max_pixels=300 * 200 - 1)
    assert images.load_rgb(small, max_pixels=300 * 200).size == (300, 200)
    assert images.probe(path, max_pixels=None).width == 10000
    # PIL's process-wide switches are restored after every call.
    from PIL import ImageFile

    assert Image.MAX_IMAGE_PIXELS == 89_478_485 and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_undecodable_pixels_after_a_good_header(tmp_path):
    buf = _io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 90, np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: data.index(b"\xff\xda")])  # every marker before the scan, no scan
    assert images.probe(path).width == 300  # the header reads (the release kept such a file)
    for fn in (images.check_decodes, images.load_rgb, images.load_resized):
        with pytest.raises(images.ImageReadError) as exc:
            fn(path)
        assert exc.value.reason == "undecodable"


@pytest.mark.parametrize("payload,reason", [(b"", "corrupt"), (b"not an image at all", "corrupt"),
                                            (b"\xff\xd8\xff\xe0\x00\x10JFIF", "corrupt")])
def test_reasons_and_pickling(tmp_path, payload, reason):
    import pickle

    path = tmp_path / "x.jpg"
    path.write_bytes(payload)
    with pytest.raises(images.ImageReadError) as exc:
        images.probe(path)
    assert exc.value.reason == reason
    again = pickle.loads(pickle.dumps(exc.value))  # errors cross process pools intact
    assert again.reason == reason and str(again) == str(exc.value)
    with pytest.raises(images.ImageReadError) as exc:
        images.load_rgb(tmp_path / "missing.jpg")
    assert exc.value.reason == "unreadable"
    with pytest.raises(images.ImageReadError) as exc:
        images.load_rgb(tmp_path)  # a folder
    assert exc.value.reason == "unreadable"


def test_real_truncated_voc_image_decodes(shared_data):
    path = shared_data / "voc2007" / "mini" / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not in the sample data")
    assert not path.read_bytes().endswith(b"\xff\xd9")  # really truncated
    images.check_decodes(path)
    assert images.load_resized(path).shape == (256, 256, 3)


def test_threads_decoding_truncated_files_do_not_disturb_each_other(tmp_path):
    # The feature extractor decodes in a thread pool; PIL's truncation switch is process-wide.
    from concurrent.futures import ThreadPoolExecutor

    buf = _io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "trunc.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    good = _save(Image.new("RGB", (50, 40)), tmp_path / "g.png", "PNG")
    jobs = [path if i % 2 else good for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        shapes = list(pool.map(lambda p: images.load_resized(p, 64).shape, jobs))
    assert shapes == [(64, 64, 3)] * len(jobs)
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False and Image.MAX_IMAGE_PIXELS == 89_478_485

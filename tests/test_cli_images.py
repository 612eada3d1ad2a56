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

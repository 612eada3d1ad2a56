"""Packing: every readable image once, bad ones skipped and counted, labels kept aligned, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, load_script
from PIL import Image

from texttopicnet.core.errors import DataError
from texttopicnet.core.io import read_lines
from texttopicnet.data.images import load_resized
from texttopicnet.data.packing import pack_images
from texttopicnet.training.toydata import make_labels_run


def _images(folder, n=5, seed=0):
    """A mix of formats/modes a real collection has: RGB JPEG, PNG, grayscale, CMYK, palette."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (40 + 7 * i, 60, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
        mode, ext = [("RGB", "jpg"), ("RGB", "png"), ("L", "jpg"), ("CMYK", "jpg"), ("P", "png")][i % 5]
        p = folder / f"im{i}.{ext}"
        im.convert(mode).save(p)
        paths.append(str(p))
    return paths


def test_pack_skips_bad_images_and_keeps_alignment(tmp_path):
    good = _images(tmp_path / "img")
    corrupt = tmp_path / "img" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    empty = tmp_path / "img" / "empty.jpg"
    empty.write_bytes(b"")
    paths = [good[0], str(corrupt), good[1], str(tmp_path / "missing.jpg"), good[2], good[3], str(empty), good[4]]
    out = tmp_path / "packed" / "images.npy"
    res = pack_images(paths, out, workers=2, progress=False)
    assert res.kept == [0, 2, 4, 5, 7]
    assert [i for i, _ in res.skipped] == [1, 3, 6]
    assert "missing.jpg" in res.skipped[1][1] and "corrupt.jpg" in res.skipped[0][1]
    store = np.load(out, mmap_mode="r")
    assert store.shape == (5, 256, 256, 3) and store.dtype == np.uint8
    for row, idx in enumerate(res.kept):  # row r holds exactly image kept[r]
        assert np.array_equal(store[row], load_resized(paths[idx]))
    assert sorted(p.name for p in out.parent.iterdir()) == ["images.npy"]  # work files cleaned up


def test_keep_aspect_centre_crops_instead_of_warping(tmp_path):
    arr = np.zeros((100, 400, 3), dtype=np.uint8)
    arr[:, :100] = (255, 0, 0)  # left quarter red, rest black
    Image.fromarray(arr).save(tmp_path / "wide.png")
    warp = pack_images([tmp_path / "wide.png"], tmp_path / "a.npy", progress=False)
    keep = pack_images([tmp_path / "wide.png"], tmp_path / "b.npy", keep_aspect=True, progress=False)
    assert warp.kept == keep.kept == [0]
    red = lambda a: float((a[..., 0] > 128).mean())  # noqa: E731
    assert 0.2 < red(np.load(tmp_path / "a.npy")[0]) < 0.3  # warped: still a quarter red
    assert red(np.load(tmp_path / "b.npy")[0]) == 0.0  # centre crop of the middle: no red


def test_nothing_readable_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="empty"):
        pack_images([], tmp_path / "x.npy")
    with pytest.raises(DataError, match="none of the 2 images"):
        pack_images([tmp_path / "a.jpg", tmp_path / "b.jpg"], tmp_path / "x.npy", progress=False)


def test_killed_pack_resumes_where_it_stopped(tmp_path):
    paths = _images(tmp_path / "img", n=6)
    fifo = tmp_path / "img" / "blocker.jpg"
    os.mkfifo(fifo)  # opening it blocks: the packer is stuck at row 4, rows 0-3 are done
    paths.insert(4, str(fifo))
    out = tmp_path / "packed" / "images.npy"
    code = ("import sys; from texttopicnet.data.packing import pack_images; "
            f"pack_images(sys.argv[1:], {str(out)!r}, workers=1, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, *paths], cwd=ROOT)
    progress = out.with_name(".images.npy.progress")
    deadline = time.time() + 60
    while time.time() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(progress.read_text().splitlines()) == 4 and not out.exists()
    fifo.unlink()
    Image.new("RGB", (50, 50), (10, 200, 30)).save(fifo, format="JPEG")
    res = pack_images(paths, out, workers=1, progress=False)
    assert res.resumed == 4 and res.kept == list(range(7)) and not res.skipped
    fresh = pack_images(paths, tmp_path / "fresh.npy", workers=1, resume=False, progress=False)
    assert fresh.resumed == 0
    assert np.array_equal(np.load(out), np.load(tmp_path / "fresh.npy"))


def test_pack_script_realigns_labels_and_is_idempotent(tmp_path, capsys):
    run = tmp_path / "run"
    labels, paths = make_labels_run(run, n=6, k=4, seed=1, size=32)
    with open(paths[2], "r+b") as fh:  # damage one image beyond repair
        fh.write(b"\x00" * 64)
    script = load_script("cnn/01_pack_images.py")
    assert script.main(["--out", str(run), "--workers", "1"]) == 0
    packed = run / "packed"
    got_labels = np.load(packed / "labels.npy")
    assert np.array_equal(got_labels, labels[[0, 1, 3, 4, 5]])
    assert read_lines(packed / "index.txt") == [paths[i] for i in (0, 1, 3, 4, 5)]
    assert np.load(packed / "images.npy", mmap_mode="r").shape == (5, 256, 256, 3)
    meta = __import__("json").loads((packed / "meta.json").read_text())
    assert meta["skipped_count"] == 1 and meta["skipped"][0]["row"] == 2 and meta["count"] == 5
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image" in out
    before = (packed / "images.npy").stat().st_mtime_ns
    assert script.main(["--out", str(run), "--workers", "1"]) == 0
    assert "already done" in capsys.readouterr().out
    assert (packed / "images.npy").stat().st_mtime_ns == before
    # new labels for the same images (another text space): relabelled, pixels reused
    new = np.random.default_rng(5).random((6, 9)).astype(np.float32)
    np.save(run / "labels" / "labels.npy", new)
    assert script.main(["--out", str(run), "--workers", "1"]) == 0
    assert "relabelled 5 packed images" in capsys.readouterr().out
    assert np.array_equal(np.load(packed / "labels.npy"), new[[0, 1, 3, 4, 5]])
    assert (packed / "images.npy").stat().st_mtime_ns == before
    assert script.main(["--out", str(run), "--workers", "1"]) == 0
    assert "already done" in capsys.readouterr().out
    # other images: packed again
    (run / "labels" / "index.txt").write_text("\n".join(paths[:5]) + "\n")
    np.save(run / "labels" / "labels.npy", new[:5])
    assert script.main(["--out", str(run), "--workers", "1"]) == 0
    assert read_lines(packed / "index.txt") == [paths[i] for i in (0, 1, 3, 4)]


def test_pack_script_reports_missing_or_misaligned_labels(tmp_path):
    script = load_script("cnn/01_pack_images.py")
    with pytest.raises(DataError, match="generate_labels"):
        script.main(["--out", str(tmp_path / "nothing")])
    run = tmp_path / "run"
    make_labels_run(run, n=3, k=2, size=32)
    (run / "labels" / "index.txt").write_text("/a.jpg\n")
    with pytest.raises(DataError, match="aligned"):
        script.main(["--out", str(run)])

"""MIT1003 and Toronto readers on hand-built layouts, and their download entries against a local server."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from test_downloads import LocalServer

from texttopicnet.core.errors import DataError
from texttopicnet.data import downloads
from texttopicnet.vlm import datasets


def _jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _points(h, w, pts):
    m = np.zeros((h, w), np.uint8)
    for y, x in pts:
        m[y, x] = 255
    return m


def mit_members(skip_partner: bool = True) -> dict[str, dict[str, bytes]]:
    """Three archives' members: 2 images with maps (+1 without), raw eye data of one subject."""
    rng = np.random.default_rng(0)
    out = {"ALLSTIMULI.zip": {}, "ALLFIXATIONMAPS.zip": {}, "DATA.zip": {}}
    for name, (h, w), pts in (("i1", (30, 40), [(5, 6), (20, 30)]), ("i2", (24, 36), [(10, 10)])):
        out["ALLSTIMULI.zip"][f"ALLSTIMULI/{name}.jpeg"] = _jpeg(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        out["ALLFIXATIONMAPS.zip"][f"ALLFIXATIONMAPS/{name}_fixPts.jpg"] = _jpeg(_points(h, w, pts))
        dens = (np.linspace(0, 255, w)[None, :] * np.ones((h, 1))).astype(np.uint8)
        out["ALLFIXATIONMAPS.zip"][f"ALLFIXATIONMAPS/{name}_fixMap.jpg"] = _jpeg(dens)
    if skip_partner:
        out["ALLSTIMULI.zip"]["ALLSTIMULI/lonely.jpeg"] = _jpeg(np.zeros((8, 8, 3), np.uint8))
    buf = io.BytesIO()
    savemat(buf, {"i1": {"DATA": {"eyeData": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])}}})
    out["DATA.zip"]["DATA/kae/i1.mat"] = buf.getvalue()
    return out


def toronto_members() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    base = "eyetrackingdata/fixdens/"
    m = {}
    white = np.empty((1, 3), dtype=object)
    for n in (1, 2, 3):
        m[base + f"Original Image Set/{n}.jpg"] = _jpeg(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8))
        m[base + f"Density Maps produced from raw experimental eye tracking data/d{n}.jpg"] = _jpeg(
            rng.integers(0, 255, (20, 28), dtype=np.uint8))
        white[0, n - 1] = _points(20, 28, [(n, n + 2), (10, 20)]).astype(bool)
    buf = io.BytesIO()
    savemat(buf, {"white": white})
    m[base + "origfixdata.mat"] = buf.getvalue()
    m[base + "Raw/subj1/1.fix"] = b"Fixation Listing\n\n 1 10, 10 0.2\nAverage"
    return m


def _write(root: Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_mit1003_reader_on_the_real_layout(tmp_path):
    root = tmp_path / "MIT1003"
    for members in mit_members().values():
        _write(root, members)
    ds = datasets.read_dataset("mit1003", tmp_path)  # the parent folder is found too
    assert [i.name for i in ds.items] == ["i1", "i2"] and ds.skipped["no_fixation_points"] == 1
    item = datasets.load_item(ds, ds.items[0])
    assert item["image"].shape == (30, 40, 3) and item["image"].dtype == np.uint8
    assert sorted(zip(*np.nonzero(item["fixations"]))) == [(5, 6), (20, 30)]  # JPEG artefacts stay below 127
    assert item["density"].shape == (30, 40) and 0 <= item["density"].min() and item["density"].max() <= 1
    assert datasets.mit1003_subjects(root) == ["kae"]
    np.testing.assert_array_equal(datasets.mit1003_eye_samples(root, "kae", "i1"), [[1, 2], [3, 4], [5, 6]])
    with pytest.raises(DataError, match="not found"):
        datasets.mit1003_eye_samples(root, "kae", "../../etc/passwd")


def test_mit1003_link_leaving_the_folder_is_counted(tmp_path):
    root = tmp_path / "MIT1003"
    for members in mit_members(skip_partner=False).values():
        _write(root, members)
    outside = tmp_path / "elsewhere.jpeg"
    outside.write_bytes(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    os.symlink(outside, root / "ALLSTIMULI" / "evil.jpeg")
    ds = datasets.read_mit1003(root)
    assert [i.name for i in ds.items] == ["i1", "i2"] and ds.skipped["outside_collection"] == 1


def test_toronto_reader_on_the_real_layout(tmp_path):
    _write(tmp_path / "Toronto", toronto_members())
    ds = datasets.read_dataset("toronto", tmp_path / "Toronto")  # the unpacked eyetrackingdata/ is found
    assert [i.name for i in ds.items] == ["1", "2", "3"]
    item = datasets.load_item(ds, ds.items[1])
    assert sorted(zip(*np.nonzero(item["fixations"]))) == [(2, 4), (10, 20)]
    assert item["image"].shape == (20, 28, 3) and item["density"].shape == (20, 28)


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="download.py mit1003"):
        datasets.read_dataset("mit1003", tmp_path)
    with pytest.raises(DataError, match="download.py toronto"):
        datasets.read_dataset("toronto", tmp_path)


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def test_download_entries_install_from_a_local_server(tmp_path):
    specs = {s.key: s for s in datasets.DATASETS}
    archives = {name: _zip(members) for name, members in mit_members().items()}
    toronto = _zip(toronto_members())
    with LocalServer() as server:
        server.files.update({f"mit/{k}": v for k, v in archives.items()})
        server.files["bruce/eyetrackingdata.zip"] = toronto
        # the real entries, with this test's archives' checksums where the entry publishes one
        mit = dataclasses.replace(specs["mit1003"], files=tuple(
            dataclasses.replace(f, known_hash=_md5(archives[f.name]) if f.known_hash else None)
            for f in specs["mit1003"].files))
        tor = dataclasses.replace(specs["toronto"], files=(dataclasses.replace(
            specs["toronto"].files[0], known_hash=_md5(toronto)),))
        got = downloads.install(mit, tmp_path, mirrors=[server.url + "mit"], quiet=True, log=lambda *a: None)
        got_t = downloads.install(tor, tmp_path, mirrors=[server.url + "bruce"], quiet=True, log=lambda *a: None)
        assert (tmp_path / "downloads" / "ALLFIXATIONMAPS.zip.sha256").is_file()  # no published hash: recorded
        n = len(server.log)
        assert downloads.install(mit, tmp_path, mirrors=[server.url + "mit"], quiet=True, log=lambda *a: None).skipped
        assert len(server.log) == n
    assert got.target == tmp_path / "MIT1003" and got_t.target == tmp_path / "Toronto"
    ds = datasets.read_mit1003(got.target)
    assert [i.name for i in ds.items] == ["i1", "i2"] and datasets.mit1003_subjects(got.target) == ["kae"]
    ds_t = datasets.read_toronto(got_t.target)
    assert len(ds_t.items) == 3 and (got_t.target / "fixdens" / "origfixdata.mat").is_file()
    # the published entries point at the datasets' own hosts
    assert specs["mit1003"].mirrors[0].startswith("https://people.csail.mit.edu/tjudd/WherePeopleLook")
    assert specs["toronto"].files[0].known_hash == "md5:38d5c02217060d4d2d1a4649cc632af1"

"""Oxford/Paris download entries and the revisited ground truth, installed from a local 127.0.0.1 server."""

from __future__ import annotations

import hashlib
import pickle

import pytest
from test_downloads import LocalServer, _jpeg, _tar

from texttopicnet.core.errors import DataError
from texttopicnet.data import downloads
from texttopicnet.instance import datasets


@pytest.fixture()
def server():
    with LocalServer() as s:
        yield s


def _gt(queries: dict[str, tuple[str, list[str]]], prefix: str = "") -> bytes:
    members = {}
    for name, (qid, good) in queries.items():
        members[f"{name}_query.txt"] = f"{prefix}{qid} 1.0 2.0 5.5 7.0\n".encode()
        members[f"{name}_good.txt"] = "".join(g + "\n" for g in good).encode()
        members[f"{name}_ok.txt"] = b""
        members[f"{name}_junk.txt"] = b""
    return _tar(members, "w:gz")


def test_oxford_and_paris_entries_install_and_load(server, tmp_path):
    spec = {s.key: s for s in datasets.DATASETS}
    assert not set(datasets.ALL_KEYS) & set(downloads.DATASETS)  # new names only
    ox_images = _tar({f"{i}.jpg": _jpeg(n) for n, i in enumerate(["all_souls_000001", "all_souls_000002", "x_1"])},
                     "w:gz")
    server.files.update({"ox/oxbuild_images-v1.tgz": ox_images,
                         "ox/gt_files_170407.tgz": _gt({"all_souls_1": ("all_souls_000001",
                                                                        ["all_souls_000001", "all_souls_000002"])},
                                                       prefix="oxc1_")})
    root = tmp_path / "data"
    res = downloads.install(spec["oxford5k"], root, mirrors=[server.url + "ox"], quiet=True)
    assert not res.skipped and (root / "Oxford5k" / "jpg" / "x_1.jpg").is_file()
    sidecar = root / "downloads" / "oxbuild_images-v1.tgz.sha256"
    assert sidecar.read_text().split()[0] == hashlib.sha256(ox_images).hexdigest()  # no published hash: recorded
    ds, rev = datasets.load("oxford5k", root)
    assert rev is None and len(ds.image_ids) == 3 and ds.queries[0].image_id == "all_souls_000001"
    assert ds.queries[0].positives == ("all_souls_000001", "all_souls_000002")

    # Paris keeps its images in paris/<landmark>/ inside the archives
    p1 = _tar({"paris/defense/paris_defense_000001.jpg": _jpeg(1)}, "w:gz")
    p2 = _tar({"paris/eiffel/paris_eiffel_000001.jpg": _jpeg(2)}, "w:gz")
    server.files.update({"pa/paris_1-v1.tgz": p1, "pa/paris_2-v1.tgz": p2,
                         "pa/paris_120310.tgz": _gt({"defense_1": ("paris_defense_000001", ["paris_defense_000001"]),
                                                     "eiffel_1": ("paris_eiffel_000001", ["paris_eiffel_000001"])})})
    downloads.install(spec["paris6k"], root, mirrors=[server.url + "pa"], quiet=True)
    ds, _ = datasets.load("paris6k", root)
    assert sorted(ds.image_ids) == ["paris_defense_000001", "paris_eiffel_000001"] and len(ds.queries) == 2
    assert datasets.PARTNERS["oxford5k"] == "paris6k"


def test_revisited_ground_truth_file_set(server, tmp_path):
    root = tmp_path / "data"
    (root / "Oxford5k" / "jpg").mkdir(parents=True)
    for n, i in enumerate(("a", "b", "q")):
        (root / "Oxford5k" / "jpg" / f"{i}.jpg").write_bytes(_jpeg(n))
    gnd = pickle.dumps({"imlist": ["a", "b"], "qimlist": ["q"],
                        "gnd": [{"bbx": [0, 0, 4, 4], "easy": [0], "hard": [1], "junk": []}]})
    server.files["rox/gnd_roxford5k.pkl"] = gnd
    spec = datasets.file_spec("roxford5k_gnd")
    target = datasets.install_files(spec, root, mirrors=[server.url + "rox"], quiet=True, log=lambda m: None)
    assert (target / "gnd_roxford5k.pkl").read_bytes() == gnd and (target / "meta.json").is_file()
    again = []
    datasets.install_files(spec, root, mirrors=[server.url + "rox"], quiet=True, log=again.append)
    assert again and again[0].startswith("already done")
    ds, _ = datasets.load("roxford5k", root)
    assert ds.protocol == "revisited" and ds.image_ids == ["a", "b"]
    q = ds.queries[0]
    assert q.image_id == "q" and q.good == ("a",) and q.hard == ("b",)
    res = ds.evaluate({q.name: ["b", "a"]})
    assert res["easy"]["map"] == pytest.approx(1.0)     # b is junk in Easy
    assert res["hard"]["map"] == pytest.approx(1.0)     # a is junk in Hard
    assert res["medium"]["map"] == pytest.approx(1.0)


def test_distractor_parts_are_fetched_and_left_for_unrar(server, tmp_path):
    spec = datasets.file_spec("flickr100k")
    assert len(spec.files) == 40 and not spec.copy
    small = datasets.FileSetSpec("toyrar", "Toy", spec.files[:2], (server.url + "rar",), copy=False,
                                 manual_step=spec.manual_step)
    for f in small.files:
        server.files[f"rar/{f.name}"] = b"Rar!" + f.name.encode()
    logs = []
    cache = datasets.install_files(small, tmp_path, quiet=True, log=logs.append)
    assert (cache / "oxc1_100k.part01.rar").is_file() and any("unrar x" in m for m in logs)
    with pytest.raises(DataError):
        datasets.install_files(datasets.FileSetSpec("gone", "Gone", (downloads.RemoteFile("nothing.pkl"),),
                                                    (server.url,)), tmp_path, quiet=True, retries=0,
                               log=lambda m: None)


def test_registry_refuses_unknown_layouts_and_paths_leaving_the_root(tmp_path):
    with pytest.raises(DataError, match="Oxford layout"):
        datasets.load("nothing_here", tmp_path)
    with pytest.raises(DataError, match="leaves the data root"):
        datasets.load("../elsewhere", tmp_path)

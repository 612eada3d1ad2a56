"""Published artefacts: training_labels40.json -> our labels format (rows kept as published, keys kept
inside the collection), and pretrained/download.py end to end against a local HTTP server (a real gensim
LDA saved the release's way: the dictionary saved before filter_extremes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_script
from gensim.corpora import Dictionary
from gensim.models import LdaModel
from test_downloads import LocalServer

from texttopicnet.core import io, provenance
from texttopicnet.core.errors import DataError
from texttopicnet.weights.published import ARTEFACTS, convert_training_labels

K = 40


def _collection(tmp_path):
    coll = tmp_path / "ImageCLEF_Wikipedia"
    for sub, stem in (("0", "1"), ("0", "2"), ("1", "3")):
        (coll / "images" / sub).mkdir(parents=True, exist_ok=True)
        (coll / "images" / sub / f"{stem}.jpg").write_bytes(b"\xff\xd8 not decoded here")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"\xff\xd8 outside the collection")
    (coll / "images" / "0" / "link.jpg").symlink_to(outside)  # a link that leads out of the collection
    return coll


def _release_row(rng):
    """A row as the release wrote it: topics under 0.01 are 0, the rest unnormalised (sum < 1)."""
    row = rng.dirichlet(np.full(K, 0.3))
    return np.where(row >= 0.01, row, 0.0)


def _labels_json(tmp_path) -> tuple:
    rng = np.random.default_rng(0)
    good = [_release_row(rng) for _ in range(3)]
    data = {
        "images/0/1.jpg": [float(x) for x in good[0]],
        "/media/authors/ImageCLEF_Wikipedia/images/0/2.jpg": [float(x) for x in good[1]],  # foreign absolute
        "images/1/3.jpg": [float(x) for x in good[2]],
        "images/9/missing.jpg": [1.0 / K] * K,
        "images/0/nan.jpg": [float("nan")] + [0.1] * (K - 1),
        "images/0/neg.jpg": [-0.5] + [0.1] * (K - 1),
        "images/0/short.jpg": [0.5, 0.5],
        "images/0/zero.jpg": [0.0] * K,
        "images/0/big.jpg": [0.5] * K,                          # sums to 20
        "../secret.jpg": [float(x) for x in good[0]],           # climbs out of the collection
        "images/0/link.jpg": [float(x) for x in good[0]],       # symlink to a file outside
        "/etc/hostname": [float(x) for x in good[0]],           # absolute, elsewhere, no images/ part
    }
    path = tmp_path / "training_labels40.json"
    # json.dumps writes NaN for float('nan'), as Python 2's json did in the original.
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, good


def test_labels_conversion_with_collection(tmp_path, capsys):
    path, good = _labels_json(tmp_path)
    coll = _collection(tmp_path)
    out = tmp_path / "run" / "labels"
    counts = convert_training_labels(path, out, collection=coll)
    assert counts["kept"] == 3 and counts["entries"] == 12 and counts["num_topics"] == K
    assert counts["skipped"] == {"image_not_found": 1, "nan_or_inf": 1, "negative": 1, "wrong_length": 1,
                                 "zero_sum": 1, "sum_above_one": 1, "outside_collection": 3}
    assert counts["outside_collection"] == 3
    labels = np.load(out / "labels.npy")
    assert labels.dtype == np.float32 and labels.shape == (3, K)
    # The published rows, unchanged: zeros under the cut-off, sums a little under 1.
    for row, want in zip(labels, good):
        assert np.array_equal(row, want.astype(np.float32))
    assert (labels == 0).any() and (labels.sum(1) < 1).all()
    index = io.read_lines(out / "index.txt")
    assert index == [str(coll / "images/0/1.jpg"), str(coll / "images/0/2.jpg"), str(coll / "images/1/3.jpg")]
    assert provenance.stage_is_done(out, "labels")
    meta = provenance.read_meta(out)
    assert meta["source"] == "published" and meta["paths_resolved"] is True
    assert "skipped 1 of 12 entries: negative" in capsys.readouterr().out
    # Idempotent, and the pack stage's reader accepts the result.
    mtime = (out / "labels.npy").stat().st_mtime_ns
    assert convert_training_labels(path, out, collection=coll) == counts
    assert (out / "labels.npy").stat().st_mtime_ns == mtime
    pack = load_script("cnn/01_pack_images.py")
    arr, paths = pack._read_inputs(out)
    assert arr.shape == (3, K) and paths == index


def test_labels_conversion_without_collection_keeps_keys(tmp_path):
    path, _ = _labels_json(tmp_path)
    counts = convert_training_labels(path, tmp_path / "labels")
    # Nothing is read without a collection: missing images, the link and /etc/hostname stay; ".." is refused.
    assert counts["kept"] == 6 and counts["skipped"]["outside_collection"] == 1
    assert io.read_lines(tmp_path / "labels" / "index.txt")[0] == "images/0/1.jpg"


def test_labels_conversion_renormalize_option(tmp_path):
    path, good = _labels_json(tmp_path)
    out = tmp_path / "dense"
    convert_training_labels(path, out, collection=_collection(tmp_path), renormalize=True)
    labels = np.load(out / "labels.npy")
    assert np.allclose(labels.sum(1), 1.0, atol=1e-6)
    for row, want in zip(labels, good):
        assert np.allclose(row, want / want.sum(), rtol=1e-6)
    assert provenance.read_meta(out)["renormalized"] is True


def test_bad_label_files_are_user_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": [0.5, 0.5')  # truncated download
    with pytest.raises(DataError, match="not a readable JSON"):
        convert_training_labels(bad, tmp_path / "o1")
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="expected a non-empty JSON object"):
        convert_training_labels(bad, tmp_path / "o2")
    bad.write_text(json.dumps({"images/x.jpg": [0.5, 0.5]}), encoding="utf-8")
    with pytest.raises(DataError, match="no usable entry under"):
        convert_training_labels(bad, tmp_path / "o3", collection=_collection(tmp_path))
    assert not (tmp_path / "o3" / "labels.npy").exists()
    with pytest.raises(DataError, match="file not found"):
        convert_training_labels(tmp_path / "nope.json", tmp_path / "o4")


def _published_lda(folder):
    """A real 40-topic gensim LDA saved as the release saved it: .lda + .lda.state + dictionary.dict,
    the dictionary saved BEFORE filter_extremes(no_below=20, no_above=0.5)."""
    docs = ([["river", "water", "bridge", "city"], ["music", "guitar", "song", "band"],
             ["water", "sea", "ship", "river"], ["song", "album", "band", "music"]] * 10
            + [[f"rare{i}", "river"] for i in range(5)])
    dictionary = Dictionary(docs)
    dictionary.save(str(folder / "dictionary.dict"))
    dictionary.filter_extremes(no_below=20, no_above=0.5)
    # Kept: water, music, song, band (each in 20 of 45 documents); river (25) is in more than half.
    assert sorted(dictionary.token2id) == ["band", "music", "song", "water"]
    lda = LdaModel([dictionary.doc2bow(d) for d in docs], id2word=dictionary, num_topics=K, passes=2,
                   random_state=0)
    lda.save(str(folder / "ldamodel40.lda"))
    return {name: (folder / name).read_bytes() for name in ("ldamodel40.lda", "ldamodel40.lda.state",
                                                            "dictionary.dict")}


def test_download_script_lda_and_labels(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    files = _published_lda(src)
    files["training_labels40.json"] = _labels_json(src)[0].read_bytes()
    coll = _collection(tmp_path)
    script = load_script("pretrained/download.py")
    dest, labels_out = tmp_path / "pretrained", tmp_path / "run" / "labels"
    argv = ["--dest", str(dest), "--only", "lda", "labels", "--labels-out", str(labels_out),
            "--collection", str(coll), "--quiet"]
    with LocalServer() as server:
        server.files.update({f"pub/{n}": b for n, b in files.items()})
        assert script.main(argv + ["--url", server.url + "pub"]) == 0
        out = capsys.readouterr().out
        assert f"LDA: {K} topics, 4 words" in out and "labels: 3 of 12 images" in out
        for name, body in files.items():
            assert (dest / name).read_bytes() == body
            assert (dest / f"{name}.sha256").read_text().split()[0] == io.sha256_file(dest / name)
        assert np.load(labels_out / "labels.npy").shape == (3, K)
        n = len(server.log)
        assert script.main(argv + ["--url", server.url + "pub"]) == 0  # everything already there
        assert len(server.log) == n


def test_download_script_rejects_a_web_page_as_model(tmp_path, monkeypatch):
    script = load_script("pretrained/download.py")
    name = ARTEFACTS[0].name
    with LocalServer() as server:
        server.files[name] = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
        monkeypatch.setenv("TEXTTOPICNET_PRETRAINED_URL", server.url)
        with pytest.raises(DataError, match="web page instead of the file"):
            script.main(["--dest", str(tmp_path), "--only", "model", "--quiet"])
    assert list(tmp_path.iterdir()) == []  # no model, no .part, no .unverified, no sidecar

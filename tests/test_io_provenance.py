"""Atomic writes, meta.json provenance and the stage-done check."""

import json
import os

import numpy as np
import pytest

from texttopicnet.core import io, provenance


def test_atomic_open_leaves_no_file_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with io.atomic_open(target) as fh:
            fh.write("{half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is cleaned up too


def test_atomic_open_keeps_old_content_on_error(tmp_path):
    target = tmp_path / "out.txt"
    io.write_text(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_open(target) as fh:
            fh.write("new but unfinished")
            raise KeyboardInterrupt
    assert target.read_text() == "old"


def test_save_npy_roundtrip_and_exact_name(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    io.save_npy(tmp_path / "labels.npy", arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), arr)


def test_write_lines_rejects_newlines(tmp_path):
    io.write_lines(tmp_path / "index.txt", ["a", "b c"])
    assert io.read_lines(tmp_path / "index.txt") == ["a", "b c"]
    with pytest.raises(ValueError):
        io.write_lines(tmp_path / "bad.txt", ["a\nb"])
    assert not (tmp_path / "bad.txt").exists()


def test_json_numpy_values(tmp_path):
    io.write_json(tmp_path / "x.json", {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 0.5, "b": 3, "c": [0, 1]}


def test_meta_marks_stage_done_and_detects_changes(tmp_path):
    out = tmp_path / "stage"
    out.mkdir()
    data = out / "labels.npy"
    io.save_npy(data, np.ones((2, 3), np.float32))
    assert not provenance.stage_is_done(out, "labels")
    provenance.write_meta(out, "labels", {"seed": 3, "out": tmp_path}, inputs=[data], outputs=[data])
    meta = provenance.read_meta(out)
    assert meta["stage"] == "labels" and meta["args"]["seed"] == 3 and meta["args"]["out"] == str(tmp_path)
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["outputs"] == {"labels.npy": io.sha256_file(data)}
    assert provenance.stage_is_done(out, "labels")
    assert not provenance.stage_is_done(out, "other-stage")
    io.save_npy(data, np.zeros((2, 3), np.float32))  # an output changed after the stage finished
    assert not provenance.stage_is_done(out, "labels")
    provenance.write_meta(out, "labels", {}, outputs=[data])
    os.remove(data)
    assert not provenance.stage_is_done(out, "labels")
    provenance.invalidate(out)
    assert provenance.read_meta(out) is None


def test_large_outputs_fingerprinted_by_size(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_HASH_LIMIT", 10)
    big = tmp_path / "images.npy"
    big.write_bytes(b"x" * 100)
    provenance.write_meta(tmp_path, "pack", {}, outputs=[big])
    assert provenance.read_meta(tmp_path)["outputs"]["images.npy"] == "size:100"
    assert provenance.stage_is_done(tmp_path, "pack")
    big.write_bytes(b"x" * 50)  # truncated
    assert not provenance.stage_is_done(tmp_path, "pack")


def test_args_changed_compares_recorded_arguments(tmp_path):
    import argparse
    from pathlib import Path

    out = tmp_path / "stage"
    out.mkdir()
    assert provenance.args_changed(out, {"space": "lda"}, ["space"]) == {}  # nothing recorded: nothing to compare
    provenance.write_meta(out, "lda", argparse.Namespace(space="lda", pairs=Path("/r/pairs.tsv"), opts=["a=1"],
                                                         workers=2))
    same = {"space": "lda", "pairs": Path("/r/pairs.tsv"), "opts": ("a=1",), "workers": 8}
    assert provenance.args_changed(out, same, ["space", "pairs", "opts"]) == {}  # workers not compared
    other = {**same, "space": "word2vec", "opts": ["a=2"]}
    assert provenance.args_changed(out, other, ["space", "pairs", "opts"]) == {
        "space": ("lda", "word2vec"), "opts": (["a=1"], ["a=2"])}
    assert "--space 'lda' -> 'word2vec'" in provenance.format_changes({"space": ("lda", "word2vec")})
    # A meta.json from before an option existed: the option's default stands for the recorded value.
    assert provenance.args_changed(out, {"target": None}, ["target"], defaults={"target": None}) == {}
    assert provenance.args_changed(out, {"target": "x"}, ["target"], defaults={"target": None}) == {
        "target": (None, "x")}
    assert "target" in provenance.args_changed(out, {"target": None}, ["target"])  # no default: changed


def test_remove_stale_outputs_touches_only_recorded_files(tmp_path):
    out = tmp_path / "lda"
    out.mkdir()
    (tmp_path / "space").mkdir()
    old = [out / "ldamodel40.lda", out / "dictionary.dict", tmp_path / "space" / "w.model"]
    for p in old:
        p.write_text("x")
    (out / "tokens.txt").write_text("cache")  # not an output: kept
    provenance.write_meta(out, "lda", {}, outputs=old)
    previous = provenance.recorded_outputs(out)
    assert sorted(previous) == sorted(old)
    (out / "dictionary.dict").write_text("new")
    removed = provenance.remove_stale_outputs(previous, [out / "dictionary.dict", out / "ldamodel8.lda"])
    assert sorted(removed) == sorted([out / "ldamodel40.lda", tmp_path / "space" / "w.model"])
    assert (out / "dictionary.dict").read_text() == "new" and (out / "tokens.txt").is_file()
    assert (tmp_path / "space").is_dir()

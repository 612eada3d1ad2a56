"""The search stage scripts (search/01_build_index.py, 02_serve.py, 03_evaluate.py) and the
pipeline's search stage and printed serve command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import test_search_helpers as h
from conftest import load_script

from texttopicnet.core.errors import UserError
from texttopicnet.search.index import load_index


def test_build_then_evaluate_scripts(tmp_path, capsys):
    build = load_script("search/01_build_index.py")
    evaluate = load_script("search/03_evaluate.py")
    h.write_images(tmp_path / "images", 6)
    (tmp_path / "images" / "ocean" / "empty.jpg").write_bytes(b"")
    h.lda_space().save(tmp_path / "space")
    argv = ["--out", str(tmp_path), "--weights", "random", "--space", str(tmp_path / "space"),
            "--images", f"folder:{tmp_path / 'images'}", "--categories-from-folders", "--workers", "1",
            "--device", "cpu", "--dtype", "float16"]
    assert build.main(argv) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image(s): {'corrupt': 1}" in out
    assert f"python search/02_serve.py --index {tmp_path / 'search'}" in out
    idx = load_index(tmp_path / "search")
    assert len(idx) == 6 and idx.embeddings.dtype.name == "float16"
    meta = json.loads((tmp_path / "search" / "meta.json").read_text())
    assert meta["stage"] == "search_index" and meta["images"] == 6
    assert build.main(argv) == 0 and "already done" in capsys.readouterr().out

    assert evaluate.main(["--index", str(tmp_path / "search"), "--protocol", "mirflickr_labels"]) == 0
    res = json.loads((tmp_path / "search" / "eval" / "mirflickr_labels-l2" / "results.json").read_text())
    # category folder names ocean / forest / city are words of the little space: one query each
    assert res["n_queries"] == 3 and 0 < res["map"] <= 1 and set(res["per_label"]) == set(h.CATEGORIES)
    assert (tmp_path / "search" / "eval" / "mirflickr_labels-l2" / "results.md").read_text().startswith("# ")


def test_build_script_refuses_mismatched_network_and_bad_sources(tmp_path):
    build = load_script("search/01_build_index.py")
    h.write_images(tmp_path / "images", 1)
    h.lda_space().save(tmp_path / "space")
    base = ["--out", str(tmp_path), "--space", str(tmp_path / "space"), "--device", "cpu", "--workers", "1"]
    with pytest.raises(UserError, match="image source"):
        build.main(base + ["--weights", "random", "--images", "images"])
    with pytest.raises(UserError, match="not found"):
        build.main(base + ["--weights", "random", "--images", f"folder:{tmp_path / 'nope'}"])
    with pytest.raises(UserError, match="weights file not found"):
        build.main(base + ["--images", f"folder:{tmp_path / 'images'}"])  # default OUT/train/model.safetensors


def test_serve_script_checks_its_arguments(tmp_path):
    serve = load_script("search/02_serve.py")
    with pytest.raises(UserError, match="port"):
        serve.main(["--index", str(tmp_path), "--port", "70000"])
    with pytest.raises(UserError, match="no search index"):
        serve.main(["--index", str(tmp_path)])
    args = serve.build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.index == Path("runs/demo/search")


def test_pipeline_search_stage_and_serve_command(tmp_path, monkeypatch):
    from texttopicnet import pipeline

    s = pipeline.demo_settings(tmp_path / "run")
    stages = {st.name: st for st in pipeline.build_stages()}
    names = [st.name for st in pipeline.build_stages()]
    assert names.index("search") == names.index("retrieval") + 1 and names[-1] == "report"
    st = stages["search"]
    assert st.enabled(s) and not st.enabled(pipeline.paper_settings(tmp_path / "p", tmp_path / "data"))
    (script, argv), = st.commands(s)
    assert script == "search/01_build_index.py"
    assert argv[argv.index("--images") + 1] == f"folder:{s.data_root / 'ImageCLEF_Wikipedia' / 'images'}"
    assert argv[argv.index("--weights") + 1] == str(s.trained_weights)
    assert st.outputs(s) == [s.run_dir / "search"] and set(st.deps) == {"train", "lda", "corpus"}

    assert pipeline.serve_command(s) is None  # no index yet: nothing to serve
    (s.run_dir / "search").mkdir(parents=True)
    (s.run_dir / "search" / "index.json").write_text("{}")
    monkeypatch.chdir(pipeline.PROJECT_ROOT)
    cmd = shlex.split(pipeline.serve_command(s))
    assert cmd[:2] == ["python", "search/02_serve.py"]
    serve = load_script("search/02_serve.py")
    args = serve.build_parser().parse_args(cmd[2:])
    assert (pipeline.PROJECT_ROOT / args.index).resolve() == (s.run_dir / "search").resolve()

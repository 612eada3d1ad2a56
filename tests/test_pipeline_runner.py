"""The pipeline runner's skip / force / from / only rules, on a graph of tiny real scripts."""

import sys
import textwrap
from pathlib import Path

import pytest

from texttopicnet.pipeline import Runner, Settings, Stage, StageFailed

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from texttopicnet.core import io, provenance
    out = Path(sys.argv[1])
    force = "--force" in sys.argv
    if provenance.stage_is_done(out, {name!r}) and not force:
        sys.exit(0)
    if (Path(sys.argv[2]) / "fail_{name}").exists():
        sys.exit(3)
    out.mkdir(parents=True, exist_ok=True)
    io.write_text(out / "result.txt", {name!r})
    with open(Path(sys.argv[2]) / "calls.txt", "a") as fh:
        fh.write({name!r} + "\\n")
    provenance.write_meta(out, {name!r}, {{}}, outputs=[out / "result.txt"])
''')


@pytest.fixture()
def graph(tmp_path):
    root = Path(__file__).resolve().parent.parent
    scripts = {}
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.py"
        path.write_text(SCRIPT.format(root=str(root), name=name))
        scripts[name] = path
    run = tmp_path / "run"

    def stage(name, deps):
        return Stage(name, f"stage {name}", lambda s, n=name: [(str(scripts[n]), [str(s.run_dir / n), str(tmp_path)])],
                     lambda s, n=name: [s.run_dir / n], deps=deps)

    stages = [stage("a", ()), stage("b", ("a",)), stage("c", ("b",))]
    settings = Settings(run_dir=run, data_root=tmp_path)
    calls = tmp_path / "calls.txt"

    def run_and_calls(**kw):
        if calls.exists():
            calls.unlink()
        Runner(settings, stages, log=lambda m: None).run(**kw)
        return calls.read_text().split() if calls.exists() else []

    return run_and_calls, run, tmp_path


def test_runs_then_skips_everything(graph):
    run_and_calls, run, _ = graph
    assert run_and_calls() == ["a", "b", "c"]
    assert run_and_calls() == []


def test_deleting_a_stage_reruns_it_and_downstream_only(graph):
    run_and_calls, run, _ = graph
    run_and_calls()
    import shutil

    shutil.rmtree(run / "b")
    assert run_and_calls() == ["b", "c"]
    assert run_and_calls() == []


def test_edited_output_is_not_trusted(graph):
    run_and_calls, run, _ = graph
    run_and_calls()
    (run / "c" / "result.txt").write_text("tampered")
    assert run_and_calls() == ["c"]


def test_force_from_only(graph):
    run_and_calls, run, _ = graph
    run_and_calls()
    assert run_and_calls(force=True) == ["a", "b", "c"]
    assert run_and_calls(from_stage="b") == ["b", "c"]
    assert run_and_calls(only="a") == ["a"]
    # 'a' changed, so b and c are stale now and rerun on the next plain run
    assert run_and_calls() == ["b", "c"]


def test_failed_stage_names_stage_and_command(graph):
    run_and_calls, run, tmp = graph
    (tmp / "fail_b").touch()
    with pytest.raises(StageFailed) as exc:
        run_and_calls()
    assert exc.value.stage == "b" and "b.py" in exc.value.command and "exit code 3" in str(exc.value)
    (tmp / "fail_b").unlink()
    assert run_and_calls() == ["b", "c"]  # a was finished and is kept


def test_run_pipeline_missing_real_data_and_published_files_are_clear_errors(tmp_path, capsys):
    from conftest import load_script

    pipeline = load_script("run_pipeline.py")
    with pytest.raises(SystemExit) as exc:
        from texttopicnet.core import cli

        cli.run_main(pipeline.main, ["--dataset", "paper", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ImageCLEF_Wikipedia" in err and "data/download.py" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        cli.run_main(pipeline.main, ["--weights", "published", "--pretrained-dir", str(tmp_path),
                                     "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    assert "pretrained/download.py" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started

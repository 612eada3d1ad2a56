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


def test_changed_command_line_reruns_that_stage_and_downstream(tmp_path):
    """A run folder reused with another configuration: the stage whose command changed is redone."""
    root = Path(__file__).resolve().parent.parent
    scripts = {}
    for name in ("a", "b", "c"):
        scripts[name] = tmp_path / f"{name}.py"
        scripts[name].write_text(SCRIPT.format(root=str(root), name=name))

    def stage(name, deps, extra=lambda s: []):
        return Stage(name, name, lambda s, n=name: [(str(scripts[n]), [str(s.run_dir / n), str(tmp_path), *extra(s)])],
                     lambda s, n=name: [s.run_dir / n], deps=deps)

    # b's command carries the loss; the script sees --force when its finished outputs are stale
    stages = [stage("a", ()), stage("b", ("a",), lambda s: ["--loss", s.loss]), stage("c", ("b",))]
    calls = tmp_path / "calls.txt"

    def run_with(loss):
        calls.unlink(missing_ok=True)
        Runner(Settings(run_dir=tmp_path / "run", data_root=tmp_path, loss=loss), stages, log=lambda m: None).run()
        return calls.read_text().split() if calls.exists() else []

    assert run_with("sigmoid_ce") == ["a", "b", "c"]
    assert run_with("sigmoid_ce") == []
    assert run_with("triplet") == ["b", "c"]
    assert run_with("triplet") == []


def test_configuration_reaches_every_stage_command(tmp_path):
    """--space/--arch/--loss/--corpus as the stage scripts' own options (the README's commands)."""
    from texttopicnet.pipeline import build_stages, demo_settings

    s = demo_settings(tmp_path, space="word2vec", space_options=("dim=64",), arch="resnet50", loss="triplet",
                      corpus="manifest:" + str(tmp_path / "data" / "m.jsonl"), target="minshift_max")
    cmds = {st.name: st.commands(s) for st in build_stages() if st.enabled(s)}
    pairs = cmds["pairs"][0][1]
    assert pairs[pairs.index("--corpus") + 1] == "manifest:" + str(tmp_path / "data" / "m.jsonl")
    lda = cmds["lda"][0][1]
    assert lda[lda.index("--space") + 1] == "word2vec" and "--space-option=dim=64" in lda
    assert "--num-topics" not in lda  # LDA's options mean nothing to word2vec
    labels = cmds["labels"][0][1]
    assert labels[labels.index("--target") + 1] == "minshift_max"
    train = cmds["train"][0][1]
    assert train[train.index("--arch") + 1] == "resnet50" and train[train.index("--loss") + 1] == "triplet"
    (trained_svm, random_svm) = [argv for _, argv in cmds["voc_svm"]]
    assert random_svm[random_svm.index("--arch") + 1] == "resnet50" and "--arch" not in trained_svm
    assert trained_svm[trained_svm.index("--layers") + 1:] == ["avgpool"]  # the backbone's default layer
    for _, argv in cmds["retrieval"] + cmds["search"]:
        assert argv[argv.index("--space") + 1] == str(tmp_path / "space") and "--lda" not in argv
    # the default configuration passes none of these: the paper's command lines, unchanged
    d = demo_settings(tmp_path)
    flat = [a for st in build_stages() if st.enabled(d) for _, argv in st.commands(d) for a in argv]
    assert not {"--corpus", "--space", "--target", "--arch", "--loss"} & set(flat) - {"--space"}
    assert "--lda" in flat and flat[flat.index("--layers") + 1:flat.index("--layers") + 4] == ["pool5", "fc6", "fc7"]
    vlm_train = dict(next(st for st in build_stages() if st.name == "vlm").commands(d))["experiments/vlm/01_train_vlm.py"]
    assert "--preset" not in vlm_train  # the script's own default: the quick demo preset
    long = dict(next(st for st in build_stages() if st.name == "vlm").commands(
        demo_settings(tmp_path, vlm_preset="demo_long")))
    train = long["experiments/vlm/01_train_vlm.py"]
    assert train[train.index("--preset") + 1] == "demo_long"
    assert "--layer-weight" not in long["experiments/vlm/05_reconstruct.py"]  # demo_long has no conv5 to weight


def test_published_weights_refuse_another_configuration(tmp_path, capsys):
    from conftest import load_script

    from texttopicnet.core import cli

    pipeline = load_script("run_pipeline.py")
    with pytest.raises(SystemExit) as exc:
        cli.run_main(pipeline.main, ["--weights", "published", "--space", "word2vec", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--weights published" in capsys.readouterr().err


def test_compare_runs_side_by_side(tmp_path):
    """Every cell comes from the runs' own files; a result one run lacks is '-'."""
    import json

    from texttopicnet.report.compare import compare_runs

    def fake_run(name, conf, voc, ret):
        run = tmp_path / name
        (run / "voc_svm" / "trained").mkdir(parents=True)
        (run / "pipeline.json").write_text(json.dumps({"configuration": conf, "stages": {"train": {"seconds": 12.5}}}))
        for layer, m in voc.items():
            (run / "voc_svm" / "trained" / f"results_{layer}.json").write_text(json.dumps({"map": m}))
        (run / "retrieval" / "trained").mkdir(parents=True)
        (run / "retrieval" / "trained" / "results.json").write_text(
            json.dumps({"img2txt_map": ret, "txt2img_map": ret / 2, "score": "kl"}))
        return run

    a = fake_run("demo", {"space": "lda", "arch": "caffenet", "loss": "sigmoid_ce"}, {"fc7": 0.5}, 0.8)
    b = fake_run("w2v", {"space": "word2vec", "arch": "resnet50", "loss": "triplet"}, {"avgpool": 0.25}, 0.6)
    md = compare_runs([a, b]).read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")[1:]]
            for line in md.splitlines() if line.startswith("| ")}
    assert rows["space"] == ["lda", "word2vec"] and rows["arch"] == ["caffenet", "resnet50"]
    assert rows["VOC SVM mAP (%), trained, fc7"] == ["50.00", "-"]
    assert rows["VOC SVM mAP (%), trained, avgpool"] == ["-", "25.00"]
    assert rows["retrieval mAP, text -> images, trained (kl)"] == ["0.400", "0.300"]
    assert rows["seconds: train"] == ["12.5", "12.5"]
    with pytest.raises(Exception, match="pipeline.json"):
        compare_runs([a, tmp_path / "nothing"])


def test_the_report_depends_on_every_stage_before_it():
    """The report summarises the whole run: each other stage is upstream of it, so rerunning any of them (e.g.
    the vlm stage with --vlm-preset demo_long) makes the report stale."""
    from texttopicnet.pipeline import build_stages

    stages = {st.name: st for st in build_stages()}
    upstream, todo = set(), ["report"]
    while todo:
        for d in stages[todo.pop()].deps:
            if d not in upstream:
                upstream.add(d)
                todo.append(d)
    assert upstream == set(stages) - {"report"}

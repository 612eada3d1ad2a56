"""run_pipeline.py end to end on a tiny configuration: every stage runs through its own script,
the report's tables are filled from the run's own result files, and a second run skips everything."""

import json
import re
from pathlib import Path

import pytest
from conftest import load_script


@pytest.mark.slow
def test_pipeline_end_to_end_tiny(tmp_path, capsys):
    run = tmp_path / "run"
    pipeline = load_script("run_pipeline.py")
    argv = ["--out", str(run), "--scale", "0.25", "--workers", "2", "--device", "cpu",
            "--train-arg=--iterations=3", "--train-arg=--batch-size=4", "--train-arg=--eval-images=8",
            "--train-arg=--checkpoint-every=3"]
    assert pipeline.main(argv) == 0
    report = (run / "report" / "report.md").read_text()
    html = (run / "report" / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html

    # VOC table: each network's mAP cell equals its results file (percent, 2 decimals)
    for tag in ("trained", "random"):
        res = json.loads((run / "voc_svm" / tag / "results_fc7.json").read_text())
        assert res["tag"] == tag and 0.0 <= res["map"] <= 1.0
    row = next(line for line in report.splitlines() if line.startswith("| fc7 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    trained = json.loads((run / "voc_svm" / "trained" / "results_fc7.json").read_text())["map"]
    random_ = json.loads((run / "voc_svm" / "random" / "results_fc7.json").read_text())["map"]
    assert cells[1] == f"{100 * trained:.2f}" and cells[2] == f"{100 * random_:.2f}"

    # retrieval table, both directions, with the chance level
    ret = json.loads((run / "retrieval" / "trained" / "results.json").read_text())
    row = next(line for line in report.splitlines() if line.startswith("| image -> texts |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{ret['img2txt_map']:.3f}" and cells[3] == f"{ret['chance_img2txt']:.3f}"
    assert re.search(r"\| text -> images \| \d\.\d{3} \| \d\.\d{3} \| \d\.\d{3} \|", report)

    # training summary and the loss figure come from this run
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["iterations"] == 3
    assert f"| final_loss | {summary['final_loss']:.4f} |" in report
    for fig in ("loss_curve.png", "voc_ap_bars.png"):
        assert (run / "report" / "figures" / fig).stat().st_size > 1000

    # the CNN-VLM section: its pasted-region table is the one 04_pasted_region_check.py wrote
    paste = json.loads((run / "vlm_paste" / "trained" / "results.json").read_text())
    assert "CNN-VLM" in report and paste["kinds"]
    auc = next(iter(paste["kinds"].values()))["trained"]["auc"]
    assert f"{auc:.3f}" in report

    # the demo ends with the command that serves its search index, pointing at this run
    first = capsys.readouterr().out
    assert (run / "search" / "index.json").is_file()
    serve = first.splitlines()[-1].split()
    assert serve[0] == "python" and serve[1].endswith("search/02_serve.py") and serve[2] == "--index"
    assert Path(serve[3]).resolve() == (run / "search").resolve()

    # a second run skips every stage
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == 11  # every stage but the (always rebuilt) report

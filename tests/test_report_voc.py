"""The run report's VOC section: official and release mAP side by side, read from results_<layer>.json,
with chance levels counted plainly from the real VOC2007 test label files."""

from __future__ import annotations

import json

import pytest

from texttopicnet.pipeline import demo_settings
from texttopicnet.report import build_report

CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
           "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def _result(tag, offset, protocol="release"):
    ap = {c: 0.30 + offset + 0.01 * k for k, c in enumerate(CLASSES)}
    rel = {c: 0.25 + offset + 0.01 * k for k, c in enumerate(CLASSES)}
    return {"tag": tag, "layer": "fc7", "classes": CLASSES, "protocol": protocol, "ap": ap, "release_ap": rel,
            "map": sum(ap.values()) / 20, "release_map": sum(rel.values()) / 20,
            "chosen_C": {c: 0.5 ** 13 for c in CLASSES}}


def _cells(report, first):
    row = next(line for line in report.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_report_shows_official_and_release_map(shared_data, tmp_path):
    run = tmp_path / "run"
    trained, random_ = _result("trained", 0.2), _result("random", 0.0, protocol="voc")
    del random_["release_map"], random_["release_ap"], random_["protocol"]  # a result from before these keys
    for res in (trained, random_):
        (run / "voc_svm" / res["tag"]).mkdir(parents=True)
        (run / "voc_svm" / res["tag"] / "results_fc7.json").write_text(json.dumps(res))
    settings = demo_settings(run, data_root=shared_data / "voc2007", svm_layers=("fc7",))
    report = build_report(settings).read_text()

    # chance levels counted from the label files: official ignores ' 0' lines, the release counts them positive
    main = shared_data / "voc2007" / "ImageSets" / "Main"
    off, rel = [], []
    for c in CLASSES:
        lines = (main / f"{c}_test.txt").read_text().splitlines()
        pos, zero = sum(ln.endswith(" 1") for ln in lines), sum(ln.endswith(" 0") for ln in lines)
        off.append(pos / (len(lines) - zero))
        rel.append((pos + zero) / len(lines))
    header = _cells(report, "features")
    assert header == ["features", "trained mAP (%)", "random mAP (%)", "chance mAP (%)", "trained release mAP (%)",
                      "random release mAP (%)", "chance release mAP (%)"]
    cells = _cells(report, "fc7")
    assert cells[1] == f"{100 * trained['map']:.2f}" and cells[2] == f"{100 * random_['map']:.2f}"
    assert cells[3] == f"{100 * sum(off) / 20:.2f}" and cells[6] == f"{100 * sum(rel) / 20:.2f}"
    assert cells[4] == f"{100 * trained['release_map']:.2f}" and cells[5] == "-"
    assert "trained `release`" in report and "random `?`" in report
    # per class: official AP, chance, the release's AP, chosen C
    row = _cells(report, "chair")
    j = CLASSES.index("chair")
    assert row[1] == f"{100 * trained['ap']['chair']:.2f}" and row[3] == f"{100 * off[j]:.2f}"
    assert row[4] == f"{100 * trained['release_ap']['chair']:.2f}" and row[5] == "-"
    assert float(row[6]) == pytest.approx(0.5 ** 13, abs=1e-6)
    assert (run / "report" / "figures" / "voc_ap_bars.png").stat().st_size > 1000

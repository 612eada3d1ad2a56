"""The demo corpus generator: determinism, edge cases, readability, and a learnable signal."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import load_script
from PIL import Image

from texttopicnet.core import cli, provenance
from texttopicnet.data import images
from texttopicnet.data.readers import imageclef, voc, wikipedia
from texttopicnet.data.synthetic import build_plan, generate
from texttopicnet.data.synthetic.vocab import SUBJECT_WORDS


def _tree_digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def summary(demo_corpus):
    return json.loads((demo_corpus / "synthetic.json").read_text())


def test_same_seed_same_bytes_whatever_the_workers(demo_corpus, summary, tmp_path):
    # The fixture rendered with a process pool; this run renders in one process.
    again = generate(tmp_path, seed=0, scale=0.25, workers=1)
    first, second = _tree_digests(demo_corpus), _tree_digests(tmp_path)
    assert len(first) == summary["files"] + 1 > 500  # + synthetic.json
    assert first == second
    assert again == summary and summary["seed"] == 0 and summary["scale"] == 0.25


def test_another_seed_changes_the_corpus():
    a, b = build_plan(0, 0.25), build_plan(1, 0.25)
    shared = set(a.files) & set(b.files)
    changed = [k for k in shared if a.files[k] != b.files[k]]
    assert len(changed) > 0.8 * len(shared)
    assert [j.spec for j in a.images] != [j.spec for j in b.images]


def test_every_imageclef_edge_case_is_really_there(demo_corpus, summary):
    edge = {k: [demo_corpus / p for p in v] for k, v in summary["imageclef"]["edge_cases"].items()}
    assert all(edge.values()), "every edge case must exist at scale 0.25"
    for p in edge["png"] + edge["png_as_jpg"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert edge["png_as_jpg"][0].suffix == ".jpg"
    assert {Image.open(p).mode for p in edge["png"]} == {"RGB", "P"}
    assert all(min(Image.open(p).size) < 256 for p in edge["small"])
    assert Image.open(edge["grayscale"][0]).mode == "L" and Image.open(edge["cmyk"][0]).mode == "CMYK"
    truncated = edge["truncated"][0]
    assert images.probe(truncated).is_jpeg and not truncated.read_bytes().endswith(b"\xff\xd9")
    decoded, header = images.load_rgb(truncated), images.probe(truncated)
    assert decoded.mode == "RGB" and decoded.size == (header.width, header.height)
    with pytest.raises(images.ImageReadError):
        images.probe(edge["corrupt"][0])
    # Most pictures are valid JPEGs of at least 256 px on both sides.
    infos = []
    for p in sorted((demo_corpus / "ImageCLEF_Wikipedia" / "images").rglob("*.*")):
        try:
            infos.append(images.probe(p))
        except images.ImageReadError:
            pass
    good = [i for i in infos if i.is_jpeg and min(i.width, i.height) >= 256]
    assert len(good) >= 0.9 * len(infos) and max(max(i.width, i.height) for i in good) <= 320


def test_articles_edge_cases_survive_preprocessing_as_planned(demo_corpus, summary):
    from texttopicnet.text.preprocess import preprocess

    root = imageclef.find_collection_root(demo_corpus)
    items = {str(it.image_path.relative_to(demo_corpus)): it for it in imageclef.list_imageclef(root)}
    edge = summary["imageclef"]["edge_cases"]
    empty = items[edge["empty_article"][0]].article_path
    raw = imageclef.read_article(empty)
    assert len(raw) > 50 and preprocess(raw, lemmatizer="none") == []
    latin = items[edge["non_utf8_article"][0]].article_path
    tokens = preprocess(imageclef.read_article(latin), lemmatizer="none")
    assert len(tokens) > 50 and "desserts" in tokens
    regular = next(it for it in items.values() if it.problem is None and it.article_path.suffix == ".xml"
                   and it.article_path != empty)
    assert len(preprocess(imageclef.read_article(regular.article_path), lemmatizer="none")) > 60


def test_counts_agree_with_the_readers(demo_corpus, summary):
    items = imageclef.list_imageclef(imageclef.find_collection_root(demo_corpus))
    assert len(items) == summary["imageclef"]["images"] == sum(1 for _ in (demo_corpus / "ImageCLEF_Wikipedia" /
                                                                            "images").rglob("*.*"))
    root = voc.find_voc_root(demo_corpus)
    assert root == (demo_corpus / "VOC2007" / "VOCdevkit" / "VOC2007").absolute()
    assert voc.voc_classes(root) == sorted(summary["voc"]["classes"])
    for split in ("train", "val", "trainval", "test"):
        s = voc.load_voc_split(root, split)
        expected = summary["voc"]["splits"][split]
        assert len(s.ids) == expected["images"]
        positives = dict(zip(s.classes, (s.labels == 1).sum(0).tolist()))
        assert positives == expected["positives"] and min(positives.values()) >= 1
        assert all(p.is_file() for p in s.image_paths)
        assert set(np.unique(s.labels)) <= {-1, 0, 1}
    assert (voc.load_voc_split(root, "trainval").labels == 0).any()
    assert not set(voc.load_voc_split(root, "trainval").ids) & set(voc.load_voc_split(root, "test").ids)

    wroot = wikipedia.find_wikipedia_root(demo_corpus)
    assert wikipedia.categories(wroot) == summary["wikipedia"]["categories"]
    for split in ("train", "test"):
        pairs = wikipedia.load_wikipedia(wroot, split)
        assert len(pairs) == summary["wikipedia"][split]["pairs"]
        per_cat = collections.Counter(p.category_name for p in pairs)
        assert per_cat == summary["wikipedia"][split]["per_category"] and len(per_cat) == 10
        assert all(p.image_path is not None and p.image_path.parent.name == p.category_name for p in pairs)
    malformed = 0
    for p in (wroot / "texts").glob("*.xml"):
        try:
            ET.parse(p)
        except ET.ParseError:
            malformed += 1
    assert malformed == summary["wikipedia"]["malformed_texts"] >= 2


def test_text_follows_the_subjects(demo_corpus):
    wroot = wikipedia.find_wikipedia_root(demo_corpus)
    vocab = {s: set(w) for s, w in SUBJECT_WORDS.items()}
    hits = 0
    pairs = wikipedia.load_wikipedia(wroot, "all")
    for p in pairs:
        words = collections.Counter(re.findall(r"[a-z]+", p.text.lower()))
        score = {s: sum(words[w] for w in v) for s, v in vocab.items()}
        hits += max(score, key=score.get) == p.category_name
    assert hits >= 0.95 * len(pairs)


def test_pixels_carry_the_labels(demo_corpus):
    """A linear model on colour histograms beats the same model trained on shuffled labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    root = voc.find_voc_root(demo_corpus)

    def features(split):
        s = voc.load_voc_split(root, split)
        rows = []
        for p in s.image_paths:
            a = np.asarray(Image.open(p).convert("RGB").resize((64, 64))) // 64
            rows.append(np.bincount((a[..., 0] * 16 + a[..., 1] * 4 + a[..., 2]).ravel(), minlength=64) / 4096)
        return np.array(rows), s.labels

    (xtr, ytr), (xte, yte) = features("trainval"), features("test")

    def mean_ap(labels):
        aps = []
        for j in range(labels.shape[1]):
            m, keep = labels[:, j] != 0, yte[:, j] != 0
            clf = LogisticRegression(C=10, max_iter=2000).fit(xtr[m], labels[m, j] == 1)
            aps.append(average_precision_score(yte[keep, j] == 1, clf.decision_function(xte[keep])))
        return float(np.mean(aps))

    real = mean_ap(ytr)
    shuffled = mean_ap(ytr[np.random.default_rng(0).permutation(len(ytr))])
    assert real > 0.4 and real > shuffled + 0.15, (real, shuffled)


def test_script_is_idempotent_and_reports_user_errors(tmp_path, capsys):
    script = load_script("data/make_synthetic.py")
    out = tmp_path / "demo"
    assert script.main(["--out", str(out), "--scale", "0.05", "--workers", "1"]) == 0
    assert provenance.stage_is_done(out, script.STAGE)
    summary = json.loads((out / "synthetic.json").read_text())
    assert summary["scale"] == 0.05 and all(summary["imageclef"]["edge_cases"].values())
    assert all(min(v["positives"].values()) >= 1 for v in summary["voc"]["splits"].values())
    capsys.readouterr()
    assert script.main(["--out", str(out), "--scale", "0.05"]) == 0
    assert "already done" in capsys.readouterr().out

    foreign = tmp_path / "real"
    (foreign / "VOC2007").mkdir(parents=True)
    for argv in (["--out", str(foreign), "--scale", "0.05"], ["--out", str(out), "--scale", "-1"]):
        with pytest.raises(SystemExit) as exc:
            cli.run_main(script.main, argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
    assert list(foreign.iterdir()) == [foreign / "VOC2007"]  # real data is never touched

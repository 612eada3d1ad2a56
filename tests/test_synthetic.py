"""The demo corpus generator: determinism, edge cases, readability, and a signal in shape, not colour."""

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
from texttopicnet.data.synthetic.motifs import MOTIFS, Ctx
from texttopicnet.data.synthetic.render import ImageSpec, paint
from texttopicnet.data.synthetic.vocab import SUBJECT_WORDS, SUBJECTS


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


def _painted(demo_corpus):
    """(file, main subject) of every regular picture of the corpus (RGB JPEGs the readers decode).

    The subject comes from the plan (the generator's record of what it painted); the
    features the tests below compute come from the written files alone.
    """
    rows = []
    for job in build_plan(0, 0.25).images:
        if job.damage is None and job.spec.fmt == "JPEG" and job.spec.mode == "RGB":
            weights = dict(job.spec.weights)
            rows.append((demo_corpus / job.relpath, max(weights, key=weights.get)))
    return rows


def _colour_features(rgb):
    """What a colour statistic sees: a 4x4x4 RGB histogram plus channel means and spreads."""
    q = (rgb // 64).astype(np.int64)
    hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / q[..., 0].size
    flat = rgb.reshape(-1, 3) / 255.0
    return np.concatenate([hist, flat.mean(0), flat.std(0)])


def _structure_features(rgb, cells=4, bins=9):
    """A plain HOG: unsigned gradient orientations of the luma (blind to hue and to polarity),
    weighted by magnitude, in a 4x4 grid of cells (so layout counts), each cell L2-normalised."""
    g = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gx, gy = np.zeros_like(g), np.zeros_like(g)
    gx[:, 1:-1], gy[1:-1] = g[:, 2:] - g[:, :-2], g[2:] - g[:-2]
    mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    b = np.minimum((ang / np.pi * bins).astype(np.int64), bins - 1)
    n, out = g.shape[0] // cells, []
    for i in range(cells):
        for j in range(cells):
            cell = (slice(i * n, (i + 1) * n), slice(j * n, (j + 1) * n))
            h = np.bincount(b[cell].ravel(), weights=mag[cell].ravel(), minlength=bins)
            out.append(h / (np.linalg.norm(h) + 1e-6))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def pixel_features(demo_corpus):
    rows = _painted(demo_corpus)
    colour, structure = [], []
    for path, _ in rows:
        rgb = np.asarray(Image.open(path).convert("RGB").resize((128, 128), Image.Resampling.BILINEAR))
        colour.append(_colour_features(rgb))
        structure.append(_structure_features(rgb))
    y = np.array([SUBJECTS.index(s) for _, s in rows])
    return np.array(colour), np.array(structure), y


def _cv_accuracy(x, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    return float(cross_val_score(LogisticRegression(C=1.0, max_iter=3000), x, y, cv=folds).mean())


def test_colour_says_nothing_about_the_subject(pixel_features):
    """Colours are drawn afresh for every picture: a linear model on colour statistics is at chance."""
    colour, _, y = pixel_features
    assert len(y) > 300 and np.bincount(y).min() >= 20
    chance = np.bincount(y).max() / len(y)
    accuracy = _cv_accuracy(colour, y)
    assert accuracy < chance + 0.08, (accuracy, chance)


def test_shape_texture_and_layout_carry_the_subject(pixel_features):
    """The same linear model on colour-blind gradient-orientation features recovers the subject."""
    colour, structure, y = pixel_features
    accuracy = _cv_accuracy(structure, y)
    assert accuracy > 0.3 and accuracy > _cv_accuracy(colour, y) + 0.2, accuracy
    # The class is in the arrangement of edges, not in how many there are: the total
    # gradient energy per picture alone says little.
    energy = structure.reshape(len(y), -1, 9).sum(2)  # per-cell sums of normalised histograms
    assert _cv_accuracy(energy, y) < accuracy - 0.15


def test_every_motif_is_drawn_at_any_size_weight_and_faintness():
    for subject, motif in MOTIFS.items():
        for i, (w, h, weight, faint) in enumerate([(256, 256, 1.0, False), (360, 256, 0.25, False),
                                                    (200, 300, 0.5, False), (320, 180, 0.0, True)] * 5):
            body, detail = motif.draw(Ctx(np.random.default_rng(i), w, h, weight, faint))
            assert body.shape == detail.shape == (h, w) and body.dtype == detail.dtype == np.uint8
            area = (body > 0).mean()
            assert 0.002 < area < 0.6, (subject, w, h, weight, faint, area)
            if not faint:  # the second colour is a texture or a part of the motif, never all of it
                assert 0 < (detail > 0).sum() < (body > 0).sum() + (detail > 0).sum(), subject


def test_painting_is_a_pure_function_of_the_spec():
    spec = ImageSpec(seed=7, width=300, height=260, weights=(("city", 0.6), ("music", 0.4)), faint=("space",))
    assert np.array_equal(paint(spec), paint(spec))
    other = paint(ImageSpec(seed=8, width=300, height=260, weights=spec.weights, faint=spec.faint))
    assert np.abs(other.astype(int) - paint(spec)).mean() > 10


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
    # A corpus written by an older generator version draws other pictures: it is rewritten.
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["generator_version"] == script.VERSION
    meta_path.write_text(json.dumps({**meta, "generator_version": script.VERSION - 1}))
    assert script.main(["--out", str(out), "--scale", "0.05", "--workers", "1"]) == 0
    assert "already done" not in capsys.readouterr().out
    assert json.loads(meta_path.read_text())["generator_version"] == script.VERSION

    foreign = tmp_path / "real"
    (foreign / "VOC2007").mkdir(parents=True)
    for argv in (["--out", str(foreign), "--scale", "0.05"], ["--out", str(out), "--scale", "-1"]):
        with pytest.raises(SystemExit) as exc:
            cli.run_main(script.main, argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
    assert list(foreign.iterdir()) == [foreign / "VOC2007"]  # real data is never touched

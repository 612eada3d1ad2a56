"""lda/02 + lda/03 with --space: every text space kind labels the images, in the labels contract, with the
chosen target transform (checked against the transforms written plainly here), recorded in meta.json;
reruns follow the arguments (another space, target or corpus unit is redone, stale files removed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from test_manifest_stage import THEMES, captioned_folder

from texttopicnet.core import io, provenance
from texttopicnet.core.cli import run_main
from texttopicnet.text.preprocess import preprocess, wordnet_available
from texttopicnet.text.spaces import load_text_space

build = load_script("lda/01_build_train_dict.py")
learn = load_script("lda/02_learn_lda.py")
label = load_script("lda/03_generate_labels.py")

LEM = [] if wordnet_available() else ["--lemmatizer", "auto"]
FAST = {  # small, quick options: the corpus is 36 captions of 4-7 words
    "lsi": ["num_topics=5", "no_below=1"],
    "word2vec": ["dim=12", "min_count=1", "epochs=5"],
    "doc2vec": ["dim=12", "min_count=1", "epochs=5"],
    "fasttext": ["dim=12", "min_count=1", "epochs=5", "bucket=2000"],
    "glove": ["vectors={glove}"],
}


def plain_minshift_l2(v: np.ndarray) -> np.ndarray:
    """The TextTopicNet fork's target, one row at a time: shift a negative minimum to 0, then divide by the L2 norm."""
    out = []
    for row in np.asarray(v, dtype=np.float64):
        if row.min() < 0:
            row = row - row.min()
        norm = float(np.sqrt((row ** 2).sum()))
        out.append(row / norm if row.sum() > 0 else row)
    return np.array(out)


def plain_minshift_max(v: np.ndarray) -> np.ndarray:
    """LearnFromWebData: v -= min(v); v /= max(v) (when the max is above 0)."""
    out = []
    for row in np.asarray(v, dtype=np.float64):
        row = row - row.min()
        out.append(row / row.max() if row.max() > 0 else row)
    return np.array(out)


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory):
    """Stage 1 on a folder of 36 captioned images, and a tiny GloVe-format vectors file for the glove space."""
    base = tmp_path_factory.mktemp("spaces")
    photos = base / "photos"
    captioned_folder(photos, n_per_theme=12, seed=2, size=64)
    from texttopicnet.data.readers import folder

    folder.build_manifest(photos)
    run = base / "run"
    assert build.main(["--corpus", f"manifest:{photos / 'manifest.jsonl'}", "--out", str(run), "--workers", "1",
                       "--no-progress"]) == 0
    rng = np.random.RandomState(0)
    words = sorted({w for ws in THEMES.values() for w in ws} | set(THEMES))
    glove = base / "tiny_glove.txt"
    glove.write_text("".join(f"{w} " + " ".join(f"{x:.5f}" for x in rng.randn(6)) + "\n" for w in words[::-1]
                             if w != "owl"), encoding="utf-8")  # owl: a word the vectors lack
    return run, glove


def _space_run(pairs_run, tmp_path, space: str, extra_label=()):
    run, glove = pairs_run
    out = tmp_path / "run"
    shutil.copytree(run / "pairs", out / "pairs")
    opts = [o.format(glove=glove) for o in FAST[space]]
    assert learn.main(["--out", str(out), "--space", space, *[a for o in opts for a in ("--space-option", o)],
                       "--workers", "1", "--no-progress", *LEM]) == 0
    assert label.main(["--out", str(out), "--workers", "1", "--no-progress", *extra_label]) == 0
    return out, opts


def _check_contract(out: Path, target: str, plain) -> np.ndarray:
    """labels.npy/index.txt/articles.txt aligned with pairs.tsv; rows = plain transform of the space's embedding."""
    y = np.load(out / "labels" / "labels.npy")
    index = io.read_lines(out / "labels" / "index.txt")
    arts = io.read_lines(out / "labels" / "articles.txt")
    pairs = {line.split("\t")[0]: line.split("\t")[1] for line in io.read_lines(out / "pairs" / "pairs.tsv")}
    assert y.dtype == np.float32 and y.ndim == 2 and np.isfinite(y).all()
    assert len(index) == len(arts) == y.shape[0] >= len(pairs) - 2
    assert all(pairs[img] == art for img, art in zip(index, arts))
    assert (y >= 0).all() and (y <= 1 + 1e-6).all()
    space = load_text_space(out / "space")
    raw = space.embed([Path(a).read_text(encoding="utf-8") for a in arts])
    np.testing.assert_allclose(y, plain(raw), rtol=0, atol=2e-6)
    meta = provenance.read_meta(out / "labels")
    assert meta["targets"]["target"] == target and meta["similarity"] == "cosine"
    assert meta["space_kind"] == "vector" and meta["dim"] == y.shape[1] == space.dim
    return y


@pytest.mark.parametrize("space", ["lsi", "word2vec", "doc2vec", "fasttext", "glove"])
def test_every_space_labels_in_the_contract(pairs_run, tmp_path, space):
    out, opts = _space_run(pairs_run, tmp_path, space)
    y = _check_contract(out, "minshift_l2", plain_minshift_l2)
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert (out / "labels" / f"training_labels{y.shape[1]}.json").is_file()
    meta = provenance.read_meta(out / "lda")
    assert meta["space"] == space and meta["space_dir"] == str(out / "space")
    assert meta["tokenizer"]["name"] == "project" and meta["corpus_unit"] == "image"
    for o in opts:
        key, value = o.split("=", 1)
        assert str(meta["space_options"][key]) == value, key
    assert set(meta["outputs"]) == {f"../space/{p.name}" for p in (out / "space").iterdir()}
    assert not list((out / "lda").glob("ldamodel*")) and (out / "lda" / "tokens.txt").is_file()
    assert provenance.read_meta(out / "labels")["space"] == space


def test_word2vec_targets_from_gensim_directly(pairs_run, tmp_path):
    """The word2vec rows against gensim's own vectors: mean of the caption's known words, then each transform."""
    from gensim.models import Word2Vec

    out, _ = _space_run(pairs_run, tmp_path, "word2vec")
    wv = Word2Vec.load(str(out / "space" / "word2vec.model")).wv
    arts = io.read_lines(out / "labels" / "articles.txt")
    raw = []
    for a in arts:
        known = [t for t in preprocess(Path(a).read_text(encoding="utf-8")) if t in wv.key_to_index]
        raw.append(np.mean([wv[t] for t in known], axis=0))
    y = np.load(out / "labels" / "labels.npy")
    np.testing.assert_allclose(y, plain_minshift_l2(np.array(raw)), rtol=0, atol=2e-6)
    # Another target is another set of labels: redone, not skipped.
    assert label.main(["--out", str(out), "--workers", "1", "--no-progress", "--target", "minshift_max"]) == 0
    y_max = _check_contract(out, "minshift_max", plain_minshift_max)
    np.testing.assert_allclose(y_max, plain_minshift_max(np.array(raw)), rtol=0, atol=2e-6)
    assert np.allclose(y_max.max(axis=1), 1) and np.allclose(y_max.min(axis=1), 0)
    meta = provenance.read_meta(out / "labels")
    assert meta["args"]["target"] == "minshift_max" and "LearnFromWebData" in meta["targets"]["source"]


def test_switching_spaces_redoes_and_removes_stale_files(pairs_run, tmp_path, capsys):
    run, _ = pairs_run
    out = tmp_path / "run"
    shutil.copytree(run / "pairs", out / "pairs")
    lda = ["--out", str(out), "--num-topics", "3", "--no-below", "2", "--passes", "5", "--reproducible",
           "--workers", "1", "--no-progress", *LEM]
    w2v = ["--out", str(out), "--space", "word2vec", "--space-option", "dim=8", "--space-option", "min_count=1",
           "--space-option", "epochs=2", "--workers", "1", "--no-progress", *LEM]
    lab = ["--out", str(out), "--workers", "1", "--no-progress"]
    assert learn.main(lda) == 0 and label.main(lab) == 0
    assert np.load(out / "labels" / "labels.npy").shape[1] == 3
    assert provenance.read_meta(out / "labels")["targets"]["target"] == "distribution"
    capsys.readouterr()
    assert learn.main(w2v) == 0
    log = capsys.readouterr().out
    assert "arguments changed" in log and "'lda' -> 'word2vec'" in log
    assert not list((out / "lda").glob("ldamodel*")) and not (out / "lda" / "dictionary.dict").exists()
    assert (out / "space" / "manifest.json").is_file()
    assert label.main(lab) == 0  # follows the space lda/02 recorded
    assert np.load(out / "labels" / "labels.npy").shape[1] == 8
    capsys.readouterr()
    assert learn.main(w2v) == 0 and label.main(lab) == 0
    assert capsys.readouterr().out.count("already done") == 2
    assert learn.main(w2v + ["--corpus-unit", "article"]) == 0
    assert "--corpus-unit 'image' -> 'article'" in capsys.readouterr().out
    assert provenance.read_meta(out / "lda")["counts"]["corpus_documents"] == len(
        set(line.split("\t")[1] for line in io.read_lines(out / "pairs" / "pairs.tsv")))
    # A label stage asked for a space lda/02 did not fit, or a target of another kind: one line, exit 2.
    for argv in (lab + ["--space", "lsi"], lab + ["--target", "distribution"], lab + ["--stop-words", "package"]):
        with pytest.raises(SystemExit) as exc:
            run_main(label.main, argv)
        assert exc.value.code == 2
    capsys.readouterr()
    assert learn.main(lda) == 0
    assert not (out / "space" / "manifest.json").exists() and list((out / "lda").glob("ldamodel3.lda"))
    assert label.main(lab) == 0
    assert np.load(out / "labels" / "labels.npy").shape[1] == 3
    with pytest.raises(SystemExit) as exc:
        run_main(label.main, lab + ["--target", "minshift_l2"])
    assert exc.value.code == 2 and "not a target of the lda space" in capsys.readouterr().err


def test_space_option_errors(pairs_run, tmp_path, capsys):
    run, _ = pairs_run
    out = tmp_path / "run"
    shutil.copytree(run / "pairs", out / "pairs")
    for argv, message in ((["--space", "word2vec", "--space-option", "dims=3"], "unknown option"),
                          (["--space", "word2vec", "--space-option", "dim"], "KEY=VALUE"),
                          (["--space", "word2vec", "--space-option", "lemmatizer=none"], "--lemmatizer"),
                          (["--space-option", "dim=3"], "spaces other than lda"),
                          (["--space", "glove"], "vectors")):
        with pytest.raises(SystemExit) as exc:
            run_main(learn.main, ["--out", str(out), "--no-progress", "--workers", "1", *argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, argv
    assert not (out / "lda" / "meta.json").exists()


def test_parse_options_values():
    from texttopicnet.text.space_train import parse_options

    assert parse_options(["dim=50", "sample=1e-4", "weighting=tfidf", "no_below=None", "reproducible=true",
                          "vectors=/x/glove.6B.50d.txt", "min-count=2"]) == {
        "dim": 50, "sample": 1e-4, "weighting": "tfidf", "no_below": None, "reproducible": True,
        "vectors": "/x/glove.6B.50d.txt", "min_count": 2}

"""The three text-stage scripts end to end: demo corpus, a corpus of real Wikipedia texts, reruns, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from PIL import Image

from texttopicnet.core import io, provenance
from texttopicnet.core.cli import run_main
from texttopicnet.core.errors import UserError

build = load_script("lda/01_build_train_dict.py")
learn = load_script("lda/02_learn_lda.py")
label = load_script("lda/03_generate_labels.py")

DEMO_LDA = ["--no-below", "3", "--passes", "5", "--reproducible", "--workers", "2", "--no-progress"]


@pytest.fixture(scope="module")
def demo_run(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_run")
    assert build.main(["--data-root", str(demo_corpus), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    assert learn.main(["--out", str(out), *DEMO_LDA]) == 0
    assert label.main(["--out", str(out), "--workers", "2", "--no-progress"]) == 0
    return out


def test_demo_filters_match_the_generator(demo_corpus, demo_run):
    summary = json.loads((demo_corpus / "synthetic.json").read_text())["imageclef"]
    counts = io.read_json(demo_run / "pairs" / "filter_counts.json")
    assert counts["images"] == summary["images"]
    assert counts["kept"] == summary["kept_with_existing_article"]
    examples = counts["examples"]
    edge = {k: [str(demo_corpus / p) for p in v] for k, v in summary["edge_cases"].items()}
    assert set(edge["corrupt"]) <= set(examples["corrupt"])
    assert set(edge["png"] + edge["png_as_jpg"]) <= set(examples["not_jpeg"])
    assert set(edge["small"]) <= set(examples["too_small"])
    assert set(edge["missing_article"]) <= set(examples["article_missing"])
    assert set(edge["no_english"]) <= set(examples["no_english_article"])
    assert counts["removed"]["bad_metadata"] == len(edge["bad_metadata"])
    assert counts["removed"]["no_metadata"] == len(edge["no_metadata"])
    kept = {line.split("\t")[0] for line in io.read_lines(demo_run / "pairs" / "pairs.tsv")}
    for case in ("grayscale", "cmyk", "truncated", "non_utf8_article", "empty_article"):
        assert set(edge[case]) <= kept, case
    train_dict = io.read_json(demo_run / "pairs" / "train_dict_ImageCLEF_Wikipedia.json")
    assert len(train_dict) == len(kept) and all(k.startswith("images/") for k in train_dict)


def test_demo_lda_outputs(demo_run):
    lda_dir = demo_run / "lda"
    for name in ("dictionary.dict", "corpus.mm", "ldamodel40.lda", "ldamodel40.lda.state", "topics.json",
                 "quality.json", "meta.json"):
        assert (lda_dir / name).is_file(), name
    meta = provenance.read_meta(lda_dir)
    assert meta["lemmatizer"] in ("wordnet", "simplemma", "none")
    assert meta["counts"]["empty_after_preprocessing"] == 1  # the generator's stub article
    topics = io.read_json(lda_dir / "topics.json")
    assert topics["num_topics"] == 40 and len(topics["topics"]) == 40
    assert all(re.fullmatch(r"[a-z]{3,}", w) for t in topics["topics"] for w, _ in t["words"])
    quality = io.read_json(lda_dir / "quality.json")
    assert quality["heldout_docs"] >= 1 and np.isfinite(quality["heldout_perplexity"])
    assert quality["heldout_perplexity"] > 1 and np.isfinite(quality["coherence"]["mean"])


def test_demo_labels(demo_corpus, demo_run):
    out = demo_run / "labels"
    y = np.load(out / "labels.npy")
    index, articles = io.read_lines(out / "index.txt"), io.read_lines(out / "articles.txt")
    assert y.dtype == np.float32 and y.shape == (len(index), 40) and len(articles) == len(index)
    assert np.isfinite(y).all() and (y >= 0).all() and np.abs(y.sum(axis=1) - 1).max() < 1e-5
    pairs = [line.split("\t") for line in io.read_lines(demo_run / "pairs" / "pairs.tsv")]
    assert len(index) == len(pairs) - 1  # the image of the empty-after-preprocessing article is excluded
    edge = json.loads((demo_corpus / "synthetic.json").read_text())["imageclef"]["edge_cases"]
    assert str(demo_corpus / edge["empty_article"][0]) not in index
    assert {str(demo_corpus / p) for p in edge["non_utf8_article"]} <= set(index)
    by_article: dict[str, list[int]] = {}
    for i, a in enumerate(articles):
        by_article.setdefault(a, []).append(i)
    assert any(len(rows) > 1 for rows in by_article.values())
    for rows in by_article.values():
        assert (y[rows] == y[rows[0]]).all()
    meta = provenance.read_meta(out)
    assert meta["counts"]["excluded_articles"]["empty_after_preprocessing"] == 1
    interchange = io.read_json(out / "training_labels40.json")
    assert len(interchange) == len(index) and all(len(v) == 40 for v in interchange.values())


def test_rerun_skips_and_force_redoes(demo_run, capsys):
    stamps = {s: provenance.read_meta(demo_run / s)["finished"] for s in ("pairs", "lda", "labels")}
    assert learn.main(["--out", str(demo_run), *DEMO_LDA]) == 0
    assert label.main(["--out", str(demo_run), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("already done") == 2
    assert {s: provenance.read_meta(demo_run / s)["finished"] for s in stamps} == stamps
    # A damaged output is not trusted: the stage runs again and restores it.
    y = np.load(demo_run / "labels" / "labels.npy")
    (demo_run / "labels" / "labels.npy").write_bytes(b"truncated")
    assert not provenance.stage_is_done(demo_run / "labels", "labels")
    assert label.main(["--out", str(demo_run), "--no-progress"]) == 0
    assert np.array_equal(np.load(demo_run / "labels" / "labels.npy"), y)


def test_labels_redone_when_the_model_changes(demo_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(demo_run, out)
    y_old = np.load(out / "labels" / "labels.npy")
    assert learn.main(["--out", str(out), *DEMO_LDA, "--seed", "3", "--force"]) == 0
    capsys.readouterr()
    assert label.main(["--out", str(out), "--no-progress"]) == 0
    assert "already done" not in capsys.readouterr().out  # the recorded model checksum no longer matches
    y_new = np.load(out / "labels" / "labels.npy")
    assert y_new.shape == y_old.shape and not np.array_equal(y_new, y_old)


def test_later_stages_refuse_unfinished_earlier_stages(demo_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(demo_run / "pairs", out / "pairs")
    shutil.copytree(demo_run / "lda", out / "lda")
    (out / "lda" / "meta.json").unlink()  # as if lda/02 was interrupted before finishing
    with pytest.raises(UserError, match="has not finished"):
        label.main(["--out", str(out), "--no-progress"])
    assert not (out / "labels" / "meta.json").exists()
    (out / "pairs" / "meta.json").unlink()  # as if lda/01 died between pairs.tsv and meta.json
    with pytest.raises(UserError, match="pairs stage has not finished"):
        learn.main(["--out", str(out), *DEMO_LDA])


def test_reproducible_mode_gives_identical_topics(demo_run, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        shutil.copytree(demo_run / "pairs", out / "pairs")
        assert learn.main(["--out", str(out), *DEMO_LDA, "--num-topics", "8", "--seed", "7"]) == 0
        outs.append(out)
    ta, tb = (io.read_json(o / "lda" / "topics.json") for o in outs)
    assert ta == tb
    qa, qb = (io.read_json(o / "lda" / "quality.json") for o in outs)
    assert qa["heldout_perplexity"] == qb["heldout_perplexity"]
    other = tmp_path / "c"
    shutil.copytree(demo_run / "pairs", other / "pairs")
    assert learn.main(["--out", str(other), *DEMO_LDA, "--num-topics", "8", "--seed", "8"]) == 0
    assert io.read_json(other / "lda" / "topics.json") != ta


def _real_text_collection(shared_data: Path, root: Path, n_articles: int) -> Path:
    """An ImageCLEF-layout collection whose articles are real Wikipedia texts (images are small noise JPEGs)."""
    from texttopicnet.data.readers.wikipedia import read_wiki_text

    coll = root / "ImageCLEF_Wikipedia"
    for d in ("images/0", "metadata/0", "text/en"):
        (coll / d).mkdir(parents=True)
    files = sorted((shared_data / "wikipedia" / "texts").glob("*.xml"))[:n_articles]
    rng = np.random.RandomState(0)
    k = 0
    for f in files:
        (coll / "text/en" / f"{f.stem}.txt").write_text(read_wiki_text(f), encoding="utf-8")
        for _ in range(1 + k % 2):
            k += 1
            Image.fromarray(rng.randint(0, 255, (256, 264, 3), dtype=np.uint8)).save(coll / f"images/0/{k}.jpg")
            (coll / f"metadata/0/{k}.xml").write_text(
                f'<image id="{k}"><text xml:lang="en"><caption article="text/en/{f.stem}.txt">c</caption></text>'
                f'</image>', encoding="utf-8")
    return coll


def test_real_wikipedia_texts_end_to_end(shared_data, tmp_path):
    coll = _real_text_collection(shared_data, tmp_path / "data", 120)
    out = tmp_path / "run"
    assert build.main(["--collection", str(coll), "--out", str(out), "--no-progress"]) == 0
    assert learn.main(["--out", str(out), "--num-topics", "10", "--no-below", "5", "--passes", "5",
                       "--reproducible", "--no-progress"]) == 0
    assert label.main(["--out", str(out), "--no-progress"]) == 0
    meta = provenance.read_meta(out / "lda")
    assert meta["counts"]["corpus_documents"] == 120 and meta["counts"]["vocabulary"] > 500
    quality = io.read_json(out / "lda" / "quality.json")
    assert np.isfinite(quality["heldout_perplexity"]) and quality["heldout_docs"] == 6
    y = np.load(out / "labels" / "labels.npy")
    n_images = len(list((coll / "images" / "0").glob("*.jpg")))
    assert io.read_json(out / "pairs" / "filter_counts.json")["kept"] == n_images > 120
    assert y.shape == (n_images, 10) and np.abs(y.sum(axis=1) - 1).max() < 1e-5
    # Real articles are about different things: their labels are not all the same topic.
    assert len(set(y.argmax(axis=1).tolist())) >= 5


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(build.main, ["--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nothing" in err[0]
    with pytest.raises(SystemExit) as exc:
        run_main(learn.main, ["--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "run lda/01" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_main(learn.main, ["--out", str(tmp_path / "r"), "--num-topics", "1"])
    assert exc.value.code == 2

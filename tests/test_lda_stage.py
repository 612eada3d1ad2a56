"""The three text-stage scripts end to end: demo corpus, reruns, errors, and a corpus of real Wikipedia
texts checked against the release's rules written plainly here (per-image corpus, dictionary, label rows)."""

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
from texttopicnet.text.preprocess import wordnet_available

build = load_script("lda/01_build_train_dict.py")
learn = load_script("lda/02_learn_lda.py")
label = load_script("lda/03_generate_labels.py")

# Without WordNet data the default (wordnet) stops with a UserError; "auto" then runs with a
# recorded fallback, which test_demo_lda_outputs checks.
WORDNET = wordnet_available()
DEMO_LDA = (["--no-below", "3", "--passes", "5", "--reproducible", "--workers", "2", "--no-progress"]
            + ([] if WORDNET else ["--lemmatizer", "auto"]))


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
    assert counts["kept"] == summary["release_kept_with_existing_article"]  # the release's keep rule
    examples = counts["examples"]
    edge = {k: [str(demo_corpus / p) for p in v] for k, v in summary["edge_cases"].items()}
    assert set(edge["corrupt"]) <= set(examples["corrupt"])
    assert set(edge["png"]) <= set(examples["extension"])  # the release reads names, not bytes
    assert set(edge["small"]) <= set(examples["too_small"])
    assert set(edge["missing_article"]) <= set(examples["article_missing"])
    assert set(edge["no_english"]) <= set(examples["no_english_article"])
    assert counts["removed"]["bad_metadata"] == len(edge["bad_metadata"])
    assert counts["removed"]["no_metadata"] == len(edge["no_metadata"])
    kept = {line.split("\t")[0] for line in io.read_lines(demo_run / "pairs" / "pairs.tsv")}
    for case in ("grayscale", "cmyk", "truncated", "non_utf8_article", "empty_article", "png_as_jpg"):
        assert set(edge[case]) <= kept, case
    train_dict = io.read_json(demo_run / "pairs" / "train_dict_ImageCLEF_Wikipedia.json")
    assert len(train_dict) == len(kept) and all(k.startswith("images/") for k in train_dict)


def test_demo_lda_outputs(demo_run):
    lda_dir = demo_run / "lda"
    for name in ("dictionary.dict", "corpus.mm", "ldamodel40.lda", "ldamodel40.lda.state", "topics.json",
                 "quality.json", "meta.json"):
        assert (lda_dir / name).is_file(), name
    meta = provenance.read_meta(lda_dir)
    if WORDNET:
        assert meta["lemmatizer"] == "wordnet" and meta["lemmatizer_fallback"] is None
    else:
        assert meta["lemmatizer"] != "wordnet" and "fell back" in meta["lemmatizer_fallback"]
    assert meta["stop_words"] == "release" and meta["stop_words_count"] == 174
    assert meta["corpus_unit"] == "image" and meta["keep_n"] == 100000
    assert meta["counts"]["empty_after_preprocessing"] == 1  # the generator's stub article
    # One document per image, none held out (the release's defaults).
    n_images = len(io.read_lines(demo_run / "pairs" / "pairs.tsv"))
    assert meta["counts"]["corpus_documents"] == meta["counts"]["train_documents"] == n_images
    assert meta["counts"]["heldout_documents"] == 0
    assert io.read_lines(lda_dir / "documents.txt") == [line.split("\t")[1] for line in
                                                        io.read_lines(demo_run / "pairs" / "pairs.tsv")]
    topics = io.read_json(lda_dir / "topics.json")
    assert topics["num_topics"] == 40 and len(topics["topics"]) == 40
    assert all(re.fullmatch(r"[a-z]{3,}", w) for t in topics["topics"] for w, _ in t["words"])
    quality = io.read_json(lda_dir / "quality.json")
    assert quality["heldout_docs"] == 0 and quality["heldout_perplexity"] is None
    assert np.isfinite(quality["coherence"]["mean"])


def test_demo_labels(demo_corpus, demo_run):
    out = demo_run / "labels"
    y = np.load(out / "labels.npy")
    index, articles = io.read_lines(out / "index.txt"), io.read_lines(out / "articles.txt")
    assert y.dtype == np.float32 and y.shape == (len(index), 40) and len(articles) == len(index)
    # The release's rows: topics under the 0.01 cut-off are 0, sums a little under 1.
    sums = y.sum(axis=1)
    assert np.isfinite(y).all() and (y >= 0).all() and (sums <= 1 + 1e-6).all() and (sums > 0.5).all()
    assert ((y > 0) & (y < 0.01)).sum() == 0 and (y == 0).any()
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
    assert meta["label_rows"] == "release" and meta["minimum_probability"] == 0.01
    assert meta["stop_words"] == "release"
    assert meta["lemmatizer"] == provenance.read_meta(demo_run / "lda")["lemmatizer"]
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


def test_reproducible_mode_and_heldout_articles(demo_run, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        shutil.copytree(demo_run / "pairs", out / "pairs")
        assert learn.main(["--out", str(out), *DEMO_LDA, "--num-topics", "8", "--seed", "7", "--holdout", "0.05"]) == 0
        outs.append(out)
    ta, tb = (io.read_json(o / "lda" / "topics.json") for o in outs)
    assert ta == tb
    qa, qb = (io.read_json(o / "lda" / "quality.json") for o in outs)
    assert np.isfinite(qa["heldout_perplexity"]) and qa["heldout_perplexity"] == qb["heldout_perplexity"]
    # Whole articles are held out: every image of a held-out article leaves training.
    c = provenance.read_meta(outs[0] / "lda")["counts"]
    assert c["heldout_articles"] == qa["heldout_docs"] >= 1 and c["heldout_documents"] >= c["heldout_articles"]
    assert c["train_documents"] + c["heldout_documents"] == c["corpus_documents"]
    other = tmp_path / "c"
    shutil.copytree(demo_run / "pairs", other / "pairs")
    assert learn.main(["--out", str(other), *DEMO_LDA, "--num-topics", "8", "--seed", "8", "--holdout", "0.05"]) == 0
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


def test_article_corpus_and_dense_rows_options(demo_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(demo_run / "pairs", out / "pairs")
    assert learn.main(["--out", str(out), *DEMO_LDA, "--num-topics", "8", "--corpus-unit", "article"]) == 0
    assert label.main(["--out", str(out), "--no-progress", "--label-rows", "dense"]) == 0
    meta = provenance.read_meta(out / "lda")
    n_articles = len({line.split("\t")[1] for line in io.read_lines(out / "pairs" / "pairs.tsv")})
    assert meta["corpus_unit"] == "article" and meta["counts"]["corpus_documents"] == n_articles
    y = np.load(out / "labels" / "labels.npy")
    assert np.abs(y.sum(axis=1) - 1).max() < 1e-5 and (y > 0).all()
    assert provenance.read_meta(out / "labels")["label_rows"] == "dense"


def test_missing_wordnet_fails_loudly_or_falls_back_on_record(demo_run, tmp_path, monkeypatch, capsys):
    pytest.importorskip("simplemma")
    from texttopicnet.text import preprocess

    monkeypatch.setattr(preprocess, "wordnet_available", lambda: False)
    out = tmp_path / "run"
    shutil.copytree(demo_run / "pairs", out / "pairs")
    args = ["--out", str(out), "--no-below", "3", "--passes", "2", "--reproducible", "--workers", "1",
            "--no-progress", "--num-topics", "8"]
    with pytest.raises(SystemExit) as exc:
        run_main(learn.main, args)  # the default, wordnet, never falls back silently
    assert exc.value.code == 2 and "texttopicnet.text.wordnet --install" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="fell back to simplemma"):
        assert learn.main(args + ["--lemmatizer", "auto"]) == 0
    meta = provenance.read_meta(out / "lda")
    assert meta["lemmatizer"] == "simplemma" and meta["lemmatizer_requested"] == "auto"
    assert "fell back to simplemma" in meta["lemmatizer_fallback"]


def test_real_wikipedia_texts_follow_the_release_rules(shared_data, tmp_path):
    """Our three stages against the release's rules re-implemented plainly: tokens, one document per
    image (a loop over the image -> article pairs), Dictionary + filter_extremes, and label rows from
    gensim's get_document_topics(minimum_probability=None) with 0 for the topics it leaves out."""
    from gensim.corpora import Dictionary, MmCorpus
    from gensim.models import LdaModel
    from test_text import release_stop_words, release_tokens, wordnet_lemmatizer
    from test_topics import gensim_release_row

    lemmatize, stop = wordnet_lemmatizer(), release_stop_words()
    coll = _real_text_collection(shared_data, tmp_path / "data", 120)
    out = tmp_path / "run"
    assert build.main(["--collection", str(coll), "--out", str(out), "--no-progress"]) == 0
    assert learn.main(["--out", str(out), "--num-topics", "10", "--no-below", "5", "--passes", "5",
                       "--reproducible", "--no-progress"]) == 0
    assert label.main(["--out", str(out), "--no-progress"]) == 0

    # The release: texts = [preprocess(article of image) for image in train_dict], Dictionary(texts).
    pairs = [line.split("\t") for line in io.read_lines(out / "pairs" / "pairs.tsv")]
    n_images = len(list((coll / "images" / "0").glob("*.jpg")))
    assert len(pairs) == n_images > 120
    cache: dict[str, list[str]] = {}
    texts = []
    for _image, article, _ in pairs:
        if article not in cache:
            cache[article] = release_tokens(Path(article).read_text(encoding="utf-8"), lemmatize, stop)
        texts.append(cache[article])
    reference = Dictionary(texts)
    reference.filter_extremes(no_below=5, no_above=0.5)
    ours = Dictionary.load(str(out / "lda" / "dictionary.dict"))
    assert ours.token2id == reference.token2id and ours.dfs == reference.dfs
    assert ours.num_docs == reference.num_docs == n_images and len(ours) > 500
    corpus = [[(i, int(v)) for i, v in doc] for doc in MmCorpus(str(out / "lda" / "corpus.mm"))]
    assert corpus == [reference.doc2bow(t) for t in texts]
    meta = provenance.read_meta(out / "lda")
    assert meta["counts"]["heldout_documents"] == 0 and meta["counts"]["train_documents"] == n_images

    # Labels: the release's rows, images of one article sharing theirs.
    model = LdaModel.load(str(out / "lda" / "ldamodel10.lda"))
    y = np.load(out / "labels" / "labels.npy")
    row_of = {img: i for i, img in enumerate(io.read_lines(out / "labels" / "index.txt"))}
    assert len(row_of) == n_images
    for (image, _, _), tokens in zip(pairs, texts):
        assert np.array_equal(y[row_of[image]], gensim_release_row(model, reference.doc2bow(tokens), 10)), image
    assert (y == 0).any() and (y.sum(axis=1) < 1).any()
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

"""experiments/multimodal_retrieval.py end to end: demo corpus, and the real Wikipedia texts in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script
from gensim.corpora import Dictionary
from gensim.models import LdaModel

from texttopicnet.core.errors import DataError
from texttopicnet.data.readers.wikipedia import find_wikipedia_root, load_wikipedia
from texttopicnet.evaluation.metrics import chance_ap
from texttopicnet.text.preprocess import preprocess
from texttopicnet.text.topics import DICTIONARY_NAME, model_filename, save_lda


def make_lda(texts, folder: Path, k: int, no_below: int = 2) -> Path:
    """A small real gensim LDA in the layout lda/02 writes (ldamodel{K}.lda + dictionary.dict)."""
    toks = [preprocess(t) for t in texts]
    d = Dictionary(toks)
    d.filter_extremes(no_below=no_below, no_above=0.5)
    lda = LdaModel([d.doc2bow(t) for t in toks], num_topics=k, id2word=d, passes=3, random_state=0)
    folder.mkdir(parents=True, exist_ok=True)
    save_lda(lda, folder / model_filename(k))
    d.save(str(folder / DICTIONARY_NAME))
    return folder


@pytest.fixture(scope="module")
def script():
    return load_script("experiments/multimodal_retrieval.py")


@pytest.fixture(scope="module")
def demo_lda(demo_corpus, tmp_path_factory):
    train = load_wikipedia(find_wikipedia_root(demo_corpus), "train")
    return make_lda([p.text for p in train], tmp_path_factory.mktemp("lda") / "lda", k=10)


def test_demo_end_to_end(script, demo_corpus, demo_lda, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--out", str(run), "--weights", "random", "--tag", "random", "--lda", str(demo_lda),
            "--data-root", str(demo_corpus), "--device", "cpu", "--workers", "1"]
    assert script.main(argv) == 0
    res = json.loads((run / "retrieval" / "random" / "results.json").read_text())
    test = load_wikipedia(find_wikipedia_root(demo_corpus), "test")
    for key in ("tag", "weights_sha256", "n_queries", "img2txt_map", "txt2img_map", "chance_img2txt",
                "chance_txt2img", "per_category", "score"):
        assert key in res
    assert res["score"] == "kl" and res["n_queries"] == len(test)
    n_img = res["n_image_queries"]
    assert n_img + res["n_missing_images"] + res["n_unreadable_images"] == len(test)
    assert 0 < res["img2txt_map"] <= 1 and 0 < res["txt2img_map"] <= 1
    # chance is the mean expected AP of random rankings for each text query's category size
    cats = np.array([p.category for p in test])
    assert res["per_category"] and sum(v["n"] for v in res["per_category"].values()) == len(test)
    if n_img == len(test):
        expect = chance_ap([int((cats == c).sum()) for c in cats], len(test)).mean()
        assert res["chance_txt2img"] == pytest.approx(expect)
    ex = json.loads((run / "retrieval" / "random" / "examples.json").read_text())
    q = ex["img2txt"][0]
    assert Path(q["query"]["image_path"]).is_file() and len(q["results"]) == min(10, len(test))
    assert all(r["relevant"] == (r["category"] == q["query"]["category"]) for r in q["results"])
    assert len(ex["txt2img"][0]["results"]) == min(10, n_img) and ex["txt2img"][0]["query"]["snippet"]
    assert "random" in (run / "retrieval" / "summary.md").read_text()
    md = (run / "retrieval" / "random" / "results.md").read_text()
    assert "chance" in md and "image -> text" in md
    # idempotent, then a different score behind the flag
    capsys.readouterr()
    assert script.main(argv) == 0 and "already done" in capsys.readouterr().out
    assert script.main(argv + ["--score", "cosine", "--tag", "random-cos"]) == 0
    cos = json.loads((run / "retrieval" / "random-cos" / "results.json").read_text())
    assert cos["score"] == "cosine" and cos["img2txt_map"] != res["img2txt_map"]


def test_network_and_topic_model_must_agree(script, demo_corpus, demo_lda, tmp_path):
    from safetensors.torch import save_file

    from texttopicnet.weights.loading import load_network

    net, _ = load_network("random", num_outputs=7)
    w = tmp_path / "seven.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(w))
    with pytest.raises(DataError, match="7 outputs"):
        script.main(["--out", str(tmp_path), "--weights", str(w), "--lda", str(demo_lda),
                     "--data-root", str(demo_corpus), "--device", "cpu"])


@pytest.fixture(scope="module")
def real_lda(shared_data, tmp_path_factory):
    pairs = load_wikipedia(shared_data / "wikipedia", "train")[:200]
    return make_lda([p.text for p in pairs], tmp_path_factory.mktemp("real_lda") / "lda", k=10, no_below=3)


def test_real_wikipedia_texts_and_missing_images(script, shared_data, real_lda, tmp_path, capsys):
    """The real test split: every text is projected (malformed XML included); no test image is present."""
    argv = ["--out", str(tmp_path), "--weights", "random", "--lda", str(real_lda),
            "--data-root", str(shared_data / "wikipedia"), "--device", "cpu", "--workers", "1"]
    with pytest.raises(DataError, match="none of the 693 test images"):
        script.main(argv)
    assert "projecting 693 texts" in capsys.readouterr().out


def test_real_wikipedia_train_split_with_the_real_images(script, shared_data, real_lda, tmp_path, capsys):
    """The train split holds the 53 real images: the full evaluation runs on them, the rest are counted."""
    argv = ["--out", str(tmp_path), "--weights", "random", "--lda", str(real_lda), "--split", "train",
            "--data-root", str(shared_data / "wikipedia"), "--device", "cpu", "--workers", "2"]
    assert script.main(argv) == 0
    res = json.loads((tmp_path / "retrieval" / "random" / "results.json").read_text())
    assert res["n_queries"] == 2173 and res["n_image_queries"] == 53 and res["n_missing_images"] == 2120
    assert "2120 of 2173 images" in capsys.readouterr().out
    assert 0 < res["chance_img2txt"] < 0.3 and 0 < res["img2txt_map"] <= 1


def test_vector_loss_network_is_read_at_its_logits_and_ranked_by_cosine(script, demo_corpus, demo_lda, tmp_path,
                                                                        capsys):
    """A checkpoint of another architecture that records the triplet loss: images are its L2-normalised
    logits, ranked by cosine; the mAP is recomputed here from the cached logits and the texts."""
    import torch

    from texttopicnet.evaluation.metrics import retrieval_map
    from texttopicnet.networks import backbones
    from texttopicnet.text.topics import TopicModel
    from texttopicnet.training.checkpoint import save_checkpoint
    from texttopicnet.weights.loading import load_network

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # torchvision nets: two OpenMP threads spin on a shared 2-core machine
    try:
        net, _ = load_network("random", num_outputs=10, seed=1, arch="alexnet")
        ck = tmp_path / "train" / "checkpoint.pt"
        ck.parent.mkdir()
        save_checkpoint(ck, {"model": net.state_dict(), "arch": backbones.describe(net), "iteration": 1,
                             "loss": {"name": "triplet", "margin": 0.1, "negatives": "soft", "seed": 0}})
        run = tmp_path / "run"
        argv = ["--out", str(run), "--weights", str(ck), "--tag", "w2v", "--lda", str(demo_lda),
                "--data-root", str(demo_corpus), "--device", "cpu", "--workers", "1"]
        assert script.main(argv) == 0
        assert "network: alexnet trained with triplet (recorded); images read at logits, ranked by cosine" in \
            capsys.readouterr().out
        res = json.loads((run / "retrieval" / "w2v" / "results.json").read_text())
        assert (res["arch"], res["loss"], res["image_layer"], res["score"]) == ("alexnet", "triplet", "logits", "cosine")
        folder = next((run / "features").iterdir())
        logits = np.load(folder / "wikipedia_test_logits.npy")
        img_paths = (folder / "wikipedia_test_logits.txt").read_text().splitlines()
        test = load_wikipedia(find_wikipedia_root(demo_corpus), "test")
        cat_of = {str(p.image_path): p.category for p in test if p.image_path is not None}
        texts = TopicModel.load(demo_lda).infer([p.text for p in test], empty="nan", seed=0)
        texts[np.isnan(texts).any(axis=1)] = 1.0 / texts.shape[1]
        img = logits / np.linalg.norm(logits, axis=1, keepdims=True)
        txt = texts / np.linalg.norm(texts, axis=1, keepdims=True)
        dist = 1 - txt @ img.T  # [text, image]
        txt_lab = np.array([p.category for p in test])
        img_lab = np.array([cat_of[p] for p in img_paths])
        assert res["img2txt_map"] == pytest.approx(retrieval_map(dist.T, img_lab, txt_lab), abs=1e-5)
        assert res["txt2img_map"] == pytest.approx(retrieval_map(dist, txt_lab, img_lab), abs=1e-5)
        # the paper's reading on demand: --loss says how the outputs map into the text space
        assert script.main(argv + ["--loss", "sigmoid_ce", "--tag", "w2v-prob"]) == 0
        prob = json.loads((run / "retrieval" / "w2v-prob" / "results.json").read_text())
        assert (prob["image_layer"], prob["score"]) == ("prob", "kl")
    finally:
        torch.set_num_threads(before)


def test_vector_space_texts_through_the_training_target_and_cosine(script, demo_corpus, tmp_path, capsys):
    """--space with a word2vec folder: texts are the space's embeddings through minshift_l2 (written
    plainly here), images the network's sigmoid outputs, ranked by cosine; mAP recomputed here."""
    import texttopicnet
    from texttopicnet.evaluation.metrics import retrieval_map

    root = find_wikipedia_root(demo_corpus)
    space = texttopicnet.fit_text_space("word2vec", [p.text for p in load_wikipedia(root, "train")], seed=0,
                                        dim=16, epochs=2, min_count=2)
    space.save(tmp_path / "space")
    run = tmp_path / "run"
    argv = ["--out", str(run), "--weights", "random", "--tag", "random", "--space", str(tmp_path / "space"),
            "--data-root", str(demo_corpus), "--device", "cpu", "--workers", "1"]
    assert script.main(argv) == 0
    assert "target minshift_l2" in capsys.readouterr().out
    res = json.loads((run / "retrieval" / "random" / "results.json").read_text())
    assert (res["space"], res["target"], res["score"], res["num_topics"]) == ("word2vec", "minshift_l2", "cosine", 16)

    test = load_wikipedia(root, "test")
    raw, empty = space.embed([p.text for p in test], return_empty=True)
    txt = []
    for row, is_empty in zip(raw.astype(np.float64), empty):
        if is_empty:
            txt.append(np.ones_like(row))
            continue
        if row.min() < 0:
            row = row - row.min()
        txt.append(row / np.sqrt((row ** 2).sum()))
    txt = np.array(txt)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    folder = next((run / "features").iterdir())
    prob = np.load(folder / "wikipedia_test_prob.npy").astype(np.float64)
    img_paths = (folder / "wikipedia_test_prob.txt").read_text().splitlines()
    img = prob / np.linalg.norm(prob, axis=1, keepdims=True)
    cat_of = {str(p.image_path): p.category for p in test if p.image_path is not None}
    dist = 1 - txt @ img.T
    txt_lab = np.array([p.category for p in test])
    img_lab = np.array([cat_of[p] for p in img_paths])
    assert res["img2txt_map"] == pytest.approx(retrieval_map(dist.T, img_lab, txt_lab), abs=1e-5)
    assert res["txt2img_map"] == pytest.approx(retrieval_map(dist, txt_lab, img_lab), abs=1e-5)
    # a network of another size than the space: a clear error, not a traceback
    from texttopicnet.networks import backbones
    from texttopicnet.training.checkpoint import save_checkpoint
    from texttopicnet.weights.loading import load_network

    net, _ = load_network("random", num_outputs=7, seed=0)
    ck = tmp_path / "net7.pt"
    save_checkpoint(ck, {"model": net.state_dict(), "arch": backbones.describe(net), "iteration": 0})
    with pytest.raises(DataError, match="16 dimensions"):
        script.main(["--out", str(run), "--weights", str(ck), "--tag", "seven", "--space", str(tmp_path / "space"),
                     "--data-root", str(demo_corpus), "--device", "cpu", "--workers", "1"])

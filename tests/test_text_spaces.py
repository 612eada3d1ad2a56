"""Text spaces (texttopicnet.text.spaces): every space fit and checked on generated topic texts.

References are independent: plain loops with scipy for the distances, hand-written
transforms for the training targets, plain gensim for LDA, word-vector files written
by gensim itself (GloVe text, word2vec text and binary) and gensim's own GloVe test file.
Tokenisation uses ``lemmatizer="none"`` (fast, and the generated words need no lemmas);
one test checks the default tokenizer is the project's preprocessing.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine
from scipy.stats import entropy

import texttopicnet
from texttopicnet.core.errors import DataError, UserError
from texttopicnet.text.spaces import SPACES, UnknownWordsError, default_options, leave_one_out_map, targets
from texttopicnet.text.spaces.glove import detect_format

ROOT = Path(__file__).resolve().parent.parent
TOK = {"lemmatizer": "none"}
N_TOPICS, PER_TOPIC = 4, 50
SMALL = {
    "lda": {"num_topics": 4, "no_below": 2, "passes": 20, "reproducible": True, "workers": 1},
    "lsi": {"num_topics": 4, "no_below": 2},
    "word2vec": {"dim": 16, "min_count": 2, "window": 5, "epochs": 20},
    "doc2vec": {"dim": 16, "min_count": 2, "epochs": 30},
    "fasttext": {"dim": 16, "min_count": 2, "window": 5, "epochs": 20, "bucket": 5000},
    "glove": {"weighting": "tfidf"},
}
WORD_SPACES = ("word2vec", "fasttext", "glove")


def _words(rng, n):
    syl = ["ba", "ko", "ri", "me", "tu", "za", "lo", "pi", "ne", "du", "ga", "vi", "so", "fe"]
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(syl, 3)) + rng.choice(["x", "k", "m"]))
    return sorted(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 topics x 50 texts: 12 words of the text's topic, 12 shared words, 2 of another topic."""
    rng = np.random.default_rng(0)
    vocab = _words(rng, 4 * 30 + 20)
    topics = [vocab[30 * k:30 * (k + 1)] for k in range(N_TOPICS)]
    shared = vocab[120:]
    texts, labels = [], []
    for i in range(N_TOPICS * PER_TOPIC):
        k = i % N_TOPICS
        ws = [*rng.choice(topics[k], 12), *rng.choice(shared, 12), *rng.choice(topics[(k + 1) % N_TOPICS], 2)]
        rng.shuffle(ws)
        texts.append(" ".join(ws))
        labels.append(k)
    # GloVe-format vectors "trained elsewhere": topic words near their topic's centre, written by gensim.
    from gensim.models import KeyedVectors

    centres = rng.normal(size=(N_TOPICS, 12))
    words = [w for t in topics for w in t] + shared + ["outsider"]
    vecs = [centres[k] + 0.3 * rng.normal(size=12) for k in range(N_TOPICS) for _ in range(30)]
    vecs += [0.3 * rng.normal(size=12) for _ in range(len(shared) + 1)]
    kv = KeyedVectors(12)
    kv.add_vectors(words, np.array(vecs, dtype=np.float32))
    glove_path = tmp_path_factory.mktemp("vectors") / "vectors.txt"
    kv.save_word2vec_format(str(glove_path), write_header=False)
    return {"texts": texts, "labels": np.array(labels), "topics": topics, "shared": shared, "kv": kv,
            "glove": glove_path}


def _fit(name, corpus, **extra):
    opts = {**SMALL[name], **TOK, **extra}
    if name == "glove":
        opts.setdefault("vectors", str(corpus["glove"]))
    return texttopicnet.fit_text_space(name, corpus["texts"], seed=0, **opts)


@pytest.fixture(scope="module")
def fitted(corpus):
    return {name: _fit(name, corpus) for name in SPACES}


def test_registry_and_lazy_top_level_api():
    assert set(SPACES) == {"lda", "lsi", "word2vec", "doc2vec", "fasttext", "glove"}
    code = ("import sys, texttopicnet; assert 'gensim' not in sys.modules, 'import texttopicnet pulled in gensim'; "
            "f = texttopicnet.fit_text_space; assert callable(texttopicnet.load_text_space); print(f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "texttopicnet.text.spaces"


@pytest.mark.parametrize("name", SPACES)
def test_embed_shape_kind_and_topic_separation(fitted, corpus, name):
    space = fitted[name]
    x = space.embed(corpus["texts"])
    assert x.dtype == np.float32 and x.shape == (len(corpus["texts"]), space.dim) and np.isfinite(x).all()
    assert (space.kind, space.similarity) == (("distribution", "kl") if name == "lda" else ("vector", "cosine"))
    if space.kind == "distribution":
        np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-5)
    # A real behaviour check: texts of one generated topic are closer to each other than to the others.
    d = space.distances(x, x)
    same = corpus["labels"][:, None] == corpus["labels"][None, :]
    off = ~np.eye(len(x), dtype=bool)
    assert d[same & off].mean() < d[~same].mean()
    mean_ap, _ = leave_one_out_map(x, corpus["labels"], space.similarity)
    assert mean_ap > 0.8, f"{name}: leave-one-out mAP {mean_ap:.3f} (chance is about 0.25)"


@pytest.mark.parametrize("name", SPACES)
def test_save_load_round_trip_is_identical(fitted, corpus, tmp_path, name):
    space = fitted[name]
    folder = space.save(tmp_path / name)
    again = texttopicnet.load_text_space(folder)
    assert type(again) is type(space) and again.dim == space.dim and again.seed == space.seed
    assert again.options == space.options and again.tokenizer.spec == space.tokenizer.spec
    np.testing.assert_array_equal(again.embed(corpus["texts"]), space.embed(corpus["texts"]))
    manifest = texttopicnet.text.spaces.base.read_manifest(folder)
    assert manifest["kind"] == space.kind and manifest["similarity"] == space.similarity
    assert manifest["versions"]["gensim"] and manifest["seed"] == 0
    listed = set(manifest["files"])
    assert listed == {p.name for p in folder.iterdir()} - {"manifest.json"}
    for f, digest in manifest["files"].items():
        assert hashlib.sha256((folder / f).read_bytes()).hexdigest() == digest
    if name in WORD_SPACES:
        words = corpus["topics"][0][:3]
        np.testing.assert_array_equal(again.embed_words(words), space.embed_words(words))
    # Saving again over it replaces it (atomically); a foreign folder is never overwritten.
    space.save(folder)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "meta.json").write_text("{}")
    with pytest.raises(UserError, match="not a saved text space"):
        space.save(tmp_path / "stage")


def test_tampered_file_is_detected(fitted, tmp_path):
    folder = fitted["lsi"].save(tmp_path / "lsi")
    with open(folder / "dictionary.dict", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataError, match="sha256"):
        texttopicnet.load_text_space(folder)


@pytest.mark.parametrize("name", SPACES)
def test_distances_match_a_slow_scipy_reference(fitted, corpus, name):
    space = fitted[name]
    x = space.embed(corpus["texts"][:12]).astype(np.float64)
    d = space.distances(x[:4], x)
    for i in range(4):
        for j in range(len(x)):
            if space.similarity == "kl":
                q = np.maximum(x[j], 1e-10)
                ref = entropy(x[i] / x[i].sum(), q / q.sum())
            else:
                ref = scipy_cosine(x[i], x[j])
            assert d[i, j] == pytest.approx(ref, abs=1e-9)
        assert np.argsort(d[i], kind="stable")[0] == i  # a text is nearest to itself


def test_leave_one_out_map_against_plain_loops():
    rng = np.random.default_rng(3)
    x, lab = rng.normal(size=(30, 5)), rng.integers(0, 3, size=30)
    got, ap = leave_one_out_map(x, lab, "cosine")
    ref = []
    for i in range(30):
        others = [j for j in range(30) if j != i]
        order = sorted(others, key=lambda j: scipy_cosine(x[i], x[j]))
        hits, precisions = 0, []
        for rank, j in enumerate(order, 1):
            if lab[j] == lab[i]:
                hits += 1
                precisions.append(hits / rank)
        ref.append(sum(precisions) / len(precisions) if precisions else 0.0)
    np.testing.assert_allclose(ap, ref, atol=1e-12)
    assert got == pytest.approx(np.mean(ref))


@pytest.mark.parametrize("name", SPACES)
def test_same_texts_and_seed_give_the_same_embeddings(fitted, corpus, name):
    again = _fit(name, corpus)
    np.testing.assert_array_equal(again.embed(corpus["texts"]), fitted[name].embed(corpus["texts"]))


def test_embeddings_do_not_depend_on_the_process_hash_seed(corpus, tmp_path):
    """gensim's own Doc2Vec.infer_vector depends on PYTHONHASHSEED; ours must not (nor the training)."""
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(corpus["texts"][:80]))
    code = (
        "import hashlib, sys, texttopicnet\n"
        "texts = open(sys.argv[1]).read().split('\\n')\n"
        "opts = {'doc2vec': dict(dim=8, min_count=2, epochs=5), 'word2vec': dict(dim=8, min_count=2, epochs=5),\n"
        "        'fasttext': dict(dim=8, min_count=2, epochs=5, bucket=2000)}\n"
        "for name, o in opts.items():\n"
        "    s = texttopicnet.fit_text_space(name, texts, seed=3, lemmatizer='none', **o)\n"
        "    print(name, hashlib.sha256(s.embed(texts[::-1]).tobytes()).hexdigest())\n")
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        r = subprocess.run([sys.executable, "-c", code, str(texts_file)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] and outs[0].count("\n") == 3


@pytest.mark.parametrize("name", SPACES)
def test_empty_texts_get_the_documented_row(fitted, name):
    space = fitted[name]
    x, empty = space.embed(["", "the and of", "qqqq wwww zzzz"], return_empty=True)
    assert empty.tolist() == [True, True, True] and np.isfinite(x).all()
    expected = np.full(space.dim, 1 / space.dim) if space.kind == "distribution" else np.zeros(space.dim)
    np.testing.assert_allclose(x, np.tile(expected, (3, 1)), atol=1e-7)
    assert np.isfinite(space.distances(x, x)).all()


@pytest.mark.parametrize("name", WORD_SPACES)
def test_embed_words_and_unknown_words(fitted, corpus, name):
    space = fitted[name]
    words = [corpus["topics"][1][0], corpus["shared"][0]]
    got = space.embed_words([w.upper() for w in words])  # normalised like the texts: lower case
    assert got.dtype == np.float32 and got.shape == (2, space.dim)
    np.testing.assert_array_equal(got, np.asarray(space.kv[words], dtype=np.float32))
    bad = ["", "notaword"] if name == "fasttext" else ["zzzyyy", "notaword"]
    with pytest.raises(KeyError) as info:
        space.embed_words([words[0], *bad])
    err = info.value
    assert isinstance(err, UnknownWordsError)
    if name == "fasttext":  # n-grams give "notaword" a vector; only a word without n-grams is impossible
        assert err.words == [""]
        oov = space.embed_words(["notaword"])[0]
        np.testing.assert_allclose(oov, space.kv.get_vector("notaword"), rtol=1e-6)
        assert "notaword" not in space.kv.key_to_index
    else:
        assert err.words == bad and all(repr(w) in str(err) for w in bad)


def test_spaces_without_word_vectors_have_no_embed_words(fitted):
    for name in ("lda", "lsi", "doc2vec"):
        assert not fitted[name].has_word_vectors and not hasattr(fitted[name], "embed_words")


@pytest.mark.parametrize("name", SPACES)
def test_nearest_known_suggests_the_misspelt_word(fitted, corpus, name):
    word = corpus["topics"][2][5]
    typo = word[:2] + word[3:]  # one letter dropped
    near = fitted[name].nearest_known(typo, 5)
    assert len(near) <= 5 and all(w in set(fitted[name].vocabulary()) for w in near)
    if name == "fasttext":
        assert near  # by n-gram vectors: neighbours, not necessarily the spelling
    else:
        assert near[0] == word
        assert fitted[name].nearest_known(word, 1) == [word]


def test_word2vec_weightings_against_a_plain_computation(fitted, corpus):
    space = fitted["word2vec"]
    token_lists = [t.split() for t in corpus["texts"]]
    df = Counter(w for toks in token_lists for w in set(toks))
    n = len(token_lists)
    queries = corpus["texts"][:5]
    mean = space.with_weighting("mean").embed(queries)
    tfidf = space.with_weighting("tfidf").embed(queries)
    for i, text in enumerate(queries):
        toks = [t for t in text.split() if t in space.kv.key_to_index]
        ref = np.mean([space.kv[t] for t in toks], axis=0)
        np.testing.assert_allclose(mean[i], ref, rtol=1e-5, atol=1e-6)
        weights = [math.log2(n / df[t]) for t in toks]  # count x idf summed over occurrences
        ref = sum(w * space.kv[t].astype(np.float64) for w, t in zip(weights, toks)) / sum(weights)
        np.testing.assert_allclose(tfidf[i], ref, rtol=1e-5, atol=1e-6)


def test_glove_reads_files_written_by_gensim(corpus, tmp_path):
    kv = corpus["kv"]
    files = {"glove": corpus["glove"], "word2vec": tmp_path / "v.w2v.txt", "word2vec_binary": tmp_path / "v.bin"}
    kv.save_word2vec_format(str(files["word2vec"]), binary=False)
    kv.save_word2vec_format(str(files["word2vec_binary"]), binary=True)
    words = [corpus["topics"][0][0], "outsider"]
    for fmt, path in files.items():
        assert detect_format(path) == fmt
        space = texttopicnet.fit_text_space("glove", corpus["texts"][:20], vectors=str(path), **TOK)
        assert space.info["vectors_format"] == fmt and space.dim == 12
        np.testing.assert_allclose(space.embed_words(words), kv[words], rtol=1e-6)  # text keeps ~7 digits
    # "fit" learns only the idf weights: the vectors do not depend on the texts.
    other = texttopicnet.fit_text_space("glove", corpus["texts"][20:], vectors=str(files["glove"]), **TOK)
    np.testing.assert_array_equal(other.kv.vectors, space.kv.vectors)


def test_glove_reads_gensims_real_glove_test_file():
    from gensim.test.utils import datapath

    path = datapath("test_glove.txt")  # real GloVe 6B 50d lines, no header
    with open(path, encoding="utf-8") as fh:
        first = fh.readline().split()
    space = texttopicnet.fit_text_space("glove", ["the cat"], vectors=path, tokenizer="whitespace")
    assert detect_format(path) == "glove" and space.dim == 50 == len(first) - 1
    np.testing.assert_array_equal(space.embed_words([first[0]])[0], np.array(first[1:], dtype=np.float32))


def test_bad_options_and_inputs_are_user_errors(corpus, tmp_path):
    with pytest.raises(UserError, match="unknown option"):
        texttopicnet.fit_text_space("lsi", corpus["texts"], num_topic=3, **TOK)
    with pytest.raises(UserError, match="vectors=PATH"):
        texttopicnet.fit_text_space("glove", corpus["texts"], **TOK)
    with pytest.raises(UserError, match="not found"):
        texttopicnet.fit_text_space("glove", corpus["texts"], vectors=str(tmp_path / "nope.txt"), **TOK)
    with pytest.raises(UserError, match="unknown text space"):
        texttopicnet.fit_text_space("bert", corpus["texts"])
    with pytest.raises(UserError, match="single string"):
        texttopicnet.fit_text_space("lsi", "one text", **TOK)
    (tmp_path / "bad.txt").write_bytes(b"word 0.1 zz\n")
    with pytest.raises(DataError):
        texttopicnet.fit_text_space("glove", ["word"], vectors=str(tmp_path / "bad.txt"), **TOK)


def test_training_targets_against_plain_reimplementations():
    rng = np.random.default_rng(1)
    v = np.vstack([rng.normal(size=(6, 7)), np.abs(rng.normal(size=(2, 7))), np.zeros((1, 7)), np.full((1, 7), -2.0)])

    def fork(row):  # gombru/TextTopicNet: if min < 0: shift; if sum > 0: divide by the L2 norm
        row = [x - min(row) for x in row] if min(row) < 0 else list(row)
        norm = math.sqrt(sum(x * x for x in row))
        return [x / norm for x in row] if sum(row) > 0 else row

    def learn_from_web_data(row):  # v -= min(v); if max(v) > 0: v /= max(v)
        row = [x - min(row) for x in row]
        return [x / max(row) for x in row] if max(row) > 0 else row

    for name, ref in (("minshift_l2", fork), ("minshift_max", learn_from_web_data)):
        got = targets.make_targets(v, name)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, [ref(list(r)) for r in v], atol=1e-6)
        np.testing.assert_allclose(targets.make_targets(3.5 * v, name), got, atol=1e-6)  # scale does not matter
    p = rng.dirichlet(np.ones(5), size=4).astype(np.float32)
    np.testing.assert_array_equal(targets.make_targets(p, "distribution"), p)
    with pytest.raises(DataError):
        targets.check_targets(np.array([[0.7, 0.6]], dtype=np.float32), "distribution")
    with pytest.raises(DataError):
        targets.check_targets(np.array([[0.5, 0.5]], dtype=np.float32), "minshift_l2")
    assert targets.default_target("vector") == "minshift_l2" and targets.default_target("distribution") == "distribution"


def test_lda_defaults_are_the_papers():
    # ../shared/REFERENCE.md, stage 2: 40 topics, filter_extremes(20, 0.5) with gensim's keep_n, 1 pass, LdaMulticore.
    o = default_options("lda")
    assert (o["num_topics"], o["no_below"], o["no_above"], o["keep_n"]) == (40, 20, 0.5, 100000)
    assert (o["passes"], o["chunksize"], o["iterations"], o["reproducible"]) == (1, 2000, 50, False)


def test_lda_space_is_plain_gensim_lda(fitted, corpus):
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel

    tokens = [t.split() for t in corpus["texts"]]
    d = Dictionary(tokens)
    d.filter_extremes(no_below=2, no_above=0.5, keep_n=100000)
    bows = [d.doc2bow(t) for t in tokens]
    ref = LdaModel(bows, id2word=d, num_topics=4, passes=20, chunksize=2000, iterations=50, random_state=0,
                   eval_every=None)
    space = fitted["lda"]
    np.testing.assert_array_equal(space.topic_model.lda.expElogbeta, ref.expElogbeta)
    x = space.embed(corpus["texts"][:10])
    for i, bow in enumerate(bows[:10]):
        ref.random_state = np.random.RandomState(0)
        want = np.zeros(4)
        for k, p in ref.get_document_topics(bow, minimum_probability=0):
            want[k] = p
        np.testing.assert_allclose(x[i], want, atol=1e-6)
    rows = space.label_rows(corpus["texts"][:10])  # the release's 0.01 cut-off
    np.testing.assert_array_equal(rows, np.where(x >= 0.01, x, 0))


def test_an_lda_stage_folder_loads_as_a_space(fitted, corpus, tmp_path):
    """lda/02's layout (ldamodel{K}.lda + dictionary.dict + meta.json, no manifest) is a space."""
    from texttopicnet.core.io import write_json
    from texttopicnet.text.topics import TopicModel

    tm = fitted["lda"].topic_model
    folder = tmp_path / "lda"
    folder.mkdir()
    tm.lda.save(str(folder / "ldamodel4.lda"))
    tm.dictionary.save(str(folder / "dictionary.dict"))
    write_json(folder / "meta.json", {"stage": "lda", "lemmatizer": "none", "args": {"no_below": 2}})
    space = texttopicnet.load_text_space(folder)
    assert space.name == "lda" and space.dim == 4 and space.options["no_below"] == 2
    want = TopicModel.load(folder).infer(corpus["texts"][:20], empty="uniform")
    np.testing.assert_array_equal(space.embed(corpus["texts"][:20]), want)
    np.testing.assert_array_equal(texttopicnet.load_text_space(folder / "ldamodel4.lda").embed(corpus["texts"][:5]),
                                  want[:5])


def test_instacities_tokenizer_matches_a_hand_worked_caption():
    from texttopicnet.text.spaces.tokenizers import make_tokenizer

    tok = make_tokenizer("instacities")
    # '#' -> ' ', non [A-Za-z0-9 ] dropped (the URL glues together), lower, simple_preprocess
    # (alphabetic runs only: "2017" goes), then the 174 stop words ("at", "so") and the
    # work's own ("photo") removed.
    assert tok("Sunset at #Barcelona beach!! http://t.co/xyz photo :) so 2017") == [
        "sunset", "barcelona", "beach", "httptcoxyz"]


def test_default_tokenizer_is_the_project_preprocessing(corpus):
    from texttopicnet.text import preprocess

    if not preprocess.wordnet_available():
        pytest.skip("the project's default lemmatiser (WordNet) has no data here")
    space = texttopicnet.fit_text_space("lsi", corpus["texts"], num_topics=3, no_below=2)
    prep = preprocess.Preprocessor()
    assert space.tokenizer.spec == {"name": "project", "lemmatizer": prep.lemmatizer, "stop_words": prep.stop_words}
    text = "The '''churches''' of [[Rome|rome]] were built by geese."
    assert space.tokenizer(text) == prep(text)


def _read_plain(path):
    return Path(path).read_text(encoding="utf-8")


@pytest.mark.parametrize("workers", [1, 2])
def test_embed_articles_for_the_labels_stage(fitted, corpus, tmp_path, workers):
    from texttopicnet.text.spaces.articles import embed_articles

    folder = fitted["word2vec"].save(tmp_path / "space")
    texts = corpus["texts"][:5] + ["", "qqqq zzzz"]
    paths = []
    for i, text in enumerate(texts):
        (tmp_path / f"a{i}.txt").write_text(text, encoding="utf-8")
        paths.append(tmp_path / f"a{i}.txt")
    paths.append(tmp_path / "missing.txt")
    vecs, status = embed_articles(paths, folder, workers=workers, batch_size=3, reader=_read_plain, progress=False)
    assert status == [None] * 5 + ["empty_after_preprocessing", "no_dictionary_words", "unreadable"]
    np.testing.assert_array_equal(vecs[:5], fitted["word2vec"].embed(texts[:5]))
    assert np.isnan(vecs[5:]).all()


def test_doc2vec_pv_dm_is_deterministic_and_separates_topics(corpus):
    a = _fit("doc2vec", corpus, dm=1)
    b = _fit("doc2vec", corpus, dm=1)
    x = a.embed(corpus["texts"])
    np.testing.assert_array_equal(x, b.embed(corpus["texts"]))
    assert leave_one_out_map(x, corpus["labels"], "cosine")[0] > 0.8

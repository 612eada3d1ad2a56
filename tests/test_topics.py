"""TopicModel (texttopicnet.text.topics): loading (incl. old-gensim pickles and the release's unfiltered
dictionary), the release's label rows against gensim's own get_document_topics, top words."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gensim.corpora import Dictionary
from gensim.models import LdaModel

from texttopicnet.core.errors import DataError, UserError
from texttopicnet.text.topics import TopicModel, find_model_file, load_lda, save_lda

RELEASE_FILTER = {"no_below": 20, "no_above": 0.5}  # the release's filter_extremes call

THEMES = {
    "ocean": "wave harbour sailor coral tide reef whale fishing boat lighthouse".split(),
    "music": "guitar violin orchestra melody concert singer rhythm piano chord album".split(),
    "space": "planet galaxy rocket orbit astronaut telescope comet nebula lunar satellite".split(),
}


def make_docs(n=60, seed=0):
    rng = np.random.RandomState(seed)
    names = list(THEMES)
    docs = []
    for i in range(n):
        theme = THEMES[names[i % 3]]
        docs.append(list(rng.choice(theme, size=40)))
    return docs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    docs = make_docs()
    dictionary = Dictionary(docs)
    corpus = [dictionary.doc2bow(d) for d in docs]
    lda = LdaModel(corpus, id2word=dictionary, num_topics=3, passes=20, random_state=1, eval_every=None)
    folder = tmp_path_factory.mktemp("lda")
    save_lda(lda, folder / "ldamodel3.lda")
    dictionary.save(str(folder / "dictionary.dict"))
    return folder


@pytest.fixture(scope="module")
def tm(model_dir):
    return TopicModel.load(model_dir, lemmatizer="none")


def test_load_folder_or_file(model_dir, tm):
    assert tm.num_topics == 3 and len(tm.dictionary) == 30
    same = TopicModel.load(model_dir / "ldamodel3.lda", lemmatizer="none")
    text = ["whale reef tide boat guitar"]
    assert np.array_equal(same.infer(text), tm.infer(text))
    assert find_model_file(model_dir).name == "ldamodel3.lda"


def test_infer_properties_and_topic_separation(tm):
    texts = [" ".join(THEMES[t] * 3) for t in THEMES]
    out = tm.infer(texts)
    assert out.dtype == np.float32 and out.shape == (3, 3)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    # Each pure-theme text is dominated by a different topic.
    assert len(set(out.argmax(axis=1).tolist())) == 3 and out.max(axis=1).min() > 0.8


def test_inference_independent_of_batching_and_order(tm):
    texts = ["whale reef", "galaxy orbit rocket", "piano melody whale", "comet tide"]
    full = tm.infer(texts)
    alone = np.vstack([tm.infer([t]) for t in texts])
    reversed_ = tm.infer(texts[::-1])[::-1]
    assert np.array_equal(full, alone) and np.array_equal(full, reversed_)
    assert np.array_equal(tm.infer(texts, seed=0), full)


def test_empty_documents_modes(tm):
    texts = ["whale reef tide", "", "12 345 the", "unknownword anotherone"]
    with pytest.raises(DataError, match="3 of 4 documents"):
        tm.infer(texts)
    nan = tm.infer(texts, empty="nan")
    assert np.isfinite(nan[0]).all() and np.isnan(nan[1:]).all()
    uni = tm.infer(texts, empty="uniform")
    assert np.allclose(uni[1:], 1 / 3) and np.allclose(uni.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(UserError):
        tm.infer(texts, empty="zeros")
    with pytest.raises(UserError):
        tm.infer("a single string")


def test_top_words(tm):
    words = tm.top_words(0, 5)
    assert len(words) == 5 and all(isinstance(w, str) and isinstance(p, float) for w, p in words)
    probs = [p for _, p in words]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    # A topic's top words come from one theme (the corpus has three clean themes).
    themes = {t for w, _ in words for t, vocab in THEMES.items() if w in vocab}
    assert len(themes) == 1
    with pytest.raises(UserError):
        tm.top_words(3)


def _make_old_style_copy(src_dir, dst_dir):
    """Re-pickle our model the way an old gensim left it: no dtype/random_state/phi attributes,
    expElogbeta neither in the pickle nor as a side file, protocol 2, dictionary without cfs."""
    dst_dir.mkdir()
    lda = LdaModel.load(str(src_dir / "ldamodel3.lda"))
    state = lda.state
    for name in ("dtype", "random_state", "minimum_phi_value", "per_word_topics", "callbacks", "expElogbeta",
                 "state", "id2word"):
        lda.__dict__.pop(name, None)
    lda.__dict__["__numpys"] = ["expElogbeta"]  # pickled "separately" but the side file was never published
    lda.__dict__["__ignoreds"] = ["state", "dispatcher", "id2word"]
    lda.__dict__["__scipys"] = []
    lda.__dict__["__recursive_saveloads"] = []
    with open(dst_dir / "ldamodel40.lda", "wb") as fh:
        pickle.dump(lda, fh, protocol=2)
    state.__dict__.pop("dtype", None)
    with open(dst_dir / "ldamodel40.lda.state", "wb") as fh:
        pickle.dump(state, fh, protocol=2)
    d = Dictionary.load(str(src_dir / "dictionary.dict"))
    d.__dict__.pop("cfs", None)
    with open(dst_dir / "dictionary.dict", "wb") as fh:
        pickle.dump(d, fh, protocol=2)


def test_loads_old_gensim_style_files(model_dir, tm, tmp_path):
    old = tmp_path / "published"
    _make_old_style_copy(model_dir, old)
    legacy = TopicModel.load(old, lemmatizer="none")
    assert legacy.num_topics == 3 and legacy.lda.dtype == np.float64
    texts = ["whale reef tide boat", "galaxy nebula comet", "violin chord"]
    # expElogbeta was rebuilt from the .state file: same vectors up to float rounding.
    assert np.allclose(legacy.infer(texts), tm.infer(texts), atol=1e-4)
    assert [w for w, _ in legacy.top_words(1, 5)] == [w for w, _ in tm.top_words(1, 5)]


def test_load_errors(model_dir, tmp_path):
    with pytest.raises(DataError, match="no ldamodel"):
        TopicModel.load(tmp_path)
    with pytest.raises(DataError, match="no LDA model here"):
        TopicModel.load(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ldamodel40.lda").write_bytes(b"\x80\x02this is not a pickle")
    with pytest.raises(DataError, match="cannot load"):
        load_lda(broken)
    nodict = tmp_path / "nodict"
    nodict.mkdir()
    for f in model_dir.iterdir():
        if f.name != "dictionary.dict":
            (nodict / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match="dictionary"):
        TopicModel.load(nodict)


def gensim_release_row(lda, bow, k, seed=0):
    """The release's label row: get_document_topics(bow, minimum_probability=None) written into
    a K-vector with 0 for the topics gensim leaves out (inference reseeded as TopicModel does)."""
    lda.random_state = np.random.RandomState(seed)
    row = [0.0] * k
    for topic, prob in lda.get_document_topics(bow, minimum_probability=None):
        row[topic] = prob
    return np.asarray(row, dtype=np.float32)


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory):
    """12 topics over 3 themes: most topics of a document fall under gensim's 0.01 cut-off."""
    docs = make_docs(90, seed=3)
    dictionary = Dictionary(docs)
    lda = LdaModel([dictionary.doc2bow(d) for d in docs], id2word=dictionary, num_topics=12, passes=10,
                   random_state=2, eval_every=None)
    folder = tmp_path_factory.mktemp("wide")
    save_lda(lda, folder / "ldamodel12.lda")
    dictionary.save(str(folder / "dictionary.dict"))
    return folder


def test_release_rows_equal_gensim_get_document_topics(wide_model_dir):
    tm = TopicModel.load(wide_model_dir, lemmatizer="none")
    reference = LdaModel.load(str(wide_model_dir / "ldamodel12.lda"))  # an independent copy
    assert tm.minimum_probability == reference.minimum_probability == 0.01
    rng = np.random.RandomState(5)
    vocab = [w for words in THEMES.values() for w in words]
    texts = [" ".join(rng.choice(vocab, size=rng.randint(3, 60))) for _ in range(40)]
    bows = [tm.bow(t.split()) for t in texts]
    release = tm.infer_bow(bows, rows="release", seed=4)
    dense = tm.infer_bow(bows, rows="dense", seed=4)
    assert release.dtype == np.float32 and release.shape == (40, 12)
    for i, bow in enumerate(bows):
        assert np.array_equal(release[i], gensim_release_row(reference, bow, 12, seed=4)), i
    # The cut-off: zeros exactly where the dense value is under 0.01, rows not renormalised.
    assert (release == 0).sum() > 40 and np.array_equal(release != 0, dense >= np.float32(0.01))
    assert np.array_equal(release[release != 0], dense[release != 0])
    sums = release.sum(axis=1)
    assert (sums <= 1 + 1e-6).all() and (sums > 0.85).all() and (sums < 0.999).sum() >= 30
    assert np.allclose(dense.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(tm.infer(texts, rows="release", seed=4), release)
    with pytest.raises(UserError):
        tm.infer_bow(bows, rows="sparse")


def _release_style_files(folder, num_topics=5):
    """Imitate the published files as the release made them: one document per image, the
    dictionary SAVED BEFORE filter_extremes(20, 0.5), the model trained on the filtered one."""
    rng = np.random.RandomState(7)
    names = list(THEMES)
    texts = []
    for a in range(150):
        words = list(rng.choice(THEMES[names[a % 3]], size=30)) + ["common"] + [f"rare{a}"] * 3
        texts += [words] * (1 + a % 3)  # the article once per image
    dictionary = Dictionary(texts)
    dictionary.save(str(folder / "dictionary.dict"))
    dictionary.filter_extremes(**RELEASE_FILTER)
    lda = LdaModel([dictionary.doc2bow(t) for t in texts], id2word=dictionary, num_topics=num_topics, passes=3,
                   random_state=0, eval_every=None)
    lda.save(str(folder / f"ldamodel{num_topics}.lda"))
    return texts


def test_loads_the_releases_unfiltered_dictionary(tmp_path):
    texts = _release_style_files(tmp_path)
    unfiltered = Dictionary.load(str(tmp_path / "dictionary.dict"))
    tm = TopicModel.load(tmp_path, lemmatizer="none")
    assert tm.dictionary_refiltered and len(unfiltered) > len(tm.dictionary) == tm.lda.num_terms == 30
    # What the release's label script does: load, filter_extremes(20, 0.5) again, doc2bow, get_document_topics.
    label_dict = Dictionary.load(str(tmp_path / "dictionary.dict"))
    label_dict.filter_extremes(**RELEASE_FILTER)
    assert tm.dictionary.token2id == label_dict.token2id
    model = LdaModel.load(str(tmp_path / "ldamodel5.lda"))
    for words in texts[:30:4]:
        bow = label_dict.doc2bow(words)
        assert tm.bow(words) == bow
        assert np.array_equal(tm.infer_bow([bow], rows="release")[0], gensim_release_row(model, bow, 5))


def test_a_dictionary_of_another_model_is_refused(tmp_path):
    _release_style_files(tmp_path)
    other = Dictionary([[f"word{i}" for i in range(200)]] * 30)  # 200 words, none passes filter_extremes
    other.save(str(tmp_path / "dictionary.dict"))
    with pytest.raises(DataError, match="does not belong to this model"):
        TopicModel.load(tmp_path, lemmatizer="none")

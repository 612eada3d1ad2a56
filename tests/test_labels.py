"""Per-image labels (texttopicnet.text.labels): one inference per article, exclusions counted, the release's
rows (gensim's get_document_topics with its 0.01 cut-off) checked against gensim itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gensim.corpora import Dictionary
from gensim.models import LdaModel

from texttopicnet.core.errors import DataError
from texttopicnet.data.pairs import Pair
from texttopicnet.text import labels
from texttopicnet.text.topics import TopicModel, save_lda

NO_EXCLUSION = dict.fromkeys(labels.EXCLUSION_REASONS, 0)

WORDS = {
    "sea": "wave harbour sailor coral tide reef whale fishing boat lighthouse".split(),
    "sky": "planet galaxy rocket orbit astronaut telescope comet nebula lunar satellite".split(),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("labels")
    rng = np.random.RandomState(0)
    docs = [list(rng.choice(WORDS["sea" if i % 2 else "sky"], size=30)) for i in range(40)]
    dictionary = Dictionary(docs)
    lda = LdaModel([dictionary.doc2bow(d) for d in docs], id2word=dictionary, num_topics=40, passes=10,
                   random_state=0, eval_every=None)
    model_dir = base / "lda"
    save_lda(lda, model_dir / "ldamodel40.lda")
    dictionary.save(str(model_dir / "dictionary.dict"))
    arts = base / "articles"
    arts.mkdir()
    texts = {
        "sea.txt": b"The '''whale''' swam past the [[reef]] and the lighthouse; sailors fished.",
        "sky.txt": b"A rocket reached lunar orbit; the telescope saw a comet and a nebula.",
        "mixed.txt": b"Whales and comets. Boat \xff\xfe rocket \xe9 tide.",  # non-UTF-8 bytes
        "stub.txt": b"{{stub}} 1999 the of and",                          # empty after preprocessing
        "foreign.txt": b"Zebras gallop savannah grassland",               # no word in the dictionary
    }
    for name, data in texts.items():
        (arts / name).write_bytes(data)
    articles = [arts / n for n in texts] + [arts / "deleted.txt"]       # unreadable (missing)
    images = []
    for i, a in enumerate(articles):
        for j in range(i % 3 + 1):  # 1-3 images per article
            images.append(Pair(base / "img" / f"{i}_{j}.jpg", a, f"{i}_{j}"))
    return model_dir, articles, images


def test_infer_articles_status_and_release_rows(setup):
    from test_topics import gensim_release_row

    from texttopicnet.data.readers.imageclef import read_article
    model_dir, articles, _ = setup
    vecs, status = labels.infer_articles(articles, model_dir, workers=1, lemmatizer="none", progress=False, seed=3)
    assert vecs.shape == (6, 40) and vecs.dtype == np.float32
    assert status == [None, None, None, "empty_after_preprocessing", "no_dictionary_words", "unreadable"]
    assert np.isfinite(vecs[:3]).all() and np.isnan(vecs[3:]).all()
    # The release's rows: gensim's get_document_topics(minimum_probability=None) into K values.
    model = LdaModel.load(str(model_dir / "ldamodel40.lda"))
    dictionary = Dictionary.load(str(model_dir / "dictionary.dict"))
    tm = TopicModel.load(model_dir, lemmatizer="none")
    for i in range(3):
        bow = dictionary.doc2bow(tm.preprocessor()(read_article(articles[i])))
        assert np.array_equal(vecs[i], gensim_release_row(model, bow, 40, seed=3)), i
    assert (vecs[:3] == 0).any() and (vecs[:3].sum(axis=1) < 1).all()
    assert vecs[0].argmax() != vecs[1].argmax()  # sea and sky articles land in different topics
    dense, _ = labels.infer_articles(articles, model_dir, lemmatizer="none", progress=False, seed=3, rows="dense")
    assert np.allclose(dense[:3].sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(dense[:3], tm.infer([read_article(a) for a in articles[:3]], seed=3))


def test_parallel_batches_equal_sequential(setup):
    model_dir, articles, _ = setup
    a, sa = labels.infer_articles(articles, model_dir, workers=1, lemmatizer="none", progress=False)
    b, sb = labels.infer_articles(articles, model_dir, workers=2, batch_size=2, lemmatizer="none", progress=False)
    assert sa == sb and np.array_equal(a, b, equal_nan=True)


def test_assemble_shares_rows_and_excludes_with_counts(setup):
    model_dir, articles, images = setup
    vecs, status = labels.infer_articles(articles, model_dir, lemmatizer="none", progress=False)
    result = labels.assemble(images, articles, vecs, status)
    # articles 0,1,2 have 1,2,3 images; 3,4,5 have 1,2,3 images and are excluded.
    assert result.labels.shape == (6, 40) and len(result.images) == len(result.articles) == 6
    assert result.counts["images_in"] == 12 and result.counts["images_labelled"] == 6
    assert result.counts["excluded_articles"] == {**NO_EXCLUSION, "unreadable": 1, "empty_after_preprocessing": 1,
                                                  "no_dictionary_words": 1}
    assert result.counts["excluded_images"] == {**NO_EXCLUSION, "unreadable": 3, "empty_after_preprocessing": 1,
                                                "no_dictionary_words": 2}
    for art in set(result.articles):
        rows = result.labels[[i for i, a in enumerate(result.articles) if a == art]]
        assert (rows == rows[0]).all()
    assert result.articles == [str(p.article_path) for p in images if p.article_path in articles[:3]]
    js = labels.interchange_json(result, Path(images[0].image_path).parent.parent)
    assert len(js) == 6 and all(len(v) == 40 and k.startswith("img/") for k, v in js.items())


def test_check_labels_accepts_rows_summing_to_at_most_one():
    good = np.full((2, 4), 0.25, dtype=np.float32)
    labels.check_labels(good)
    labels.check_labels(np.array([[0.6, 0.392, 0, 0], [0.99, 0, 0, 0]], dtype=np.float32))  # the release's cut-off
    for bad in (good.astype(np.float64), np.where(np.eye(2, 4) > 0, np.nan, good).astype(np.float32),
                good * 2, np.array([[1.5, -0.5, 0, 0]], dtype=np.float32), np.zeros((1, 4), np.float32),
                np.array([[0.5, 0.50002, 0, 0]], dtype=np.float32)):
        with pytest.raises(DataError):
            labels.check_labels(bad)


def test_all_topics_under_the_cutoff_is_an_exclusion(setup):
    model_dir, articles, _ = setup
    # A model whose cut-off no topic can reach (more than 1/K): the release would write an all-zero row.
    import shutil
    high = model_dir.parent / "high_cutoff"
    shutil.copytree(model_dir, high)
    lda = LdaModel.load(str(high / "ldamodel40.lda"))
    lda.minimum_probability = 1.01
    save_lda(lda, high / "ldamodel40.lda")
    vecs, status = labels.infer_articles(articles[:3], high, lemmatizer="none", progress=False)
    assert status == ["all_topics_below_cutoff"] * 3 and np.isnan(vecs).all()


def test_everything_excluded_is_an_error(setup):
    model_dir, articles, images = setup
    vecs, status = labels.infer_articles(articles[3:], model_dir, lemmatizer="none", progress=False)
    with pytest.raises(DataError, match="every article was excluded"):
        labels.assemble([p for p in images if p.article_path in articles[3:]], articles[3:], vecs, status)


def test_vector_targets_zero_rows_excluded_and_assembled_with_their_checker(tmp_path):
    """Word-vector targets: L2 rows sum past 1, so the topic-row check refuses them and the transform's passes."""
    from texttopicnet.text.spaces.targets import check_targets

    articles = [tmp_path / f"{i}.txt" for i in range(4)]
    images = [Pair(tmp_path / f"{i}_{j}.jpg", a, f"{i}_{j}") for i, a in enumerate(articles) for j in range(i + 1)]
    vecs = np.array([[0.5, -1.0, 2.0], [3.0, 4.0, 0.0], [-2.0, -2.0, -2.0], [np.nan] * 3], dtype=np.float32)
    status = [None, None, None, "no_dictionary_words"]
    rows, status2 = labels.vector_targets(vecs, status, "minshift_l2")
    # Written out: [0.5, -1, 2] - (-1) = [1.5, 0, 3] / sqrt(11.25); [3, 4, 0] / 5; a constant row shifts to 0.
    np.testing.assert_allclose(rows[0], np.array([1.5, 0, 3]) / np.sqrt(11.25), atol=1e-6)
    np.testing.assert_allclose(rows[1], [0.6, 0.8, 0.0], atol=1e-6)
    assert status2 == [None, None, "zero_target", "no_dictionary_words"] and np.isnan(rows[2:]).all()
    with pytest.raises(DataError, match="sum to more than 1"):
        labels.assemble(images, articles, rows, status2)
    result = labels.assemble(images, articles, rows, status2, check=lambda y: check_targets(y, "minshift_l2"))
    assert result.labels.shape == (3, 3) and result.images == [str(p.image_path) for p in images[:3]]
    assert result.counts["excluded_articles"] == {**NO_EXCLUSION, "zero_target": 1, "no_dictionary_words": 1}
    assert result.counts["excluded_images"] == {**NO_EXCLUSION, "zero_target": 3, "no_dictionary_words": 4}
    mx, _ = labels.vector_targets(vecs, status, "minshift_max")
    np.testing.assert_allclose(mx[0], [0.5, 0.0, 1.0], atol=1e-6)  # (v - min) / max: [1.5, 0, 3] / 3

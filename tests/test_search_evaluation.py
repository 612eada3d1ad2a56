"""The MIRFlickr-25K and InstaCities1M text->image protocols (texttopicnet.search.evaluation) against
plain re-implementations of LearnFromWebData's loops, on a small index with labels and tags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import test_search_helpers as h
from scipy.stats import entropy

from texttopicnet.core.errors import UserError
from texttopicnet.search import evaluation as ev

LABELS = ["sea", "tree", "tower", "whale_watching"]  # "watching" is not a known word: left out


def lda_word(space, word):
    tm = space.topic_model
    wid = tm.dictionary.token2id.get(word)
    if wid is None:
        return None
    vals = dict(tm.lda.get_term_topics(wid, minimum_probability=0))
    p = [vals.get(t, 0.0) for t in range(tm.num_topics)]
    return [x / sum(p) for x in p]


def make_index(n=40, seed=0):
    """Rows (distributions), labels.jsonl rows with categories (some strict *_r1) and tags."""
    rng = np.random.default_rng(seed)
    vocab = sorted({w for ws in h.SUBJECTS.values() for w in ws})
    rows = rng.dirichlet(np.full(3, 0.5), size=n)
    labels = []
    for i in range(n):
        cats = list(rng.choice(LABELS, size=rng.integers(0, 3), replace=False))
        if cats and rng.random() < 0.3:
            cats.append(cats[0] + "_r1")
        tags = list(rng.choice(vocab, size=rng.integers(0, 3), replace=False)) + (["qzxv"] if i % 7 == 0 else [])
        labels.append({"categories": cats, "tags": tags})
    return rows, labels


def plain_ap(dist, relevant):
    """LearnFromWebData: walk the ranking, precision at every relevant image, mean of those."""
    order = sorted(range(len(dist)), key=lambda j: (dist[j], j))
    correct, precisions = 0, []
    for rank, j in enumerate(order, 1):
        if relevant[j]:
            correct += 1
            precisions.append(correct / rank)
    return sum(precisions) / len(precisions) if precisions else 0.0


def plain_query(space, words):
    vecs = [v for v in (lda_word(space, w) for w in words) if v is not None]
    if not vecs:
        return None
    return [sum(v[t] for v in vecs) / len(vecs) for t in range(len(vecs[0]))]


def plain_l2(q, x):
    s = sum(x)
    return math.sqrt(sum((a / s - b) ** 2 for a, b in zip(x, q)))


def plain_kl(q, x):
    x = np.maximum(np.asarray(x, dtype=np.float64), 1e-10)
    return float(entropy(q, x / x.sum()))


@pytest.mark.parametrize("score,relevance", [("l2", "release"), ("l2", "labels"), ("space", "release")])
def test_mirflickr_per_image_matches_plain_loops(score, relevance):
    space = h.lda_space()
    rows, labels = make_index()
    got = ev.mirflickr(rows, labels, space, "kl", score=score, relevance=relevance)
    aps = []
    for lab in labels:
        cats = {c[:-3] if c.endswith("_r1") else c for c in lab["categories"]}
        if not cats:
            continue
        words = []
        for w in list(lab["tags"]) + sorted(cats):
            words += ("plant" if w == "plant_life" else w).split("_")
        q = plain_query(space, words)
        assert q is not None  # every query here has a known word
        rel_words = cats | (set(lab["tags"]) if relevance == "release" else set())
        db_cats = [{c[:-3] if c.endswith("_r1") else c for c in other["categories"]} for other in labels]
        dist = [plain_l2(q, x) if score == "l2" else plain_kl(q, x) for x in rows]
        aps.append(plain_ap(dist, [bool(c & rel_words) for c in db_cats]))
    assert got["n_queries"] == len(aps) and got["skipped_queries"] == 0
    np.testing.assert_allclose(got["ap"], aps, atol=1e-9)
    assert got["map"] == pytest.approx(float(np.mean(aps)))
    assert 0 < got["chance_map"] < got["map"] + 1


def test_mirflickr_per_label_matches_plain_loops():
    space = h.lda_space()
    rows, labels = make_index(seed=1)
    got = ev.mirflickr(rows, labels, space, "kl", per="label")
    db_cats = [{c[:-3] if c.endswith("_r1") else c for c in lab["categories"]} for lab in labels]
    for lab in sorted(set().union(*db_cats)):
        q = plain_query(space, lab.split("_"))
        dist = [plain_l2(q, x) for x in rows]
        assert got["per_label"][lab] == pytest.approx(plain_ap(dist, [lab in c for c in db_cats]))


def test_queries_without_known_words_are_skipped_and_counted():
    space = h.lda_space()
    rows, labels = make_index(n=6)
    labels = [{"categories": ["qqqq"], "tags": []}] + [{"categories": ["sea"], "tags": ["zzzz"]}] * 5
    got = ev.mirflickr(rows, labels, space, "kl")
    assert got["skipped_queries"] == 1 and got["n_queries"] == 5
    with pytest.raises(UserError):
        ev.mirflickr(rows, [{"categories": [], "tags": []}] * 6, space, "kl")


@pytest.mark.parametrize("score", ["l2", "space"])
def test_instacities_precision_at_k_matches_plain_loop(score):
    space = h.lda_space()
    rng = np.random.default_rng(2)
    cities = ["sea", "tree", "tower"]  # city names the little space knows
    rows = rng.dirichlet(np.ones(3), size=50)
    labels = [{"categories": [cities[i % 3]], "tags": []} for i in range(50)]
    got = ev.instacities(rows, labels, space, "kl", cities=cities + ["atlantis"], k=10, score=score)
    assert got["skipped_cities"] == ["atlantis"] and got["per_city"]["atlantis"] is None
    for city in cities:
        q = plain_query(space, [city])
        dist = [plain_l2(q, x) if score == "l2" else plain_kl(q, x) for x in rows]
        top = sorted(range(50), key=lambda j: (dist[j], j))[:10]
        assert got["per_city"][city] == pytest.approx(sum(labels[j]["categories"][0] == city for j in top) / 10)


def test_vector_space_query_is_the_mean_word_vector_target():
    space = h.word2vec_space()
    v, unknown = ev.mean_query_vector(space, ["sea", "tree", "qqqq"])
    raw = (space.kv["sea"].astype(np.float64) + space.kv["tree"].astype(np.float64)) / 2
    raw = raw - raw.min() if raw.min() < 0 else raw
    np.testing.assert_allclose(v, raw / np.linalg.norm(raw), atol=1e-6)
    assert unknown == ["qqqq"]


def test_query_words():
    assert ev.query_words(["plant_life", "sky", "new_york"]) == ["plant", "sky", "new", "york"]
    assert ev.label_set(["sky", "sky_r1", "sea_r1"]) == {"sky", "sea"}

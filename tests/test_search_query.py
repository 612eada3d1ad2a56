"""The query language (texttopicnet.search.query) against its documented grammar, and query vectors
against a plain re-implementation of the documented combination rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import test_search_helpers as h

import texttopicnet
from texttopicnet.search import query as Q
from texttopicnet.search.query import MAX_QUERY_CHARS, MAX_TERMS, QueryError, format_terms, parse_terms

W, IMG = "word", "image"


def test_top_level_api():
    """External checks call these names (texttopicnet/__init__.py exports them lazily)."""
    assert texttopicnet.parse_query is Q.parse_query and texttopicnet.query_vector is Q.query_vector
    assert texttopicnet.parse_query("2*park-[img:17]") == [(2.0, "word", "park"), (-1.0, "image", "17")]

PARSES = [
    ("2*park-[img:17]", [(2.0, W, "park"), (-1.0, IMG, "17")]),
    ("bike+park", [(1.0, W, "bike"), (1.0, W, "park")]),
    ("beach-sunrise", [(1.0, W, "beach"), (-1.0, W, "sunrise")]),
    ("beach - sunrise + 3 * sea", [(1.0, W, "beach"), (-1.0, W, "sunrise"), (3.0, W, "sea")]),
    ("red car", [(1.0, W, "red"), (1.0, W, "car")]),                       # side by side = added
    ("-park", [(-1.0, W, "park")]),
    ("+park", [(1.0, W, "park")]),
    ("park+park", [(2.0, W, "park")]),                                     # repetition is a weight
    ("park park -0.5*park", [(1.5, W, "park")]),
    ("a + b - a", [(1.0, W, "b")]),                                        # cancelled terms dropped
    ("[img:IMG_1]+[img:IMG_10]", [(1.0, IMG, "IMG_1"), (1.0, IMG, "IMG_10")]),  # the original demo's broken example
    ("[img: 17 ]", [(1.0, IMG, "17")]),
    ("[img:a/b c.jpg] - 2*x", [(1.0, IMG, "a/b c.jpg"), (-2.0, W, "x")]),
    (".5*sea", [(0.5, W, "sea")]),
    ("2.*sea", [(2.0, W, "sea")]),
    ("2017 2*sea", [(1.0, W, "2017"), (2.0, W, "sea")]),                   # a number without * is a word
    ("  \t ocean \n+\tmusic  ", [(1.0, W, "ocean"), (1.0, W, "music")]),
    ("café − 東京", [(1.0, W, "café"), (-1.0, W, "東京")]),                 # U+2212 minus
    ("ｏｃｅａｎ＋ｍｕｓｉｃ", [(1.0, W, "ocean"), (1.0, W, "music")]),      # full width, NFKC
    ("park\u3000tree", [(1.0, W, "park"), (1.0, W, "tree")]),              # ideographic space
    ("100*a", [(100.0, W, "a")]),
    ("sea [img:3] -[img:3]", [(1.0, W, "sea")]),
    ("Park + park", [(1.0, W, "Park"), (1.0, W, "park")]),                 # kept as typed; the space normalises
]


@pytest.mark.parametrize("text,expected", PARSES)
def test_parse_query(text, expected):
    assert Q.parse_query(text) == expected
    # the canonical text parses back to the same terms
    assert Q.parse_query(format_terms(expected)) == expected


BAD = [
    ("", 400, "empty"), ("   ", 400, "empty"), ("a +", 400, "syntax"), ("+", 400, "syntax"),
    ("a + - b", 400, "syntax"), ("--a", 400, "syntax"), ("a*2", 400, "syntax"), ("*a", 400, "syntax"),
    ("0*a", 400, "syntax"), ("2*", 400, "syntax"), ("101*a", 400, "syntax"), ("[img:", 400, "syntax"),
    ("[img:]", 400, "syntax"), ("[foo]", 400, "syntax"), ("a]", 400, "syntax"), ("a\x00b", 400, "syntax"),
    ("park - park", 400, "cancelled"), ("x" * (MAX_QUERY_CHARS + 1), 413, "too_long"),
    (" + ".join(f"w{i}" for i in range(MAX_TERMS + 1)), 413, "too_many_terms"),
    (" ".join(["a"] * 10_000), 413, "too_long"),
    ("[img:" + "9" * 201 + "]", 400, "syntax"),
]


@pytest.mark.parametrize("text,status,code", BAD)
def test_bad_queries(text, status, code):
    with pytest.raises(QueryError) as err:
        Q.parse_query(text)
    assert (err.value.status, err.value.code) == (status, code)
    assert str(err.value)


def test_limits_count_terms_before_merging():
    ok = " + ".join(["sea"] * MAX_TERMS)
    assert Q.parse_query(ok) == [(float(MAX_TERMS), W, "sea")]
    assert len(parse_terms(ok)) == MAX_TERMS
    with pytest.raises(QueryError):
        Q.parse_query(ok + " + sea")


def test_syntax_error_names_position():
    with pytest.raises(QueryError) as err:
        Q.parse_query("sea + + tree")
    assert err.value.position == 6 and "character 7" in str(err.value)


# --- combination: a plain re-implementation of the module docstring's rules -------------------

def plain_distribution(weights, dists, smoothing=0.01):
    k = len(dists[0])
    pos = sum(w for w in weights if w > 0) or sum(abs(w) for w in weights)
    log_q = [0.0] * k
    for w, p in zip(weights, dists):
        s = sum(p)
        for j in range(k):
            log_q[j] += (w / pos) * math.log((1 - smoothing) * p[j] / s + smoothing / k)
    m = max(log_q)
    q = [math.exp(x - m) for x in log_q]
    return [x / sum(q) for x in q]


def plain_vector(weights, vecs):
    q = [0.0] * len(vecs[0])
    for w, v in zip(weights, vecs):
        n = math.sqrt(sum(x * x for x in v))
        for j, x in enumerate(v):
            q[j] += w * x / n
    n = math.sqrt(sum(x * x for x in q))
    return [x / n for x in q]


def lda_word(space, word):
    """p(topic | word) from gensim's own term-topic values (uniform prior), as LearnFromWebData read them."""
    tm = space.topic_model
    vals = dict(tm.lda.get_term_topics(tm.dictionary.token2id[word], minimum_probability=0))
    p = [vals.get(t, 0.0) for t in range(tm.num_topics)]
    return [x / sum(p) for x in p]


def test_query_vector_lda_matches_plain_rules():
    space = h.lda_space()
    img = np.array([0.7, 0.2, 0.1])
    got = Q.query_vector(space, "2*sea - tree + [img:5]", images={"5": img})
    ref = plain_distribution([2.0, -1.0, 1.0], [lda_word(space, "sea"), lda_word(space, "tree"), list(img)])
    assert got.dtype == np.float32 and got.shape == (space.dim,)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert abs(float(got.sum()) - 1) < 1e-5 and (got > 0).all()


def test_lda_single_word_is_its_topic_distribution_smoothed():
    space = h.lda_space()
    p = np.array(lda_word(space, "whale"))
    np.testing.assert_allclose(Q.query_vector(space, "whale"), 0.99 * p + 0.01 / space.dim, atol=1e-6)
    # weights alone do not change a one-term distribution query
    np.testing.assert_allclose(Q.query_vector(space, "3*whale"), Q.query_vector(space, "whale"),
                               atol=1e-7)


def test_lda_subtraction_moves_mass_away():
    space = h.lda_space()
    sea, tree = np.array(lda_word(space, "sea")), np.array(lda_word(space, "tree"))
    q = Q.query_vector(space, "sea - tree")
    top_tree = int(np.argmax(tree))
    assert q[top_tree] < sea[top_tree]
    only_negative = Q.query_vector(space, "-tree")
    assert only_negative[top_tree] == only_negative.min()


def test_query_vector_word2vec_matches_plain_rules():
    space = h.word2vec_space()
    kv = space.kv
    raw = {w: kv[w].astype(np.float64) for w in ("sea", "tree", "tower")}

    def target(v):  # minshift_l2, the TextTopicNet fork's rule, written out
        lo = min(v)
        v = [x - lo for x in v] if lo < 0 else list(v)
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    img = np.abs(np.random.default_rng(1).normal(size=space.dim))
    got = Q.query_vector(space, "sea + 0.5*tower - tree - [img:a]", images={"a": img})
    ref = plain_vector([1.0, 0.5, -1.0, -1.0],
                       [target(raw["sea"]), target(raw["tower"]), target(raw["tree"]), list(img)])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert abs(float(np.linalg.norm(got)) - 1) < 1e-5


def test_unknown_words_name_all_and_suggest():
    from texttopicnet.text.spaces.base import UnknownWordsError

    for space in (h.lda_space(), h.word2vec_space()):
        with pytest.raises(QueryError) as err:
            Q.query_vector(space, "seaa + tree - towr + zzzzqx")
        e = err.value
        assert isinstance(e, UnknownWordsError) and isinstance(e, KeyError)
        assert e.status == 422 and e.code == "unknown_words"
        assert e.words == ["seaa", "towr", "zzzzqx"]
        assert "sea" in e.suggestions["seaa"] and "tower" in e.suggestions["towr"]
        assert e.suggestions["zzzzqx"] == []
        assert "seaa" in str(e) and "sea" in str(e)


def test_unknown_image_id_is_404_and_nothing_is_guessed():
    with pytest.raises(QueryError) as err:
        Q.query_vector(h.lda_space(), "sea + [img:404]", images={"1": np.ones(3) / 3})
    assert err.value.status == 404 and err.value.details["ids"] == ["404"]


def test_cancelling_vector_terms_is_an_error():
    space = h.word2vec_space()
    v = np.abs(np.random.default_rng(0).normal(size=space.dim))
    with pytest.raises(QueryError) as err:
        Q.query_vector(space, "[img:a] - [img:b]", images={"a": v, "b": 2 * v})
    assert err.value.code == "cancelled"

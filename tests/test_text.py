"""Preprocessing (texttopicnet.text.preprocess) against the release's rules written plainly here.

The reference below (:func:`release_tokens`) is the release's preprocessing re-implemented
step by step from its published facts (REFERENCE.md, "Stage 2"): gensim's filter_wiki, the
release's ``filter_more`` pattern (copied as a fact, flags included) with the matches
REMOVED, lower-case, stdlib ``\\w+`` tokens, the 174-word stop list of stop-words 2018.7.23,
NLTK's WordNetLemmatizer (noun POS), ``[^a-z]`` stripped, tokens longer than 2 kept.
Other test modules import these helpers.
"""

from __future__ import annotations

import hashlib
import re
import warnings

import pytest
from gensim.corpora.wikicorpus import filter_wiki

from texttopicnet.core.errors import UserError
from texttopicnet.text import preprocess as text

# The release's filter_more (experiments/preprocess_text.py), a fact: pattern and flags.
RELEASE_FILTER_MORE = re.compile(
    '(({\\|)|(\\|-)|(\\|})|(\\|)|(\\!))(\\s*\\w+=((\\".*?\\")|([^ \\t\\n\\r\\f\\v\\|]+))\\s*)+'
    '(({\\|)|(\\|-)|(\\|})|(\\|))?', re.UNICODE | re.DOTALL | re.MULTILINE)
# sha256 of stop_words/stop-words/english.txt in the stop-words 2018.7.23 sdist on PyPI (174 lines).
STOP_WORDS_2018_SHA256 = "d887ee2f4614b4882fdcaee84e74a5b43255d3e4641bd22279d2894d9705d33f"

TRICKY = """'''Paris''' is the capital of [[France|the French republic]].<ref>{{cite web|url=http://x.org|title=Footnote}}</ref>
{{Infobox settlement|name=Paris|population_total=2234105}}
It lies on the [[Seine]] river, [http://www.paris.fr official website].
<!-- hidden comment about tomatoes -->
{| class="wikitable sortable" style="width:100%; border:1px"
|-
! scope="col" | Arrondissement
! scope="col" align="center" | Population
|-
| align="left" style="background:#eee" | Louvre || 17,000
|}
The musée du Louvre holds 380,000 objects; Ångström Wrote 2 MP3s, Józef's geese dates.
[[Category:Capitals in Europe]]
"""


def release_stop_words() -> list[str]:
    """The 174-word list, from the file the package records, verified against the 2018.7.23 sdist."""
    data = text.RELEASE_STOP_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == STOP_WORDS_2018_SHA256
    return [line.strip() for line in data.decode("utf-8").splitlines()]


def wordnet_lemmatizer():
    """NLTK's WordNetLemmatizer().lemmatize, or a skip when WordNet's data is not installed here."""
    from nltk.stem import WordNetLemmatizer

    lemmatize = WordNetLemmatizer().lemmatize
    try:
        lemmatize("dogs")
    except LookupError:
        pytest.skip("NLTK WordNet data not installed (python -m texttopicnet.text.wordnet --install)")
    return lemmatize


def release_tokens(raw: str, lemmatize=None, stop=None) -> list[str]:
    """The release's preprocessing, one plain step after another (no caching, no sharing)."""
    lemmatize = lemmatize or wordnet_lemmatizer()
    stop = stop if stop is not None else release_stop_words()
    t = filter_wiki(raw)
    t = re.sub(RELEASE_FILTER_MORE, "", t)
    t = t.lower()
    tokens = re.findall(r"\w+", t)
    tokens = [w for w in tokens if w not in stop]
    tokens = [lemmatize(w) for w in tokens]
    tokens = [re.sub(r"[^a-z]", "", w) for w in tokens]
    return [w for w in tokens if len(w) > 2]


def tokens_none(raw):
    return text.preprocess(raw, lemmatizer="none")


def real_texts(shared_data, n):
    from texttopicnet.data.readers.wikipedia import read_wiki_text

    files = sorted((shared_data / "wikipedia" / "texts").glob("*.xml"))
    assert len(files) == 2866
    step = max(1, len(files) // n)
    return [read_wiki_text(f) for f in files[::step][:n]]


# --- the release's rules ----------------------------------------------------------------

def test_release_stop_list_is_the_174_word_list():
    words = release_stop_words()
    assert len(words) == 174 == len(set(words))
    assert text.stop_words_en() == frozenset(words) == text.stop_words_en("release")
    rec = text.stop_words_record()
    assert rec["stop_words"] == "release" and rec["stop_words_count"] == 174
    # "website", "also", "new" are stop words only in the long modern list.
    assert not {"website", "also", "new"} & text.stop_words_en()


def test_package_stop_list_is_the_installed_one():
    stop_words = pytest.importorskip("stop_words")
    assert text.stop_words_en("package") == frozenset(stop_words.get_stop_words("en"))
    assert text.stop_words_record("package")["stop_words_count"] == len(set(stop_words.get_stop_words("en")))
    with pytest.raises(UserError, match="unknown stop-word list"):
        text.stop_words_en("french")


def test_table_regex_matches_exactly_what_the_release_matches(shared_data):
    cases = [
        TRICKY, filter_wiki(TRICKY),
        '{| class="wikitable" border="1"\n|-\n! Year !! Item !! Note\n| 1999 || x\n|}',
        '| style="a\nb" | multi-line quoted value', "|| a=b || c=d ||", "!! k=v !", "|- k = v |",
        "| data-x=1 |", "{|border=1 cellpadding=2|}", "| a='single quoted' |", '| a="open quote\n| b=2',
        "x|y=z|w", "no table here = at all | really",
    ]
    cases += real_texts(shared_data, 40)
    # A seeded fuzz over table-like pieces: the spans of every match must agree.
    import random

    rng = random.Random(0)
    pieces = ["{|", "|-", "|}", "|", "||", "!", "!!", " ", "\n", "\t", "a=", "k-1=", "style", "=", '"x y"', '"',
              "'v'", "val", "é=ü", "b=\"q\nr\"", "1", "|x=1"]
    cases += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 25))) for _ in range(3000)]
    for case in cases:
        want = [m.span() for m in RELEASE_FILTER_MORE.finditer(case)]
        assert [m.span() for m in text.TABLE_ATTRIBUTES.finditer(case)] == want, case
        assert text.TABLE_ATTRIBUTES.sub(text.TABLE_REPLACEMENT, case) == re.sub(RELEASE_FILTER_MORE, "", case)


def test_table_matches_are_removed_not_spaced():
    # The release replaces by "": text on both sides of a removed run joins up.
    assert text.clean_markup('word| class=x |next') == "wordnext"
    assert tokens_none('Alpha| class=x |Beta') == ["alphabeta"]


def test_wordnet_is_the_default_and_behaves_as_the_release():
    lemmatize = wordnet_lemmatizer()
    assert text.DEFAULT_LEMMATIZER == "wordnet"
    assert text.resolve_lemmatizer() == "wordnet"
    # Noun POS: plural nouns lose their -s, verbs and adjectives stay (simplemma would
    # give "come", "early"); "was" becomes "wa", the release's real behaviour.
    assert [lemmatize(w) for w in ("dates", "was", "came", "earlier")] == ["date", "wa", "came", "earlier"]
    assert text.make_lemmatize("wordnet")("was") == "wa"
    assert text.preprocess("Dates came earlier, geese") == ["date", "came", "earlier", "goose"]
    # Stop words go before lemmatising: "dates" is not a stop word, its lemma is kept.
    assert release_tokens("Dates came earlier, geese") == ["date", "came", "earlier", "goose"]


def test_tricky_markup_equals_the_release_rule():
    assert text.preprocess(TRICKY) == release_tokens(TRICKY)


def test_real_wikipedia_texts_equal_the_release_rule(shared_data):
    lemmatize, stop = wordnet_lemmatizer(), release_stop_words()
    total = 0
    for raw in real_texts(shared_data, 80):
        ours = text.preprocess(raw)
        assert ours == release_tokens(raw, lemmatize, stop)
        total += len(ours)
    assert total > 15_000  # real articles are long: a broken tokenizer would give far fewer


def test_long_stop_list_option_changes_tokens(shared_data):
    pytest.importorskip("stop_words")
    lemmatize = wordnet_lemmatizer()
    raw = real_texts(shared_data, 1)[0]
    long_stop = sorted(text.stop_words_en("package"))
    assert text.preprocess(raw, stop_words="package") == release_tokens(raw, lemmatize, long_stop)


# --- lemmatiser choice ------------------------------------------------------------------

def test_wordnet_missing_fails_loudly_and_auto_falls_back_with_a_note(monkeypatch):
    monkeypatch.setattr(text, "wordnet_available", lambda: False)
    with pytest.raises(UserError, match="texttopicnet.text.wordnet --install"):
        text.resolve_lemmatizer("wordnet")
    with pytest.raises(UserError):
        text.Preprocessor()  # the default is wordnet: no silent fallback
    with pytest.warns(UserWarning, match="fell back to simplemma"):
        name, note = text.resolve_lemmatizer_noted("auto")
    assert name == "simplemma" and "fell back" in note


def test_resolve_lemmatizer():
    assert text.resolve_lemmatizer("none") == "none"
    with pytest.raises(UserError):
        text.resolve_lemmatizer("porter")
    if text.wordnet_available():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning when WordNet is there
            assert text.resolve_lemmatizer_noted("auto") == ("wordnet", None)


def test_simplemma_lemmatises_and_lowercases():
    pytest.importorskip("simplemma")
    toks = text.preprocess("The geese were running across New Zealand's churches.", lemmatizer="simplemma")
    assert "goose" in toks and "church" in toks and "zealand" in toks
    assert "ealand" not in toks  # simplemma's capitalised lemma is lower-cased before the [a-z] strip
    assert text.preprocess("It came earlier", lemmatizer="simplemma") == ["come", "early"]


# --- plumbing: edge cases, cache, parallel ----------------------------------------------

def test_order_of_steps_and_character_stripping():
    # 'mp3s' -> strip digits gives 'mps' (kept, len 3); '2' is dropped; 'the' is a stop word.
    assert tokens_none("the 2 MP3s") == ["mps"]
    # Stripping happens after lemmatising, so "józef's" splits at the apostrophe first.
    assert tokens_none("Józef's") == ["jzef"]
    toks = tokens_none(TRICKY)
    assert "muse" in toks and "ngstrm" in toks and "jzef" in toks
    assert all(re.fullmatch(r"[a-z]{3,}", t) for t in toks)


@pytest.mark.parametrize("raw", ["", "   \n\t", "12 345 1999", "the and of it is", "{{template only}}",
                                 "<!-- x -->", "a b c 1 2"])
def test_empty_after_preprocessing(raw):
    assert text.preprocess(raw, lemmatizer="none") == []


def test_replacement_characters_from_bad_bytes_are_harmless():
    raw = b"Caf\xe9 culture in Vienna \xff\xfe coffeehouses".decode("utf-8", errors="replace")
    assert tokens_none(raw) == ["caf", "culture", "vienna", "coffeehouses"]


def test_cache_gives_identical_results_to_uncached_steps():
    prep = text.Preprocessor("none")
    first = prep(TRICKY)
    assert prep._cache  # forms were cached
    assert prep(TRICKY) == first
    cleaned = text.clean_markup(TRICKY)
    manual = [prep.token(t) for t in re.findall(r"\w+", cleaned)]
    assert first == [t for t in manual if t is not None]


def test_preprocess_many_parallel_equals_sequential(shared_data):
    texts = real_texts(shared_data, 24)
    seq = list(text.preprocess_many(texts, lemmatizer="none", workers=1))
    par = list(text.preprocess_many(texts, lemmatizer="none", workers=2, chunksize=3))
    assert [i for i, _, _ in par] == list(range(len(texts)))
    assert seq == par
    assert all(err is None and toks for _, toks, err in par)
    assert [toks for _, toks, _ in seq] == [release_tokens(t, lambda w: w) for t in texts]


def test_preprocess_many_reports_unreadable_files(tmp_path):
    from texttopicnet.data.readers.imageclef import read_article

    good = tmp_path / "good.txt"
    good.write_bytes(b"Volcanic islands \xff erupted violently")
    paths = [str(good), str(tmp_path / "missing.txt"), str(tmp_path)]
    out = list(text.preprocess_many(paths, lemmatizer="none", workers=2, reader=read_article))
    assert out[0] == (0, ["volcanic", "islands", "erupted", "violently"], None)
    for i in (1, 2):
        assert out[i][1] is None and out[i][2]
    assert "FileNotFoundError" in out[1][2]


def test_combining_marks_split_tokens_as_stdlib_re_does():
    # "İ".lower() is "i" + U+0307 (combining dot): stdlib \w (and the release's NLTK on Python 2)
    # splits there; the leading "i" is then too short. NLTK >= 3.10's `regex` engine would not split.
    assert tokens_none("İstanbul İzmir") == ["stanbul", "zmir"]
    assert release_tokens("İstanbul İzmir", lambda w: w) == ["stanbul", "zmir"]

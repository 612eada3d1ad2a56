"""ImageCLEF Wikipedia reader: the demo collection, hand-made layouts, lenient article reading, errors."""

from __future__ import annotations

import collections
import json
import xml.etree.ElementTree as ET

import pytest

from texttopicnet.core import cli
from texttopicnet.core.errors import DataError
from texttopicnet.data.readers import imageclef


@pytest.fixture(scope="module")
def demo(demo_corpus):
    root = imageclef.find_collection_root(demo_corpus)
    summary = json.loads((demo_corpus / "synthetic.json").read_text())
    return root, imageclef.list_imageclef(root), summary


def test_lists_every_image_once_sorted(demo):
    root, items, summary = demo
    on_disk = sorted(str(p) for p in (root / "images").rglob("*") if p.is_file())
    assert [str(it.image_path) for it in items] == on_disk
    assert len(items) == summary["imageclef"]["images"]
    assert all(it.image_path.is_absolute() and it.image_path.stem == it.metadata_id for it in items)


def test_problems_match_the_planted_edge_cases(demo, demo_corpus):
    root, items, summary = demo
    by_path = {str(it.image_path.relative_to(demo_corpus)): it for it in items}
    edge = summary["imageclef"]["edge_cases"]
    counts = collections.Counter(it.problem for it in items)
    assert counts["no_metadata"] == len(edge["no_metadata"]) >= 1
    assert counts["bad_metadata"] == len(edge["bad_metadata"]) >= 1
    assert counts["no_english_article"] == len(edge["no_english"]) >= 1
    for rel in edge["no_metadata"]:
        assert by_path[rel].metadata_path is None and by_path[rel].article_path is None
    for rel in edge["bad_metadata"]:
        with pytest.raises(ET.ParseError):
            ET.parse(by_path[rel].metadata_path)
    for rel in edge["no_english"]:
        langs = [c.get(imageclef.XML_LANG) for c in ET.parse(by_path[rel].metadata_path).getroot()
                 if c.tag == "text"]
        assert langs and "en" not in langs
    missing = [it for it in items if it.problem is None and not it.article_path.is_file()]
    assert [str(it.image_path.relative_to(demo_corpus)) for it in missing] == edge["missing_article"]
    # The release's rule drops the .png files by name (the PNG named .jpg is read).
    assert sorted(str(it.image_path.relative_to(demo_corpus)) for it in items if it.problem == "extension") == \
        sorted(edge["png"])
    # Everything else resolves to an article on disk.
    assert counts[None] == len(items) - counts["no_metadata"] - counts["bad_metadata"] - counts["no_english_article"] \
        - counts["extension"]


def test_articles_are_read_with_markup_and_leniently(demo, demo_corpus):
    root, items, summary = demo
    edge = summary["imageclef"]["edge_cases"]
    latin = {str(p) for p in (demo_corpus / r for r in edge["non_utf8_article"])}
    texts = {}
    for it in items:
        if it.problem is None and it.article_path.is_file() and it.article_path not in texts:
            texts[it.article_path] = imageclef.read_article(it.article_path)
    assert len(texts) == summary["imageclef"]["articles"]
    bad_utf8 = [p for p in texts if "\ufffd" in texts[p]]
    assert len(bad_utf8) == 1
    assert any(str(it.image_path) in latin and it.article_path == bad_utf8[0] for it in items)
    with pytest.raises(UnicodeDecodeError):
        bad_utf8[0].read_bytes().decode("utf-8")
    wrapped = [p for p in texts if p.suffix == ".xml"]
    assert wrapped and all("<article" not in texts[p] and "</text>" not in texts[p] for p in wrapped)
    marked = [t for t in texts.values() if "[[" in t and "{{" in t and "==" in t]
    assert len(marked) >= len(texts) - 2  # every regular article carries wiki markup


def _tiny_collection(tmp_path, meta_by_id: dict[str, str], images=("1/5.jpg",)):
    root = tmp_path / "data" / "ImageCLEF_Wikipedia"
    for rel in images:
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / rel).write_bytes(b"\xff\xd8\xff not decoded by the reader")
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    for rel, xml in meta_by_id.items():
        (root / "metadata" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "metadata" / rel).write_text(xml, encoding="utf-8")
    return root


def _meta(article: str, lang: str = "en") -> str:
    return (f'<?xml version="1.0"?><image id="5"><text xml:lang="{lang}"><caption article="{article}">c</caption>'
            f'</text><text xml:lang="de"><caption article="text/de/1/5">d</caption></text></image>')


def test_streamlined_spelling_and_flat_folders(tmp_path):
    root = _tiny_collection(tmp_path, {"1/5.xml": _meta("text/en/1/77"), "6.xml": _meta("text/en/1/78.xml")},
                            images=("1/5.jpg", "6.jpg", "1/Thumbs.db"))
    (root / "_text" / "en" / "1").mkdir(parents=True)
    (root / "_text" / "en" / "1" / "77.xml").write_text("<article><text>Fish &amp; chips</text></article>")
    assert imageclef.find_collection_root(tmp_path / "data") == root.absolute()
    items = imageclef.list_imageclef(root)
    assert [(it.metadata_id, it.problem) for it in items] == [("5", None), ("Thumbs", "extension"), ("6", None)]
    first, _, flat = items
    assert first.problem is None and first.article_path == (root / "_text/en/1/77.xml").absolute()
    assert imageclef.read_article(first.article_path) == "Fish & chips"
    # Not on disk under any spelling: the literal path is kept, so callers can count it.
    assert flat.problem is None and flat.article_path == (root / "text/en/1/78.xml").absolute()
    assert not flat.article_path.exists()


@pytest.mark.parametrize("rule,expected", [
    ("release", {"1": "bad_metadata", "2": "no_english_article", "3": "no_english_article",
                 "3.png": "extension", "4.JPG": "extension", "5.gif": "extension", "6.b": "extension",
                 "noext": "extension"}),
    ("ours", {"1": "bad_metadata", "2": "no_english_article", "3": "no_english_article",
              "3.png": "no_english_article", "4.JPG": None, "5.gif": "no_metadata", "6.b": "no_metadata",
              "noext": "extension"}),
])
def test_metadata_problems_without_crashing(tmp_path, rule, expected):
    root = _tiny_collection(tmp_path, {"1/1.xml": "<image><text xml:lang='en'><caption article='x'>",
                                       "1/2.xml": _meta("text/en/1/9", lang="fr"),
                                       "1/3.xml": _meta(""),
                                       "1/4.xml": _meta("text/en/1/4"),
                                       "1/6.xml": _meta("text/en/1/6")},
                            images=("1/1.jpg", "1/2.jpg", "1/3.jpg", "1/3.png", "1/4.JPG", "1/5.gif", "1/6.b.jpg",
                                    "1/noext"))
    problems = {it.image_path.name.replace(".jpg", ""): it.problem
                for it in imageclef.list_imageclef(root, rule=rule)}
    assert problems == expected
    assert imageclef.english_article(root / "metadata/1/4.xml", rule) == ("text/en/1/4", None)


def _caption_meta(body: str) -> str:
    return f'<?xml version="1.0"?><image id="1">{body}<text xml:lang="de"><caption article="de/x"/></text></image>'


EN = '<text xml:lang="en">'
# metadata body -> (article under the release's rule, under 'ours')
CAPTION_CASES = {
    EN + '<caption article="a/1"/></text>': ("a/1", "a/1"),
    EN + '<caption article=""/><caption article="a/2"/></text>': (None, "a/2"),    # first caption decides
    EN + '<caption/><caption article="a/3"/></text>': (None, "a/3"),               # no attributes at all
    EN + '<caption title="t"/></text>': (None, None),                              # no article attribute
    '<text xml:lang="en" id="9"><caption article="a/4"/></text>': (None, "a/4"),   # extra attribute
    '<text lang="en"><caption article="a/5"/></text>': (None, "a/5"),              # plain lang=
    '<text xml:lang="EN"><caption article="a/6"/></text>': (None, "a/6"),
    EN + '<div><caption article="a/7"/></div></text>': (None, "a/7"),               # not a direct child
    EN + '</text><text xml:lang="en"><caption article="a/8"/></text>': ("a/8", "a/8"),  # 1st en child has none
    EN + '<caption article="  "/></text>': ("  ", None),                           # not empty for the release
    '<text xml:lang="de"><caption article="a/9"/></text>': (None, None),
}


@pytest.mark.parametrize("body", list(CAPTION_CASES))
def test_caption_lookup_per_rule(tmp_path, body):
    path = tmp_path / "1.xml"
    path.write_text(_caption_meta(body), encoding="utf-8")
    for rule, expected in zip(("release", "ours"), CAPTION_CASES[body]):
        article, problem = imageclef.english_article(path, rule)
        assert article == expected, rule
        assert problem == (None if expected else "no_english_article")


def test_paths_leading_outside_are_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd.txt").write_text("root:x:0:0")
    (secret / "photo.jpg").write_bytes(b"\xff\xd8\xff not decoded by the reader")
    (secret / "9.xml").write_text(_meta("text/en/ok"))
    root = _tiny_collection(tmp_path, {f"1/{i}.xml": _meta(a) for i, a in (
        (1, "../../secret/passwd.txt"), (2, "text/link"), (3, "/etc/passwd"), (4, "text/en/ok"),
        (5, "text/outdir/passwd.txt"), (6, "text/../../secret/passwd.txt"), (7, "text/en/ok"),
        (8, "text/inlink"))}, images=tuple(f"1/{i}.jpg" for i in (1, 2, 3, 4, 5, 6, 8, 9)))
    (root / "text" / "en").mkdir(parents=True)
    (root / "text" / "en" / "ok").write_text("fine")
    (root / "text" / "link").symlink_to(secret / "passwd.txt")
    (root / "text" / "outdir").symlink_to(secret)
    (root / "text" / "inlink").symlink_to(root / "text" / "en" / "ok")  # a link that stays inside is fine
    (root / "images" / "1" / "7.jpg").symlink_to(secret / "photo.jpg")
    (root / "metadata" / "1" / "9.xml").symlink_to(secret / "9.xml")
    items = {it.metadata_id: it for it in imageclef.list_imageclef(root)}
    problems = {k: it.problem for k, it in items.items()}
    assert problems == {"1": "outside_collection", "2": "outside_collection",
                        "3": None,  # joined to the root as the release did: root/etc/passwd (absent)
                        "4": None, "5": "outside_collection", "6": "outside_collection",
                        "7": "outside_collection", "8": None, "9": "outside_collection"}
    assert items["3"].article_path == root.absolute() / "etc" / "passwd" and not items["3"].article_path.exists()
    assert items["8"].article_path == root.absolute() / "text" / "inlink"
    for it in items.values():
        assert it.problem is not None or it.article_path is None or secret not in it.article_path.resolve().parents
    assert imageclef.resolve_article(root, "../../secret/passwd.txt") is None


def test_read_article_variants(tmp_path):
    bare = tmp_path / "bare"
    bare.write_bytes(b"'''Caf\xe9''' is [[food]]. {{cite}}")
    assert imageclef.read_article(bare) == "'''Caf\ufffd''' is [[food]]. {{cite}}"
    html = tmp_path / "page.html"
    html.write_text("<!DOCTYPE html><html><body>A &lt;b&gt; page</body></html>")
    assert imageclef.read_article(html) == "A <b> page"
    with pytest.raises(FileNotFoundError):
        imageclef.read_article(tmp_path / "absent")


def test_missing_folders_raise_data_error_with_path(tmp_path):
    with pytest.raises(DataError) as err:
        imageclef.find_collection_root(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "imageclef.org" in str(err.value)
    (tmp_path / "ImageCLEF_Wikipedia" / "images").mkdir(parents=True)
    root = imageclef.find_collection_root(tmp_path)
    with pytest.raises(DataError) as err:
        imageclef.list_imageclef(root)
    assert str(root / "metadata") in str(err.value) and "registration" in str(err.value)


def test_stage_wrapper_prints_one_line_and_exits_2(tmp_path, capsys):
    def main(argv=None):
        imageclef.find_collection_root(tmp_path / "missing")
        return 0

    with pytest.raises(SystemExit) as exc:
        cli.run_main(main, [])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path / "missing") in err[0]

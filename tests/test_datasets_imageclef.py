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
    # Everything else resolves to an article on disk.
    assert counts[None] == len(items) - counts["no_metadata"] - counts["bad_metadata"] - counts["no_english_article"]


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
    assert [it.metadata_id for it in items] == ["5", "6"]  # Thumbs.db is not an image
    first, flat = items
    assert first.problem is None and first.article_path == (root / "_text/en/1/77.xml").absolute()
    assert imageclef.read_article(first.article_path) == "Fish & chips"
    # Not on disk under any spelling: the literal path is kept, so callers can count it.
    assert flat.problem is None and flat.article_path == (root / "text/en/1/78.xml").absolute()
    assert not flat.article_path.exists()


def test_metadata_problems_without_crashing(tmp_path):
    root = _tiny_collection(tmp_path, {"1/1.xml": "<image><text xml:lang='en'><caption article='x'>",
                                       "1/2.xml": _meta("text/en/1/9", lang="fr"),
                                       "1/3.xml": _meta(""),
                                       "1/4.xml": _meta("text/en/1/4")},
                            images=("1/1.jpg", "1/2.jpg", "1/3.png", "1/4.JPG", "1/5.gif"))
    problems = {it.metadata_id: it.problem for it in imageclef.list_imageclef(root)}
    assert problems == {"1": "bad_metadata", "2": "no_english_article", "3": "no_english_article",
                        "4": None, "5": "no_metadata"}
    assert imageclef.english_article(root / "metadata/1/4.xml") == ("text/en/1/4", None)


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

"""Wikipedia cross-modal reader on the real 2,866 texts and official split lists."""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET

import pytest

from texttopicnet.core.errors import DataError
from texttopicnet.data.readers import wikipedia


@pytest.fixture(scope="module")
def root(shared_data):
    return wikipedia.find_wikipedia_root(shared_data)


def _counts_from_list(path):
    # Independent of the reader: plain split on tabs, third column.
    with open(path, encoding="utf-8") as fh:
        return collections.Counter(int(line.rstrip("\n").split("\t")[2]) for line in fh if line.strip())


def test_real_split_sizes_and_category_counts(root):
    names = wikipedia.categories(root)
    assert names == list(wikipedia.STANDARD_CATEGORIES)
    train = wikipedia.load_wikipedia(root, "train")
    test = wikipedia.load_wikipedia(root, "test")
    everything = wikipedia.load_wikipedia(root, "all")
    assert (len(train), len(test), len(everything)) == (2173, 693, 2866)
    assert [p.text_id for p in everything] == [p.text_id for p in train] + [p.text_id for p in test]
    assert len({p.text_id for p in everything}) == 2866
    for split, pairs in (("trainset", train), ("testset", test)):
        expected = _counts_from_list(root / f"{split}_txt_img_cat.list")
        got = collections.Counter(p.category for p in pairs)
        assert got == expected and len(got) == 10
        assert all(p.category_name == names[p.category - 1] for p in pairs)
    # Order preserved: the first test pair is the list's first line.
    first = (root / "testset_txt_img_cat.list").read_text().split("\n")[0].split("\t")
    assert (test[0].text_id, test[0].image_id, test[0].category) == (first[0], first[1], int(first[2]))


def test_every_text_is_read_even_the_malformed_ones(root):
    pairs = wikipedia.load_wikipedia(root, "all")
    malformed = 0
    for p in pairs:
        try:
            ET.parse(root / "texts" / f"{p.text_id}.xml")
        except ET.ParseError:
            malformed += 1
    assert malformed == 888  # the README's count: a strict parser rejects them
    lengths = sorted(len(p.text.split()) for p in pairs)
    assert lengths[0] >= 20  # the dataset kept sections with >= 70 words; none may come back empty
    assert all("<text" not in p.text and "</text>" not in p.text and "<imageset" not in p.text for p in pairs)
    # The reader agrees with a strict parse wherever one is possible.
    checked = 0
    for p in pairs[:300]:
        try:
            body = ET.parse(root / "texts" / f"{p.text_id}.xml").getroot().find("text").text
        except ET.ParseError:
            continue
        assert p.text == body.strip()
        checked += 1
    assert checked > 150


def test_image_paths_present_only_for_sample_images(root):
    pairs = wikipedia.load_wikipedia(root, "train")
    with_images = [p for p in pairs if p.image_path is not None]
    on_disk = list((root / "images").rglob("*.jpg"))
    assert len(with_images) == len(on_disk) == 53
    assert all(p.image_path.parent.name == p.category_name for p in with_images)
    assert all(p.image_path.stem == p.image_id for p in with_images)


def test_lenient_text_reader(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_bytes('<document id="x" name="A & B" cat="3">\n<text>\nFish & chips &nbsp; cost <5 \xa3 '
                    '&amp; more\xff\n</text>\n<imageset><image id="1"/></imageset>\n</document>\n'
                    .encode("utf-8").replace(b"\xc3\xbf", b"\xff"))
    text = wikipedia.read_wiki_text(bad)
    assert text.startswith("Fish & chips") and "cost <5" in text and "& more" in text
    assert "\ufffd" in text  # the invalid byte is replaced, not fatal
    truncated = tmp_path / "cut.xml"
    truncated.write_text('<document id="y"><text>only a start of text')
    assert wikipedia.read_wiki_text(truncated) == "only a start of text"


def test_errors_name_the_path(tmp_path, root):
    with pytest.raises(DataError) as err:
        wikipedia.find_wikipedia_root(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(err.value) and "download.py wikipedia" in str(err.value)
    (tmp_path / "Wikipedia" / "texts").mkdir(parents=True)
    found = wikipedia.find_wikipedia_root(tmp_path)
    assert found == (tmp_path / "Wikipedia").absolute()
    with pytest.raises(DataError, match="testset_txt_img_cat.list: split list not found"):
        wikipedia.load_wikipedia(found, "test")
    (found / "testset_txt_img_cat.list").write_text("a\tb\t3\nbroken line\n")
    with pytest.raises(DataError, match=r"testset_txt_img_cat.list:2"):
        wikipedia.load_wikipedia(found, "test")
    (found / "testset_txt_img_cat.list").write_text("a\tb\t11\n")
    with pytest.raises(DataError, match="outside 1..10"):
        wikipedia.load_wikipedia(found, "test")
    (found / "testset_txt_img_cat.list").write_text("a\tb\t3\n")
    with pytest.raises(DataError, match=r"1 of 1 text files .* missing \(first: a.xml\)"):
        wikipedia.load_wikipedia(found, "test")
    with pytest.raises(DataError, match="unknown Wikipedia split"):
        wikipedia.load_wikipedia(root, "validation")


def test_ids_leading_outside_the_dataset_are_refused(tmp_path, capsys):
    root = tmp_path / "Wikipedia"
    (root / "texts").mkdir(parents=True)
    (root / "images" / "art").mkdir(parents=True)
    secret = tmp_path / "secret.xml"
    secret.write_text("<document><text>private words</text></document>")
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "texts" / "ok.xml").write_text("<document><text>Fine text</text></document>")
    (root / "texts" / "link.xml").symlink_to(secret)
    (root / "images" / "art" / "img1.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "images" / "art" / "imglink.jpg").symlink_to(tmp_path / "x.jpg")
    (root / "testset_txt_img_cat.list").write_text(
        "ok\timg1\t1\n../../secret\timg1\t1\nlink\timg1\t1\nok\t../../x\t1\nok\timglink\t1\n")
    refused = {}
    pairs = wikipedia.load_wikipedia(root, "test", refused=refused)
    # Kept rows: only those whose text stays inside; refused images leave the pair without one.
    assert [(p.text_id, p.image_id, p.image_path is not None) for p in pairs] == [
        ("ok", "img1", True), ("ok", "../../x", False), ("ok", "imglink", False)]
    assert all("private" not in p.text for p in pairs)
    assert refused == {"outside_collection": 4}
    assert pairs[0].image_path == root.absolute() / "images" / "art" / "img1.jpg"
    # Without a dict to count into, the refusal is still said, in one line.
    wikipedia.load_wikipedia(root, "test")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 id(s)" in err[0] and "outside_collection" in err[0]

"""Training-pair filters (texttopicnet.data.pairs) on a hand-built ImageCLEF collection with every bad case.

Expected reasons are written out per image, for the release's keep rule (the default) and
for the toolkit's earlier rule ``ours``.
"""

from __future__ import annotations

import io as _io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texttopicnet.core.errors import DataError
from texttopicnet.data import pairs
from texttopicnet.data.readers import imageclef


def _jpeg_bytes(w: int, h: int, mode: str = "RGB", seed: int = 0) -> bytes:
    arr = np.random.RandomState(seed).randint(0, 255, (h, w, 3), dtype=np.uint8)
    buf = _io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="JPEG", quality=60)
    return buf.getvalue()


def _jpeg(path: Path, w: int, h: int, mode: str = "RGB", seed: int = 0) -> None:
    path.write_bytes(_jpeg_bytes(w, h, mode, seed))


def _png_bytes(w: int, h: int) -> bytes:
    buf = _io.BytesIO()
    Image.new("P", (w, h), 3).save(buf, format="PNG")
    return buf.getvalue()


def _claims(data: bytes, w: int, h: int) -> bytes:
    """A JPEG whose SOF0 header claims ``w`` x ``h`` (the data stays that of the small image)."""
    out = bytearray(data)
    sof = out.index(b"\xff\xc0")
    out[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(out)


def _meta(path: Path, article: str | None, langs=("en",)) -> None:
    blocks = "".join(f'<text xml:lang="{lang}"><caption article="{article if lang == "en" else "x/de"}">c</caption>'
                     f'</text>' for lang in langs if article is not None or lang != "en")
    path.write_text(f'<?xml version="1.0"?><image id="{path.stem}">{blocks}</image>', encoding="utf-8")


# image id -> (reason under the release's rule, reason under 'ours')
EXPECTED = {
    "1": (None, None), "2": (None, None), "3": (None, None), "4": (None, None),
    "5": ("no_metadata", "no_metadata"), "6": ("bad_metadata", "bad_metadata"),
    "7": ("no_english_article", "no_english_article"), "8": ("article_missing", "article_missing"),
    "9": (None, "article_empty"), "10": (None, "article_empty"),  # the release never reads the article
    "11": ("corrupt", "corrupt"), "12": ("corrupt", "corrupt"),
    "13": (None, "not_jpeg"),       # PNG bytes named .jpg: the release opens it with PIL and keeps it
    "14": ("extension", "not_jpeg"),  # a .png is dropped by name in the release
    "15": ("too_small", "too_small"), "16": ("too_small", "too_small"),
    "17": (None, None),             # truncated, still decodes
    "18": ("undecodable", "undecodable"),  # cut right at the start of scan: the header is fine, no pixel decodes
    "19": ("decompression_bomb", "decompression_bomb"),  # header claims 65000 x 65000
    "20": ("outside_collection", "outside_collection"),  # caption@article = ../../etc/passwd
}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clef") / "ImageCLEF_Wikipedia"
    img, meta, text = root / "images" / "0", root / "metadata" / "0", root / "text" / "en"
    for d in (img, meta, text):
        d.mkdir(parents=True)
    (text / "a.txt").write_text("Volcanoes erupt lava across islands.", encoding="utf-8")
    (text / "b.txt").write_bytes(b"Caf\xe9 culture in Vienna")  # Latin-1 bytes: readable leniently, kept
    (text / "empty.txt").write_bytes(b"")
    (text / "blank.txt").write_text(" \n\t \n", encoding="utf-8")
    _jpeg(img / "1.jpg", 256, 256)
    _jpeg(img / "2.jpg", 400, 300, seed=2)
    _jpeg(img / "3.jpg", 300, 300, mode="L", seed=3)     # grayscale JPEG is still a JPEG
    _jpeg(img / "4.jpg", 300, 280, mode="CMYK", seed=4)  # CMYK JPEG too
    for i in ("1", "2", "3"):
        _meta(meta / f"{i}.xml", "text/en/a.txt", langs=("de", "en", "fr"))
    _meta(meta / "4.xml", "text/en/b.txt")
    _jpeg(img / "5.jpg", 300, 300)                       # no metadata file
    _jpeg(img / "6.jpg", 300, 300)
    (meta / "6.xml").write_text('<image id="6"><text xml:lang="en"><caption article="text/en/a.txt">', "utf-8")
    _jpeg(img / "7.jpg", 300, 300)
    _meta(meta / "7.xml", None, langs=("de", "fr"))      # non-English only
    _jpeg(img / "8.jpg", 300, 300)
    _meta(meta / "8.xml", "text/en/gone.txt")
    _jpeg(img / "9.jpg", 300, 300)
    _meta(meta / "9.xml", "text/en/empty.txt")
    _jpeg(img / "10.jpg", 300, 300)
    _meta(meta / "10.xml", "text/en/blank.txt")
    (img / "11.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)  # garbage after a JPEG magic
    (img / "12.jpg").write_bytes(b"")
    (img / "13.jpg").write_bytes(_png_bytes(300, 300))  # a PNG named .jpg
    (img / "14.png").write_bytes(_png_bytes(300, 300))
    _jpeg(img / "15.jpg", 255, 400)
    _jpeg(img / "16.jpg", 400, 100)
    # A truncated JPEG whose header is intact still counts as a usable image (it decodes partly).
    data = _jpeg_bytes(300, 300, seed=17)
    (img / "17.jpg").write_bytes(data[: len(data) // 2])
    data = _jpeg_bytes(300, 300, seed=18)
    (img / "18.jpg").write_bytes(data[: data.index(b"\xff\xda")])
    (img / "19.jpg").write_bytes(_claims(_jpeg_bytes(32, 32, seed=19), 65000, 65000))
    _jpeg(img / "20.jpg", 300, 300)
    _meta(meta / "20.xml", "../../etc/passwd")
    for i in ("11", "12", "13", "14", "15", "16", "17", "18", "19"):
        _meta(meta / f"{i}.xml", "text/en/a.txt")
    return root


@pytest.mark.parametrize("rule,col", [("release", 0), ("ours", 1)])
def test_each_image_removed_for_the_right_reason(collection, rule, col):
    items = imageclef.list_imageclef(collection, rule=rule)
    by_id = {it.metadata_id: it for it in items}
    assert set(by_id) == set(EXPECTED)
    options = pairs.CheckOptions(rule=rule)
    for mid, expected in EXPECTED.items():
        assert pairs.check_item(by_id[mid], options) == expected[col], (rule, mid)


@pytest.mark.parametrize("workers", [1, 2])
def test_filter_counts(collection, workers):
    items = imageclef.list_imageclef(collection)
    kept, counts = pairs.filter_items(items, workers=workers, progress=False)
    expected_kept = sorted(k for k, v in EXPECTED.items() if v[0] is None)
    assert sorted(p.metadata_id for p in kept) == expected_kept
    assert counts["images"] == 20 and counts["kept"] == 8 and counts["removed_total"] == 12
    assert counts["paper_kept"] == 100_785 and counts["paper_unique_articles"] == 35_582
    assert (counts["keep_rule"], counts["decode_check"], counts["max_pixels"]) == ("release", "full", 178_956_970)
    nonzero = {r: n for r, n in counts["removed"].items() if n}
    assert nonzero == {"extension": 1, "no_metadata": 1, "bad_metadata": 1, "no_english_article": 1,
                       "outside_collection": 1, "article_missing": 1, "corrupt": 2, "decompression_bomb": 1,
                       "too_small": 2, "undecodable": 1}
    assert list(counts["removed"]) == list(pairs.REASONS) and set(counts["reasons"]) == set(pairs.REASONS)
    assert counts["unique_articles"] == 4  # a, b, empty, blank
    assert counts["examples"]["undecodable"] == [str(collection / "images/0/18.jpg")]
    assert all(p.image_path.is_absolute() and p.article_path.is_file() for p in kept)


def test_decode_check_header_keeps_what_the_release_keeps(collection):
    items = imageclef.list_imageclef(collection)
    kept, counts = pairs.filter_items(items, decode="header", progress=False)
    assert "18" in {p.metadata_id for p in kept} and counts["removed"]["undecodable"] == 0
    with pytest.raises(DataError, match="unknown decode check"):
        pairs.filter_items(items, decode="pixels", progress=False)
    with pytest.raises(DataError, match="unknown keep rule"):
        pairs.filter_items(items, rule="paper", progress=False)


def test_max_pixels_is_configurable(collection):
    items = imageclef.list_imageclef(collection)
    _, counts = pairs.filter_items(items, max_pixels=300 * 280, progress=False)
    # every image of 300x300 or 400x300 is now refused; 256x256 and 300x280 pass
    assert counts["removed"]["decompression_bomb"] >= 8 and counts["kept"] == 2


def test_min_side_is_configurable(collection):
    items = imageclef.list_imageclef(collection)
    _, counts = pairs.filter_items(items, min_side=90, progress=False)
    assert counts["removed"]["too_small"] == 0 and counts["kept"] == 10


def test_pairs_tsv_round_trip_and_train_dict(collection, tmp_path):
    kept, _ = pairs.filter_items(imageclef.list_imageclef(collection), progress=False)
    path = tmp_path / "pairs.tsv"
    pairs.write_pairs_tsv(path, kept)
    assert pairs.read_pairs_tsv(path) == kept
    d = pairs.train_dict(kept, collection)
    assert d["images/0/1.jpg"] == "text/en/a.txt" and d["images/0/4.jpg"] == "text/en/b.txt"
    assert d["images/0/9.jpg"] == "text/en/empty.txt"
    assert pairs.unique_articles(kept)[:2] == [collection / "text/en/a.txt", collection / "text/en/blank.txt"]


def test_read_pairs_tsv_errors(tmp_path):
    with pytest.raises(DataError, match="run lda/01"):
        pairs.read_pairs_tsv(tmp_path / "none.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("/a.jpg\t/a.txt\t1\n/b.jpg only-two\n", encoding="utf-8")
    with pytest.raises(DataError, match=":2: expected 3"):
        pairs.read_pairs_tsv(bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no training pairs"):
        pairs.read_pairs_tsv(empty)

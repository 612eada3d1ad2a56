"""Training-pair filters (texttopicnet.data.pairs) on a hand-built ImageCLEF collection with every bad case."""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texttopicnet.core.errors import DataError
from texttopicnet.data import pairs
from texttopicnet.data.readers import imageclef


def _jpeg(path: Path, w: int, h: int, mode: str = "RGB", seed: int = 0) -> None:
    arr = np.random.RandomState(seed).randint(0, 255, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr).convert(mode)
    im.save(path, format="JPEG", quality=60)


def _png_bytes(w: int, h: int) -> bytes:
    buf = _io.BytesIO()
    Image.new("P", (w, h), 3).save(buf, format="PNG")
    return buf.getvalue()


def _meta(path: Path, article: str | None, langs=("en",)) -> None:
    blocks = "".join(f'<text xml:lang="{lang}"><caption article="{article if lang == "en" else "x/de"}">c</caption>'
                     f'</text>' for lang in langs if article is not None or lang != "en")
    path.write_text(f'<?xml version="1.0"?><image id="{path.stem}">{blocks}</image>', encoding="utf-8")


# image id -> (expected reason, how to build it)
EXPECTED = {
    "1": None, "2": None, "3": None, "4": None, "5": "no_metadata", "6": "bad_metadata", "7": "no_english_article",
    "8": "article_missing", "9": "article_empty", "10": "article_empty", "11": "corrupt", "12": "corrupt",
    "13": "not_jpeg", "14": "not_jpeg", "15": "too_small", "16": "too_small", "17": None,
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
    data = _io.BytesIO()
    Image.fromarray(np.random.RandomState(17).randint(0, 255, (300, 300, 3), dtype=np.uint8)).save(data, "JPEG")
    (img / "17.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    for i in ("11", "12", "13", "14", "15", "16", "17"):
        _meta(meta / f"{i}.xml", "text/en/a.txt")
    return root


def test_each_image_removed_for_the_right_reason(collection):
    items = imageclef.list_imageclef(collection)
    by_id = {it.metadata_id: it for it in items}
    assert set(by_id) == set(EXPECTED)
    for mid, expected in EXPECTED.items():
        assert pairs.check_item(by_id[mid]) == expected, mid


@pytest.mark.parametrize("workers", [1, 2])
def test_filter_counts(collection, workers):
    items = imageclef.list_imageclef(collection)
    kept, counts = pairs.filter_items(items, workers=workers, progress=False)
    assert sorted(p.metadata_id for p in kept) == sorted(k for k, v in EXPECTED.items() if v is None)
    assert counts["images"] == 17 and counts["kept"] == 5 and counts["removed_total"] == 12
    assert counts["removed"] == {"no_metadata": 1, "bad_metadata": 1, "no_english_article": 1,
                                 "article_missing": 1, "article_empty": 2, "corrupt": 2, "not_jpeg": 2,
                                 "too_small": 2}
    assert counts["unique_articles"] == 2
    assert counts["examples"]["not_jpeg"] and all("images" in p for p in counts["examples"]["corrupt"])
    assert all(p.image_path.is_absolute() and p.article_path.is_file() for p in kept)


def test_min_side_is_configurable(collection):
    items = imageclef.list_imageclef(collection)
    _, counts = pairs.filter_items(items, min_side=90, progress=False)
    assert counts["removed"]["too_small"] == 0 and counts["kept"] == 7


def test_pairs_tsv_round_trip_and_train_dict(collection, tmp_path):
    kept, _ = pairs.filter_items(imageclef.list_imageclef(collection), progress=False)
    path = tmp_path / "pairs.tsv"
    pairs.write_pairs_tsv(path, kept)
    assert pairs.read_pairs_tsv(path) == kept
    d = pairs.train_dict(kept, collection)
    assert d["images/0/1.jpg"] == "text/en/a.txt" and d["images/0/4.jpg"] == "text/en/b.txt"
    assert pairs.unique_articles(kept) == [collection / "text/en/a.txt", collection / "text/en/b.txt"]


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

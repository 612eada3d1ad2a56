"""Stage 1 against the release's kept-set rule, written out plainly here (LDA/generate_train_dict.py).

The release walked ``images/`` with ``os.walk``, kept a file when ``name.split('.')[1]`` is
exactly ``jpg`` or ``jpeg``, read ``metadata/<folder name>/<first dot-part>.xml``, took the
attributes of the first direct ``caption`` of the first child whose attributes are exactly
``{xml:lang: 'en'}`` and has one, skipped an empty ``article``, and skipped images whose
``PIL.Image.open(...).size`` has a side under 256. That loop is re-implemented below, with
every place where the release would have raised recorded as a crash; those files are left
out of the comparison (we count them under a reason instead). The remaining differences
are the deliberate, counted deviations: paths leading outside the collection, articles not
on disk, and images whose pixels do not decode.
"""

from __future__ import annotations

import collections
import io as _io
import json
import os
import shutil
import struct
import warnings
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, load_script
from PIL import Image

LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def release_train_dict(collection: Path) -> tuple[dict[str, str], set[str]]:
    """The release's loop: ({image path relative to the collection: article}, {paths where it raised})."""
    img_dir, xml_dir = str(collection / "images") + "/", str(collection / "metadata") + "/"
    kept, crashed = {}, set()
    for folder, _dirs, files in os.walk(img_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), collection)
            try:
                parts = name.split(".")
                if parts[1] != "jpg" and parts[1] != "jpeg":  # IndexError when there is no dot
                    continue
                xml = xml_dir + os.path.basename(folder) + "/" + parts[0] + ".xml"
                if not os.path.isfile(xml):
                    continue
                found = ""  # what the release's get_article returned when nothing matched
                for child in ET.parse(xml).getroot():  # ParseError on malformed XML
                    if child.attrib == {LANG: "en"}:
                        captions = [c for c in child if c.tag == "caption"]
                        if captions:
                            found = captions[0].attrib
                            break
                if found == {}:
                    continue
                if found["article"] == "":  # TypeError on '' (no English child), KeyError without 'article'
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the release printed PIL's warnings and went on
                    width, height = Image.open(os.path.join(folder, name)).size  # raises on non-images, bombs
                if width < 256 or height < 256:
                    continue
                kept[rel] = found["article"]
            except Exception:  # noqa: BLE001 - any exception stopped the release's script
                crashed.add(rel)
    return kept, crashed


# --- the hand-built collection --------------------------------------------------------------

def _jpeg(w=300, h=300, mode="RGB", seed=0) -> bytes:
    arr = np.random.RandomState(seed).randint(0, 255, (h, w, 3), dtype=np.uint8)
    buf = _io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "JPEG", quality=70)
    return buf.getvalue()


def _png(w=300, h=300) -> bytes:
    buf = _io.BytesIO()
    Image.new("RGB", (w, h), (20, 90, 160)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_claiming(w, h) -> bytes:
    data = bytearray(_jpeg(32, 32, seed=5))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def _png_claiming(w, h) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def _meta(*blocks: str) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?><image id="1"><name>x</name>' + "".join(blocks) + "</image>"


def _en(article: str | None = "text/a.txt", attrs: str = ' xml:lang="en"') -> str:
    cap = "<caption/>" if article is None else f'<caption article="{article}">c</caption>'
    return f"<text{attrs}><description/>{cap}</text>"


DE = '<text xml:lang="de"><caption article="text/de/1">d</caption></text>'
JPG = _jpeg()
# images/0/<name>: (bytes, metadata xml or None, what the release does, our reason (None = kept))
CASES = {
    "plain.jpg": (JPG, _meta(DE, _en()), "keep", None),
    "gray.jpg": (_jpeg(mode="L", seed=1), _meta(_en()), "keep", None),
    "cmyk.jpg": (_jpeg(mode="CMYK", seed=2), _meta(_en()), "keep", None),
    "dotjpeg.jpeg": (JPG, _meta(_en()), "keep", None),
    "upper.JPG": (JPG, _meta(_en()), "drop", "extension"),
    "a.b.jpg": (JPG, _meta(_en()), "drop", "extension"),  # metadata a.xml exists: only the name drops it
    "real.png": (_png(), _meta(_en()), "drop", "extension"),
    "._mac.jpg": (JPG, _meta(_en()), "drop", "extension"),
    "noext": (JPG, None, "crash", "extension"),
    "pngnamed.jpg": (_png(), _meta(_en()), "keep", None),  # PNG bytes: PIL reads it, the release kept it
    "twice.jpg.png": (_png(), _meta(_en()), "keep", None),  # second dot-part is 'jpg'
    "nometa.jpg": (JPG, None, "drop", "no_metadata"),
    "badxml.jpg": (JPG, '<image><text xml:lang="en"><caption article="text/a.txt">', "crash", "bad_metadata"),
    "noenglish.jpg": (JPG, _meta(DE), "crash", "no_english_article"),
    "extraonly.jpg": (JPG, _meta(_en(attrs=' xml:lang="en" id="7"')), "crash", "no_english_article"),
    "extrafirst.jpg": (JPG, _meta(_en(attrs=' xml:lang="en" id="7"'), _en(None)), "drop", "no_english_article"),
    "langattr.jpg": (JPG, _meta(_en(attrs=' lang="en"'), _en("")), "drop", "no_english_article"),
    "twocaps.jpg": (JPG, _meta('<text xml:lang="en"><caption article=""/><caption article="text/a.txt"/></text>'),
                    "drop", "no_english_article"),
    "secondchild.jpg": (JPG, _meta('<text xml:lang="en"><comment/></text>', _en("text/b.txt")), "keep", None),
    "nocaption.jpg": (JPG, _meta('<text xml:lang="en"><comment/></text>'), "crash", "no_english_article"),
    "noattr.jpg": (JPG, _meta('<text xml:lang="en"><caption title="t"/></text>'), "crash", "no_english_article"),
    "emptyattr.jpg": (JPG, _meta(_en("")), "drop", "no_english_article"),
    "emptyfile.jpg": (JPG, _meta(_en("text/empty.txt")), "keep", None),  # the release never read the article
    "missingfile.jpg": (JPG, _meta(_en("text/gone.txt")), "keep", "article_missing"),
    "passwd.jpg": (JPG, _meta(_en("../../etc/passwd")), "keep", "outside_collection"),
    "linkarticle.jpg": (JPG, _meta(_en("text/link.txt")), "keep", "outside_collection"),
    "linkimage.jpg": ("link", _meta(_en()), "keep", "outside_collection"),
    "tiny.jpg": (_jpeg(100, 300, seed=3), _meta(_en()), "drop", "too_small"),
    "trunc.jpg": (_jpeg(seed=4)[: len(_jpeg(seed=4)) // 2], _meta(_en()), "keep", None),
    "cutscan.jpg": (JPG[: JPG.index(b"\xff\xda")], _meta(_en()), "keep", "undecodable"),
    "bomb.jpg": (_jpeg_claiming(65000, 65000), _meta(_en()), "crash", "decompression_bomb"),
    "bombpng.jpg": (_png_claiming(100000, 100000), _meta(_en()), "crash", "decompression_bomb"),
    "big.jpg": (_jpeg_claiming(10000, 10000), _meta(_en()), "keep", None),  # PIL only warns at 1e8 px
    "garbage.jpg": (bytes(range(256)) * 8, _meta(_en()), "crash", "corrupt"),
    "empty.jpg": (b"", _meta(_en()), "crash", "corrupt"),
}
# (path under images/, metadata path under metadata/): other folders
ELSEWHERE = {"top.jpg": "top.xml", "deep/er/n.jpg": "er/n.xml"}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("release")
    root = base / "ImageCLEF_Wikipedia"
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private words never to be read")
    (outside / "photo.jpg").write_bytes(_jpeg(seed=9))
    (outside / "dir").mkdir()
    (outside / "dir" / "x.jpg").write_bytes(JPG)
    for d in ("images/0", "metadata/0", "text", "images/deep/er", "metadata/er"):
        (root / d).mkdir(parents=True)
    (root / "text" / "a.txt").write_text("Volcanoes erupt lava.")
    (root / "text" / "b.txt").write_text("Rivers carry silt.")
    (root / "text" / "empty.txt").write_text("")
    (root / "text" / "link.txt").symlink_to(outside / "secret.txt")
    for name, (data, xml, _, _) in CASES.items():
        if data == "link":
            (root / "images" / "0" / name).symlink_to(outside / "photo.jpg")
        else:
            (root / "images" / "0" / name).write_bytes(data)
        if xml is not None:
            (root / "metadata" / "0" / (name.split(".")[0] + ".xml")).write_text(xml)
    (root / "metadata" / "0" / "a.xml").write_text(_meta(_en()))  # for a.b.jpg under the other rule
    (root / "images" / "linked").symlink_to(outside / "dir")  # os.walk does not follow it
    (root / "metadata" / "linked").mkdir()
    (root / "metadata" / "linked" / "x.xml").write_text(_meta(_en()))
    for img, xml in ELSEWHERE.items():
        (root / "images" / img).write_bytes(JPG)
        (root / "metadata" / xml).write_text(_meta(_en("text/b.txt")))
    real = SHARED_DATA / "voc2007" / "mini" / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg"
    if real.is_file():  # a real truncated photo that still decodes
        shutil.copy(real, root / "images" / "0" / "voc1.jpg")
        (root / "metadata" / "0" / "voc1.xml").write_text(_meta(_en()))
    return root


@pytest.fixture(scope="module")
def stage_run(collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    stage = load_script("lda/01_build_train_dict.py")
    assert stage.main(["--collection", str(collection), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    pairs_dir = out / "pairs"
    return (json.loads((pairs_dir / "train_dict_ImageCLEF_Wikipedia.json").read_text()),
            json.loads((pairs_dir / "filter_counts.json").read_text()))


def test_the_fixture_exercises_every_release_behaviour(collection):
    kept, crashed = release_train_dict(collection)
    for name, (_, _, release, _) in CASES.items():
        rel = f"images/0/{name}"
        got = "crash" if rel in crashed else "keep" if rel in kept else "drop"
        assert got == release, name
    assert {f"images/{p}" for p in ELSEWHERE} <= set(kept)
    assert not any("linked" in p for p in kept)


def test_stage1_reproduces_the_release_kept_set(collection, stage_run):
    ours, counts = stage_run
    release, crashed = release_train_dict(collection)
    deviations = {f"images/0/{n}" for n, (_, _, rel, reason) in CASES.items() if rel == "keep" and reason}
    assert deviations <= set(release)  # each deviation really is an image the release kept
    assert not set(ours) & crashed
    expected = {k: v for k, v in release.items() if k not in deviations}
    assert ours == expected  # same images, same article paths
    assert counts["kept"] == len(expected) and counts["images"] == sum(1 for _ in _files(collection / "images"))


def _files(folder: Path):
    for dirpath, _dirs, files in os.walk(folder):
        yield from files


def test_every_drop_is_counted_under_its_reason(collection, stage_run):
    _, counts = stage_run
    expected = collections.Counter(reason for _, _, _, reason in CASES.values() if reason)
    assert {r: n for r, n in counts["removed"].items() if n} == dict(expected)
    for name, (_, _, _, reason) in CASES.items():
        if reason and len(counts["examples"][reason]) < expected[reason]:
            continue  # examples are capped per reason
        if reason:
            assert str(collection / "images" / "0" / name) in counts["examples"][reason], name
    assert counts["paper_kept"] == 100_785 and counts["paper_unique_articles"] == 35_582
    assert counts["keep_rule"] == "release" and counts["decode_check"] == "full"


def test_nothing_outside_the_collection_reaches_the_outputs(stage_run):
    ours, _ = stage_run
    assert all(not v.startswith("..") and "secret" not in v and v != "text/link.txt" for v in ours.values())
    assert "images/0/linkimage.jpg" not in ours


def test_stage_prints_the_counts_next_to_the_paper(collection, tmp_path, capsys):
    stage = load_script("lda/01_build_train_dict.py")
    assert stage.main(["--collection", str(collection), "--out", str(tmp_path), "--workers", "1", "--no-progress",
                       "--decode-check", "header"]) == 0
    out = capsys.readouterr().out
    assert "kept (paper: 100,785)" in out and "unique articles (paper: 35,582)" in out
    assert "outside_collection" in out and "decompression_bomb" in out
    counts = json.loads((tmp_path / "pairs" / "filter_counts.json").read_text())
    assert counts["removed"]["undecodable"] == 0  # header-only: the cut file is kept, as in the release
    ours = json.loads((tmp_path / "pairs" / "train_dict_ImageCLEF_Wikipedia.json").read_text())
    assert "images/0/cutscan.jpg" in ours

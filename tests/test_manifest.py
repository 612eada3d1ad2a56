"""Manifest corpora: the JSONL format's rules, and the InstaCities1M / MIRFlickr-25K / folder readers
on hand-built layouts (each checked against a plain re-statement of the layout's rule)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import load_script
from texttopicnet.core.errors import DataError
from texttopicnet.data.readers import folder, instacities, mirflickr
from texttopicnet.data.readers.manifest import read_manifest, read_text, write_manifest


def _jpg(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, "JPEG")


def _lines(path, objs):
    with open(path, "wb") as fh:
        for o in objs:
            fh.write((o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n")


def test_every_bad_line_is_counted_and_good_lines_kept(tmp_path):
    root = tmp_path / "corpus"
    _jpg(root / "a.jpg")
    (root / "cap.txt").write_text("a caption")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    lines = [
        {"image": "a.jpg", "text": "inline caption", "id": "1", "tags": ["x", "y"], "split": "train"},
        {"image": "a.jpg", "text_file": "cap.txt", "id": "2", "categories": "solo"},
        b"{not json",
        b"\xff\xfe garbage",
        [1, 2],
        {"text": "no image"},
        {"image": "a.jpg"},
        {"image": "a.jpg", "text": "both", "text_file": "cap.txt", "id": "3"},
        {"image": "a.jpg", "text": "   ", "id": "4"},
        {"image": "a.jpg", "text": "t", "tags": [1], "id": "5"},
        {"image": "../outside.jpg", "text": "t", "id": "6"},
        {"image": "a.jpg", "text_file": "link.txt", "id": "7"},
        {"image": "/etc/passwd", "text": "t", "id": "8"},
        {"image": "a.jpg", "text": "again", "id": "1"},
    ]
    _lines(root / "manifest.jsonl", lines)
    records, counts = read_manifest(root / "manifest.jsonl")
    assert [r.id for r in records] == ["1", "2"]
    assert records[0].tags == ("x", "y") and records[0].split == "train"
    assert records[1].categories == ("solo",)
    assert records[0].image == (root / "a.jpg").resolve()
    assert read_text(records[0]) == "inline caption" and read_text(records[1]) == "a caption"
    expected = {"bad_json": 2, "not_an_object": 1, "no_image": 1, "no_text": 3, "bad_field": 1,
                "outside_collection": 3, "duplicate_id": 1}
    assert {k: v for k, v in counts["skipped"].items() if v} == expected
    assert counts["lines"] == len(lines) and counts["records"] == 2


def test_non_utf8_caption_file_raises_valueerror_not_mangled(tmp_path):
    _jpg(tmp_path / "a.jpg")
    (tmp_path / "c.txt").write_bytes(b"caf\xe9 latin-1")
    write_manifest(tmp_path / "m.jsonl", [{"image": tmp_path / "a.jpg", "text_file": tmp_path / "c.txt"}])
    (rec,), _ = read_manifest(tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_text(rec)


def test_writer_refuses_paths_outside_and_roundtrips(tmp_path):
    root = tmp_path / "c"
    _jpg(root / "img" / "b.jpg")
    with pytest.raises(DataError, match="outside"):
        write_manifest(root / "m.jsonl", [{"image": tmp_path / "elsewhere.jpg", "text": "x"}])
    assert not (root / "m.jsonl").exists()
    write_manifest(root / "m.jsonl", [{"image": root / "img" / "b.jpg", "text": "ünïcode caption", "tags": ("t",)}])
    raw = json.loads((root / "m.jsonl").read_text(encoding="utf-8"))
    assert raw == {"image": "img/b.jpg", "text": "ünïcode caption", "tags": ["t"]}
    (rec,), _ = read_manifest(root / "m.jsonl")
    assert rec.id == "img/b.jpg" and rec.text == "ünïcode caption"


def test_missing_or_empty_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no usable line"):
        read_manifest(tmp_path / "empty.jsonl")


def _instacities(root, per_city):
    for city, n in per_city.items():
        for i in range(n):
            _jpg(root / "img_resized_1M" / "cities_instagram" / city / f"{1000 + i}.jpg")
            cap = root / "captions_resized_1M" / "cities_instagram" / city / f"{1000 + i}.txt"
            cap.parent.mkdir(parents=True, exist_ok=True)
            cap.write_text(f"#{city} photo {i}")
    # unpaired files on both sides
    _jpg(root / "img_resized_1M" / "cities_instagram" / "london" / "orphan.jpg")
    (root / "captions_resized_1M" / "cities_instagram" / "london" / "lonely.txt").write_text("x")


def test_instacities_manifest_follows_the_authors_split_rule(tmp_path):
    root = tmp_path / "InstaCities1M"
    _instacities(root, {"london": 20, "miami": 7})
    counts = instacities.build_manifest(root)
    assert counts["image_without_caption"] == 1 and counts["caption_without_image"] == 1
    records, _ = read_manifest(root / "manifest.jsonl")
    assert len(records) == 27
    for city, n in (("london", 20), ("miami", 7)):
        mine = sorted((r for r in records if r.categories == (city,)), key=lambda r: r.id)
        # the rule written plainly: first 15% of each city's ids test, next 5% val, rest train
        n_test = sum(1 for i in range(n) if i < 0.15 * n)
        n_val = sum(1 for i in range(n) if 0.15 * n <= i < 0.20 * n)
        assert [r.split for r in mine] == ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
        assert all(read_text(r) .startswith(f"#{city}") for r in mine)
        assert all(r.image.parent.name == city and r.image.stem == r.text_file.stem for r in mine)


def test_mirflickr_manifest_tags_and_concepts(tmp_path):
    root = tmp_path / "MIRFLICKR25K"
    tags = {1: ["sky", "Blue"], 2: [], 3: ["dog", "park", "dog"], 4: ["sea"]}
    for n, t in tags.items():
        _jpg(root / "mirflickr" / f"im{n}.jpg")
        tf = root / "mirflickr" / "meta" / "tags" / f"tags{n}.txt"
        tf.parent.mkdir(parents=True, exist_ok=True)
        tf.write_text("\n".join(t) + ("\n" if t else ""))
    ann = root / "mirflickr25k_annotations_v080"
    ann.mkdir()
    for c in mirflickr.CONCEPTS:
        (ann / f"{c}.txt").write_text("")
    (ann / "sky.txt").write_text("1\n4\n")
    (ann / "dog.txt").write_text("3\r\n")
    (ann / "dog_r1.txt").write_text("3\n")
    (ann / "sea.txt").write_text("4\nnot-a-number\n")
    counts = mirflickr.build_manifest(root, test_fraction=0.5, seed=3)
    assert counts["images"] == 4 and counts["images_without_tags"] == 1 and counts["bad_annotation_lines"] == 1
    records, _ = read_manifest(root / "manifest.jsonl")
    by_id = {r.id: r for r in records}
    assert set(by_id) == {"1", "3", "4"}
    assert by_id["1"].text == "sky Blue" and by_id["3"].tags == ("dog", "park", "dog")
    assert set(by_id["1"].categories) == {"sky"} and set(by_id["3"].categories) == {"dog", "dog_r1"}
    assert set(by_id["4"].categories) == {"sky", "sea"}
    # the seeded split, restated: numpy RandomState(seed).rand(n) < fraction over sorted image numbers
    draws = np.random.RandomState(3).rand(4) < 0.5
    expect = {str(n): ("test" if d else "train") for n, d in zip([1, 2, 3, 4], draws)}
    assert all(r.split == expect[r.id] for r in records)


def test_folder_reader_pairs_captions_and_refuses_links_out(tmp_path):
    root = tmp_path / "mine"
    _jpg(root / "cats" / "a.jpg")
    (root / "cats" / "a.txt").write_text("a cat")
    _jpg(root / "dogs" / "b.png")
    (root / "dogs" / "b.txt").write_text("a dog")
    _jpg(root / "c.jpg")  # no caption
    _jpg(tmp_path / "secret.jpg")
    (tmp_path / "secret.txt").write_text("s")
    (root / "cats" / "evil.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "cats" / "evil.txt").write_text("x")
    counts = folder.build_manifest(root, categories_from_folders=True)
    assert counts["image_without_caption"] == 1 and counts["outside_collection"] == 1
    records, _ = read_manifest(root / "manifest.jsonl")
    assert sorted((r.id, r.categories, read_text(r)) for r in records) == [
        ("cats/a.jpg", ("cats",), "a cat"), ("dogs/b.png", ("dogs",), "a dog")]


def test_make_manifest_script_user_errors_exit_2(tmp_path, capsys):
    script = load_script("data/make_manifest.py")
    with pytest.raises(SystemExit) as exc:
        from texttopicnet.core.cli import run_main
        run_main(script.main, ["mirflickr", str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "not found" in capsys.readouterr().err
    root = tmp_path / "mine"
    _jpg(root / "x.jpg")
    (root / "x.txt").write_text("hello")
    assert script.main(["folder", str(root)]) == 0
    assert os.path.isfile(root / "manifest.jsonl")

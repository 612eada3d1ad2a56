"""The search index (texttopicnet.search.index / sources / embedding): files, resume, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_search_helpers as h

from texttopicnet.core.errors import DataError, UserError
from texttopicnet.search.index import BuildInterrupted, load_index
from texttopicnet.search.sources import from_folder, from_manifest, from_wikipedia, open_source, valid_id


def test_index_files_and_rows():
    folder = h.tiny_index()
    idx = load_index(folder)
    info = json.loads((folder / "index.json").read_text())
    assert len(idx) == 8 and info["skipped"] == {"corrupt": 1}
    assert idx.ids == [str(i) for i in range(1, 10) if i != 1]  # sorted paths: broken.jpg is id 1, skipped
    assert idx.paths[0] == "city/img02.png"
    assert idx.labels[0] == {"categories": ["city"], "tags": []}
    assert idx.embeddings.dtype == np.float32 and idx.embeddings.shape == (8, 3)
    np.testing.assert_allclose(idx.embeddings.sum(axis=1), 1.0, atol=1e-6)  # distributions (KL space)
    assert info["space"]["sha256"] and info["network"]["sha256"] == "random-seed0-k3"
    # the rows are the network's normalised sigmoid outputs, recomputed here from the pixels
    embedder, _ = h.random_embedder(3)
    raw = embedder.load(idx.image_path(idx.ids[0]))
    import torch

    from texttopicnet.training.augment import center_crop

    x = embedder.spec.preprocess(center_crop(torch.from_numpy(raw[None].copy()), 227))
    with torch.inference_mode():
        prob = torch.sigmoid(embedder.net(x)).numpy()[0].astype(np.float64)
    np.testing.assert_allclose(idx.embeddings[0], prob / prob.sum(), atol=1e-6)


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    images = tmp_path / "images"
    h.write_images(images, 7, seed=1)
    with pytest.raises(BuildInterrupted):
        h.build_tiny_index(tmp_path / "a", images, part_images=3, stop_after_parts=1)
    assert not (tmp_path / "a" / "index.json").exists()  # incomplete: not loadable
    with pytest.raises(UserError, match="interrupted"):
        load_index(tmp_path / "a")
    summary = h.build_tiny_index(tmp_path / "a", images, part_images=3)
    assert summary["resumed_images"] == 3
    h.build_tiny_index(tmp_path / "b", images, part_images=3)
    a, b = load_index(tmp_path / "a"), load_index(tmp_path / "b")
    assert np.array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    assert (a.ids, a.paths, a.labels) == (b.ids, b.paths, b.labels)
    assert not (tmp_path / "a" / ".partial").exists()


def test_float16_index(tmp_path):
    images = tmp_path / "images"
    h.write_images(images, 3, seed=2)
    h.build_tiny_index(tmp_path / "i", images, dtype="float16")
    idx = load_index(tmp_path / "i")
    assert idx.embeddings.dtype == np.float16


def test_image_path_never_leaves_the_root(tmp_path):
    import shutil

    folder = tmp_path / "index"
    shutil.copytree(h.tiny_index(), folder)
    paths = (folder / "paths.txt").read_text().splitlines()
    paths[0] = "../../../../etc/passwd"
    (folder / "paths.txt").write_text("\n".join(paths) + "\n")
    idx = load_index(folder, root=load_index(h.tiny_index()).root)
    assert idx.image_path(idx.ids[0]) is None
    assert idx.image_path(idx.ids[1]) is not None
    assert idx.image_path("../../etc/passwd") is None and idx.image_path("nope") is None


def test_damaged_index_is_refused(tmp_path):
    import shutil

    folder = tmp_path / "index"
    shutil.copytree(h.tiny_index(), folder)
    (folder / "ids.txt").write_text("1\n2\n")
    with pytest.raises(DataError, match="do not match"):
        load_index(folder)
    with pytest.raises(UserError, match="no search index"):
        load_index(tmp_path)


def test_sources(tmp_path):
    from texttopicnet.data.readers.manifest import write_manifest

    h.write_images(tmp_path / "c", 3)
    entries = [{"id": "a", "image": tmp_path / "c/ocean/img00.png", "text": "x", "categories": ["sea"], "tags": ["t"]},
               {"id": "b]", "image": tmp_path / "c/forest/img01.png", "text": "y"},       # cannot be typed: refused
               {"id": "@upload", "image": tmp_path / "c/city/img02.png", "text": "z"}]  # reserved: refused
    write_manifest(tmp_path / "m.jsonl", entries)
    with open(tmp_path / "m.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "c", "image": "../outside.png", "text": "w"}) + "\n")
    coll = from_manifest(tmp_path / "m.jsonl")
    assert [i.id for i in coll.items] == ["a"] and coll.items[0].rel == "c/ocean/img00.png"
    assert coll.items[0].categories == ("sea",) and coll.items[0].tags == ("t",)
    assert coll.counts["bad_id"] == 2 and coll.counts["manifest_outside_collection"] == 1
    folder = from_folder(tmp_path / "c", categories_from_folders=True)
    assert [(i.id, i.rel, i.categories) for i in folder.items][0] == ("1", "city/img02.png", ("city",))
    with pytest.raises(UserError):
        open_source("c")
    with pytest.raises(UserError):
        open_source("zip:c")
    assert not valid_id(" 1") and not valid_id("a\nb") and valid_id("im 1.jpg")


def test_wikipedia_source_on_real_layout(shared_data):
    coll = from_wikipedia(shared_data / "wikipedia")
    assert len(coll.items) == 53 and coll.counts["missing_images"] == 2866 - 53
    cats = {line.strip() for line in (shared_data / "wikipedia/categories.list").read_text().split() if line.strip()}
    for it in coll.items:
        assert it.categories[0] in cats and it.rel == f"images/{it.categories[0]}/{it.id}.jpg"

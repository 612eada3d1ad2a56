"""PASCAL VOC2007 reader: real label files (counts vs. the official devkit table), mini folder, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from texttopicnet.core.errors import DataError, UserError
from texttopicnet.data.readers import voc

# Official VOC2007 devkit, Table 1, "img" columns: images holding at least one
# non-difficult object of the class (= label 1 in ImageSets/Main/<class>_<split>.txt).
OFFICIAL_TRAINVAL = dict(zip(voc.VOC_CLASSES, (238, 243, 330, 181, 244, 186, 713, 337, 445, 141,
                                                200, 421, 287, 245, 2008, 245, 96, 229, 261, 256)))
OFFICIAL_TEST = dict(zip(voc.VOC_CLASSES, (204, 239, 282, 172, 212, 174, 721, 322, 417, 127,
                                            190, 418, 274, 222, 2007, 224, 97, 223, 259, 229)))
OFFICIAL_TRAIN_FIRST6 = {"aeroplane": 112, "bicycle": 116, "bird": 180, "boat": 81, "bottle": 139, "bus": 97}


@pytest.fixture(scope="module")
def real_root(shared_data):
    return voc.find_voc_root(shared_data)


def test_finds_the_real_label_folder(real_root, shared_data):
    assert real_root == (shared_data / "voc2007").absolute()
    assert voc.voc_classes(real_root) == list(voc.VOC_CLASSES)


@pytest.mark.parametrize("split,n,official", [("trainval", 5011, OFFICIAL_TRAINVAL), ("test", 4952, OFFICIAL_TEST)])
def test_real_split_sizes_and_positives_match_devkit(real_root, split, n, official):
    s = voc.load_voc_split(real_root, split)
    assert len(s.ids) == n == len(set(s.ids)) == len(s.image_paths)
    assert s.labels.shape == (n, 20) and s.labels.dtype == np.int8
    assert set(np.unique(s.labels)) == {-1, 0, 1}
    positives = dict(zip(s.classes, (s.labels == 1).sum(0).tolist()))
    assert positives == official
    assert s.image_paths[0].name == f"{s.ids[0]}.jpg"


def test_train_plus_val_is_trainval(real_root):
    tr, va, tv = (voc.load_voc_split(real_root, x) for x in ("train", "val", "trainval"))
    assert len(tr.ids) == 2501 and len(va.ids) == 2510
    assert sorted(tr.ids + va.ids) == sorted(tv.ids)
    pos_train = dict(zip(tr.classes, (tr.labels == 1).sum(0).tolist()))
    assert {k: pos_train[k] for k in OFFICIAL_TRAIN_FIRST6} == OFFICIAL_TRAIN_FIRST6
    # Labels of an id agree across the split files.
    row = {i: k for k, i in enumerate(tv.ids)}
    np.testing.assert_array_equal(tv.labels[[row[i] for i in tr.ids]], tr.labels)


def test_mini_folder(shared_data):
    mini = shared_data / "voc2007" / "mini"
    root = voc.find_voc_root(mini)
    assert root.name == "VOC2007" and root.parent.name == "VOCdevkit"
    # The same root is found from the VOCdevkit folder and from the VOC2007 folder itself.
    assert voc.find_voc_root(mini / "VOCdevkit") == root == voc.find_voc_root(root)
    test = voc.load_voc_split(root, "test")
    assert len(test.ids) == 13 and all(p.is_file() for p in test.image_paths)
    assert voc.load_voc_split(root, "train").ids == []
    tv = voc.load_voc_split(root, "trainval")
    assert tv.ids == ["000005"] and tv.labels.shape == (1, 20)
    assert tv.labels[0, tv.classes.index("chair")] == 1  # 000005 shows chairs
    assert (root / "JPEGImages" / "000001.jpg").stat().st_size == 8192  # the truncated real file is listed
    assert "000001" in test.ids


def _copy_main(shared_data, tmp_path):
    src = shared_data / "voc2007" / "mini" / "VOCdevkit"
    dst = tmp_path / "VOC2007" / "VOCdevkit"
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst / "VOC2007"


def test_data_folder_layout_and_errors(shared_data, tmp_path):
    root = _copy_main(shared_data, tmp_path)
    assert voc.find_voc_root(tmp_path) == root.absolute()  # the parent 'data' folder
    assert voc.find_voc_root(tmp_path / "VOC2007") == root.absolute()
    main = root / "ImageSets" / "Main"

    with (main / "dog_test.txt").open("a") as fh:
        fh.write("000099 maybe\n")
    with pytest.raises(DataError, match="dog_test.txt:14"):
        voc.load_voc_split(root, "test")

    (main / "dog_test.txt").write_text("000001 -1\n")
    with pytest.raises(DataError, match=r"dog_test\.txt: image id 000002"):
        voc.load_voc_split(root, "test")

    (main / "dog_test.txt").unlink()
    with pytest.raises(DataError, match="dog_test.txt: label file not found"):
        voc.load_voc_split(root, "test")
    with pytest.raises(DataError, match="unknown VOC split"):
        voc.load_voc_split(root, "testing")


def test_missing_folder_message(tmp_path):
    with pytest.raises(DataError) as err:
        voc.find_voc_root(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "download.py voc2007" in str(err.value)
    with pytest.raises(UserError, match="no ImageSets/Main"):
        voc.find_voc_root(tmp_path)


def test_ids_leaving_jpegimages_are_refused_and_counted(shared_data, tmp_path):
    """List-file ids like '../../x', an absolute path or a symlink out of JPEGImages/: dropped, counted, not followed."""
    from texttopicnet.core.paths import OUTSIDE

    root = _copy_main(shared_data, tmp_path)
    main = root / "ImageSets" / "Main"
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    (root / "JPEGImages" / "linkout.jpg").symlink_to(secret)
    bad = ["../../../../secret", str(tmp_path / "secret"), "linkout"]
    before = voc.load_voc_split(root, "test")
    with (main / "test.txt").open("a") as fh:
        fh.write("".join(f"{i}\n" for i in bad))
    s = voc.load_voc_split(root, "test")  # the class files need no labels for refused ids
    assert s.ids == before.ids and s.refused == {OUTSIDE: 3} and s.refused_ids == bad
    np.testing.assert_array_equal(s.labels, before.labels)
    assert all(p.parent == root.absolute() / "JPEGImages" for p in s.image_paths)
    assert voc.load_voc_split(root, "val").refused == {}
    # the release's labels for the same split stay aligned with the kept ids
    assert voc.load_release_labels(root, s).shape == s.labels.shape

"""core.paths: the containment rule, checked against os.path.commonpath on real files and symlinks."""

import os

from texttopicnet.core.paths import OUTSIDE, inside, is_inside


def _reference(root, rel):
    # the plain rule: resolve everything, then the common path must be the root itself
    target = os.path.realpath(os.path.join(root, rel))
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, target]) == real_root


def test_inside_agrees_with_commonpath(tmp_path):
    root = tmp_path / "collection"
    (root / "text" / "en").mkdir(parents=True)
    (root / "text" / "en" / "a.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("s")
    (root / "escape").symlink_to(tmp_path)                  # a link out of the root
    (root / "text" / "alias").symlink_to(root / "text" / "en")  # a link that stays inside
    cases = ["text/en/a.txt", "text/../text/en/a.txt", "../secret.txt", "../../etc/passwd",
             "escape/secret.txt", "text/alias/a.txt", "text\\en\\a.txt", "missing/file.txt",
             str(tmp_path / "secret.txt"), str(root / "text" / "en" / "a.txt"), "collection/../x", "."]
    for rel in cases:
        expected = _reference(root, rel.replace("\\", "/"))
        got = inside(root, rel)
        assert (got is not None) == expected, rel
        if got is not None:
            assert is_inside(root, got)


def test_prefix_sibling_is_outside(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data2").mkdir()
    assert inside(tmp_path / "data", "../data2/x") is None
    assert not is_inside(tmp_path / "data", tmp_path / "data2" / "x")
    assert inside(tmp_path / "data", "nul\x00byte") is None
    assert OUTSIDE == "outside_collection"

"""Safe archive extraction (texttopicnet.data.archives): hostile tar and zip members are refused and counted.

The archives are written with tarfile and zipfile; what may and may not reach the disk is
judged independently of the extractor by walking the whole temporary folder afterwards.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections import Counter

import pytest

from texttopicnet.core.errors import DataError
from texttopicnet.data import archives


def _files_under(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name as given ("../x" included)
    return buf.getvalue()


def _hostile_tar() -> bytes:
    """Members that must not reach outside the extraction folder, next to harmless ones."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name, kind=tarfile.REGTYPE, link="", data=b"x"):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("ok.txt", data=b"fine")
        add("../escaped.txt")                                  # outside_collection
        add("passwd", tarfile.SYMTYPE, "/etc/passwd")          # link_outside (absolute)
        add("up", tarfile.SYMTYPE, "../..")                    # link_outside
        add("hard", tarfile.LNKTYPE, "../outside.txt")         # link_outside (hard link)
        add("sub", tarfile.SYMTYPE, "..")                      # link_outside ...
        add("sub/escaped2.txt", data=b"lands in a real sub/ folder")  # ... so this stays inside
        add("here", tarfile.SYMTYPE, ".")                      # a link inside: kept
        add("here/../../escaped3.txt")                         # outside_collection, through that link
        add("dev", tarfile.CHRTYPE)                            # special_file
        add("/etc/abs.txt", data=b"absolute")                  # stripped to etc/abs.txt by the data filter
    return buf.getvalue()


def test_hostile_tar_members_are_refused_and_counted(tmp_path):
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_hostile_tar())
    into = tmp_path / "into"
    refused = Counter()
    assert archives.extract(evil, into, refused, quiet=True) == 4  # ok.txt, sub/escaped2.txt, here, etc/abs.txt
    assert refused == {"outside_collection": 2, "link_outside": 4, "special_file": 1}
    assert _files_under(tmp_path) == {"evil.tar", "into/ok.txt", "into/sub/escaped2.txt", "into/etc/abs.txt"}
    assert (into / "ok.txt").read_bytes() == b"fine" and not (into / "sub").is_symlink()
    real_into = os.path.realpath(into)
    for dirpath, dirs, files in os.walk(into):  # every link that was kept resolves inside
        for name in dirs + files:
            real = os.path.realpath(os.path.join(dirpath, name))
            assert real == real_into or real.startswith(real_into + os.sep), name


def test_zip_members_outside_the_folder_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    into = tmp_path / "into"
    into.mkdir()
    (into / "link").symlink_to(outside)  # already on disk (e.g. from an earlier archive of the dataset)
    evil = tmp_path / "evil.zip"
    evil.write_bytes(_zip({"ok/a.txt": b"fine", "../z1.txt": b"x", "a/../../z2.txt": b"x", "/abs.txt": b"x",
                           "link/z3.txt": b"x", "dir/": b""}))
    refused = Counter()
    assert archives.extract(evil, into, refused, quiet=True) == 1
    assert refused == {"outside_collection": 4}
    assert _files_under(tmp_path) == {"evil.zip", "into/ok/a.txt"} and (into / "dir").is_dir()
    assert list(outside.iterdir()) == []


def test_damaged_and_unknown_archives_are_data_errors(tmp_path):
    (tmp_path / "a.zip").write_bytes(_zip({"x.txt": b"x" * 1000})[:-30])
    (tmp_path / "b.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "c.rar").write_bytes(b"Rar!")
    for name, why in (("a.zip", "damaged"), ("b.tar.gz", "damaged"), ("c.rar", "not an archive kind")):
        with pytest.raises(DataError, match=why):
            archives.extract(tmp_path / name, tmp_path / "into", Counter(), quiet=True)

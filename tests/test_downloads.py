"""Dataset downloads against a local HTTP server on 127.0.0.1 (never the internet).

The server supports Range and If-Range requests and can drop the connection part-way
through a file, so resume, retries, checksum mismatch, mirror fallback, truncated and
hostile archives are all exercised through the real code path (pooch with our resuming
downloader, requests, tarfile's data filter, zipfile, the layout checks, the stage readers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import load_script
from PIL import Image
from test_archives import _files_under, _zip

from texttopicnet.core import cli, provenance
from texttopicnet.core.errors import DataError
from texttopicnet.data import downloads


class LocalServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 with Range/If-Range support; can cut a response short.

    ``drop[name] = n`` makes the next response for ``name`` stop after ``n`` body
    bytes and close the connection (one-shot). ``log`` records (name, Range header,
    body bytes sent); ``headers`` the request headers of every GET. The ETag is the
    body's md5, so a changed file has a new one (RFC 9110: a Range request whose
    If-Range does not match is answered with the whole file).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop: dict[str, int] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                body = server.files.get(name)
                server.headers.append(dict(self.headers))
                if body is None:
                    self.send_error(404)
                    server.log.append((name, None, 0))
                    return
                rng = self.headers.get("Range")
                etag = '"' + hashlib.md5(body).hexdigest() + '"'
                start = 0
                if rng and self.headers.get("If-Range", etag) == etag:
                    m = re.fullmatch(r"bytes=(\d+)-", rng)
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
                self.end_headers()
                payload = body[start:]
                cut = server.drop.pop(name, None)
                if cut is not None:
                    payload = payload[:cut]
                sent = 0
                try:
                    for i in range(0, len(payload), 1 << 14):
                        self.wfile.write(payload[i:i + (1 << 14)])
                        sent += len(payload[i:i + (1 << 14)])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client closed early
                server.log.append((name, rng, sent))
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    with LocalServer() as s:
        yield s


# ------------------------------------------------------------------ small archives

def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (seed * 40 % 256, 10, 200)).save(buf, "JPEG")
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def voc_archives() -> tuple[bytes, bytes]:
    """Two tars shaped like VOCtrainval/VOCtest: VOCdevkit/VOC2007/... for 3 + 2 images."""
    def part(split, ids):
        base = "VOCdevkit/VOC2007/"
        m = {base + f"JPEGImages/{i}.jpg": _jpeg(int(i)) for i in ids}
        m.update({base + f"Annotations/{i}.xml": b"<annotation/>" for i in ids})
        m[base + f"ImageSets/Main/{split}.txt"] = "".join(f"{i}\r\n" for i in ids).encode()
        for cls in ("cat", "dog"):
            m[base + f"ImageSets/Main/{cls}_{split}.txt"] = "".join(
                f"{i} {1 if int(i) % 2 else -1}\r\n" for i in ids).encode()
        return _tar(m)
    return part("trainval", ["000001", "000002", "000003"]), part("test", ["000004", "000005"])


def wiki_archive(extra: dict[str, bytes] | None = None) -> bytes:
    top = "wikipedia_dataset/"
    m = {top + "trainset_txt_img_cat.list": b"t1\timgA\t1\nt2\timgB\t2\n",
         top + "testset_txt_img_cat.list": b"t3\timgC\t1\n",
         top + "categories.list": b"art\nbiology\n"}
    for t in ("t1", "t2", "t3"):
        m[top + f"texts/{t}.xml"] = f"<document id='{t}'><text>words of {t}</text></document>".encode()
    m[top + "images/art/imgA.jpg"] = _jpeg(1)
    m[top + "images/biology/imgB.jpg"] = _jpeg(2)
    m[top + "images/art/imgC.jpg"] = _jpeg(3)
    m.update(extra or {})
    return _tar(m, "w:gz")


def big_wiki_archive(seed: int = 0) -> tuple[bytes, bytes]:
    # Incompressible padding: many of the downloader's 64 KiB reads, so a transfer cut at
    # 1.2 MB leaves whole chunks in the .part file (the chunk being read when the connection
    # drops is lost, as with any HTTP client reading fixed-size blocks).
    padding = random.Random(seed).randbytes(1_600_000)
    return wiki_archive({"wikipedia_dataset/padding.bin": padding}), padding


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def test_voc_download_with_mirror_fallback_and_readers(server, tmp_path):
    trainval, test = voc_archives()
    server.files.update({"voc/VOCtrainval_06-Nov-2007.tar": trainval, "voc/VOCtest_06-Nov-2007.tar": test})
    spec = dataclasses.replace(downloads.DATASETS["voc2007"], files=(
        downloads.RemoteFile("VOCtrainval_06-Nov-2007.tar", _md5(trainval)),
        downloads.RemoteFile("VOCtest_06-Nov-2007.tar", _md5(test))))
    # First mirror answers 404: the second one must be used.
    result = downloads.install(spec, tmp_path, mirrors=[server.url + "gone", server.url + "voc"], quiet=True)
    voc = tmp_path / "VOC2007" / "VOCdevkit" / "VOC2007"
    assert result.target == tmp_path / "VOC2007" and not result.skipped and result.refused == {}
    assert sorted(p.name for p in (voc / "JPEGImages").iterdir()) == [f"00000{i}.jpg" for i in range(1, 6)]
    assert (voc / "JPEGImages" / "000004.jpg").read_bytes() == _jpeg(4)
    assert ("gone/VOCtrainval_06-Nov-2007.tar", None, 0) in server.log
    assert (tmp_path / "VOC2007" / downloads.MARKER).is_file()
    assert not list(tmp_path.glob(".VOC2007.*"))
    # Only the verified archives stay in the cache: no .part, no validator, no pooch temporary file.
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "VOCtest_06-Nov-2007.tar", "VOCtrainval_06-Nov-2007.tar"]
    assert all(h.get("User-Agent", "").startswith("texttopicnet/") for h in server.headers)
    script = load_script("data/download.py")
    summary = script.confirm_with_readers("voc2007", result.target)
    assert "trainval 3 images x 2 classes" in summary and "test 2 images" in summary
    # Idempotent: nothing is fetched again.
    n = len(server.log)
    assert downloads.install(spec, tmp_path, mirrors=[server.url + "voc"], quiet=True).skipped
    assert len(server.log) == n
    # --force extracts again from the cached archives (their md5 still matches): still no request.
    again = downloads.install(spec, tmp_path, mirrors=[server.url + "voc"], force=True, quiet=True)
    assert not again.skipped and len(server.log) == n and (voc / "JPEGImages" / "000005.jpg").is_file()


def test_wikipedia_cli_success_sidecar_and_skip(server, tmp_path, capsys):
    archive = wiki_archive()
    server.files["wiki_top10cats.tar.gz"] = archive
    script = load_script("data/download.py")
    assert script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet"]) == 0
    root = tmp_path / "Wikipedia"
    assert (root / "texts" / "t3.xml").is_file() and (root / "images" / "art" / "imgC.jpg").is_file()
    sidecar = tmp_path / "downloads" / "wiki_top10cats.tar.gz.sha256"
    assert sidecar.read_text().split()[0] == hashlib.sha256(archive).hexdigest()
    out = capsys.readouterr().out
    assert "3 pairs, 3 with their image" in out
    n = len(server.log)
    assert script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet"]) == 0
    assert "already done" in capsys.readouterr().out and len(server.log) == n


def test_resume_after_dropped_connection(server, tmp_path, monkeypatch):
    archive, padding = big_wiki_archive()
    server.files["wiki_top10cats.tar.gz"] = archive
    server.drop["wiki_top10cats.tar.gz"] = 1_200_000
    monkeypatch.setenv("TEXTTOPICNET_WIKIPEDIA_MIRRORS", server.url)  # the env override, no --mirror
    script = load_script("data/download.py")
    with pytest.raises(DataError, match="rerun to resume"):
        script.main(["wikipedia", "--root", str(tmp_path), "--retries", "0", "--quiet"])
    assert not (tmp_path / "Wikipedia").exists() and not list(tmp_path.glob(".Wikipedia.*"))
    parts = list((tmp_path / "downloads").glob("*.part"))
    assert len(parts) == 1
    kept = parts[0].stat().st_size
    assert 0 < kept <= 1_200_000 and parts[0].read_bytes() == archive[:kept]
    assert not (tmp_path / "downloads" / "wiki_top10cats.tar.gz").exists()  # nothing under the final name
    assert script.main(["wikipedia", "--root", str(tmp_path), "--retries", "0", "--quiet"]) == 0
    # The second run asked only for the missing tail, guarded by the first response's ETag.
    assert ("wiki_top10cats.tar.gz", f"bytes={kept}-", len(archive) - kept) in server.log
    assert server.headers[-1]["If-Range"] == '"' + hashlib.md5(archive).hexdigest() + '"'
    assert (tmp_path / "downloads" / "wiki_top10cats.tar.gz").read_bytes() == archive
    assert (tmp_path / "Wikipedia" / "padding.bin").read_bytes() == padding
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == [
        "wiki_top10cats.tar.gz", "wiki_top10cats.tar.gz.sha256"]


def test_changed_file_on_the_server_is_not_spliced(server, tmp_path):
    """A part from an older version of the file is not continued with the new one's tail."""
    old, _ = big_wiki_archive(seed=0)
    new, new_padding = big_wiki_archive(seed=1)
    server.files["wiki_top10cats.tar.gz"] = old
    server.drop["wiki_top10cats.tar.gz"] = 1_200_000
    spec = downloads.DATASETS["wikipedia"]
    with pytest.raises(DataError, match="rerun to resume"):
        downloads.install(spec, tmp_path, mirrors=[server.url], retries=0, quiet=True)
    kept = next((tmp_path / "downloads").glob("*.part")).stat().st_size
    server.files["wiki_top10cats.tar.gz"] = new
    downloads.install(spec, tmp_path, mirrors=[server.url], retries=0, quiet=True)
    # The client asked for the tail, the server saw a different ETag and sent the whole new file.
    assert server.log[-1] == ("wiki_top10cats.tar.gz", f"bytes={kept}-", len(new))
    assert (tmp_path / "downloads" / "wiki_top10cats.tar.gz").read_bytes() == new
    assert (tmp_path / "Wikipedia" / "padding.bin").read_bytes() == new_padding


def test_broken_transfer_is_retried_in_the_same_run(server, tmp_path):
    archive, _ = big_wiki_archive()
    server.files["w/wiki_top10cats.tar.gz"] = archive
    server.drop["w/wiki_top10cats.tar.gz"] = 1_200_000
    spec = downloads.DATASETS["wikipedia"]
    downloads.install(spec, tmp_path, mirrors=[server.url + "w"], retries=2, quiet=True)
    ranges = [rng for _, rng, _ in server.log if rng]
    assert len(ranges) == 1 and 0 < int(ranges[0][6:-1]) <= 1_200_000
    # Two requests in all: the one cut at 1.2 MB, then only the tail after the bytes kept.
    assert [sent for _, _, sent in server.log] == [1_200_000, len(archive) - int(ranges[0][6:-1])]
    assert (tmp_path / "downloads" / "wiki_top10cats.tar.gz").read_bytes() == archive


def test_checksum_mismatch_fails_cleanly(server, tmp_path, capsys):
    trainval, test = voc_archives()  # served under the official names: the published md5 cannot match
    server.files.update({"VOCtrainval_06-Nov-2007.tar": trainval, "VOCtest_06-Nov-2007.tar": test})
    script = load_script("data/download.py")
    with pytest.raises(SystemExit) as exc:
        cli.run_main(script.main, ["voc2007", "--root", str(tmp_path), "--mirror", server.url, "--quiet",
                                   "--retries", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and "c52e279531787c972589f7e41ab4ae64" in err[0]
    assert hashlib.md5(trainval).hexdigest() in err[0]  # what arrived, so the user can compare
    # pooch retried the mismatching file once (it may have been damaged on the way), then gave up.
    assert [name for name, _, _ in server.log] == ["VOCtrainval_06-Nov-2007.tar"] * 2
    assert not (tmp_path / "VOC2007").exists() and not list(tmp_path.glob(".VOC2007.*"))
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == []  # nothing unverified kept


def test_recorded_sha256_is_checked_on_reuse(server, tmp_path):
    """No published hash: the sha256 recorded at the first fetch guards every later use of the file."""
    archive = wiki_archive()
    server.files["wiki_top10cats.tar.gz"] = archive
    remote, cache = downloads.RemoteFile("wiki_top10cats.tar.gz"), tmp_path / "downloads"
    path = downloads.fetch(remote, cache, [server.url], quiet=True)
    assert (cache / "wiki_top10cats.tar.gz.sha256").read_text().split()[0] == hashlib.sha256(archive).hexdigest()
    n = len(server.log)
    assert downloads.fetch(remote, cache, [server.url], quiet=True) == path and len(server.log) == n
    path.write_bytes(archive[:-10] + b"0123456789")  # damaged on disk: fetched again, the same bytes arrive
    downloads.fetch(remote, cache, [server.url], quiet=True)
    assert path.read_bytes() == archive and len(server.log) == n + 1
    server.files["wiki_top10cats.tar.gz"] = wiki_archive({"wikipedia_dataset/new.txt": b"changed"})
    path.write_bytes(b"damaged")
    with pytest.raises(DataError, match=r"checksum mismatch.*wiki_top10cats\.tar\.gz\.sha256: delete it"):
        downloads.fetch(remote, cache, [server.url], retries=0, quiet=True)
    assert path.read_bytes() == b"damaged"  # pooch replaces a file only with one that matches


def test_force_fetch_keeps_the_old_file_when_the_new_one_fails(server, tmp_path):
    remote, cache = downloads.RemoteFile("model.bin"), tmp_path / "pretrained"
    server.files["model.bin"] = b"old weights" * 100
    path = downloads.fetch(remote, cache, [server.url], quiet=True)
    server.files["model.bin"] = b"<!DOCTYPE html><html>quota exceeded</html>"
    with pytest.raises(DataError, match="web page instead of the file"):
        downloads.fetch(remote, cache, [server.url], force=True, quiet=True)
    assert path.read_bytes() == b"old weights" * 100
    assert sorted(p.name for p in cache.iterdir()) == ["model.bin", "model.bin.sha256"]
    server.files["model.bin"] = b"new weights" * 100
    downloads.fetch(remote, cache, [server.url], force=True, quiet=True)
    assert path.read_bytes() == b"new weights" * 100
    assert (cache / "model.bin.sha256").read_text().split()[0] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in cache.iterdir()) == ["model.bin", "model.bin.sha256"]


def test_truncated_archive_leaves_no_tree(server, tmp_path):
    archive = wiki_archive()
    server.files["wiki_top10cats.tar.gz"] = archive[: len(archive) * 2 // 3]  # complete transfer, broken gzip
    script = load_script("data/download.py")
    with pytest.raises(DataError, match="cannot be extracted.*rerun to download it again"):
        script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet"])
    assert not (tmp_path / "Wikipedia").exists() and not list(tmp_path.glob(".Wikipedia.*"))
    assert not (tmp_path / "downloads" / "wiki_top10cats.tar.gz").exists()
    # The server now has the whole file: a rerun succeeds.
    server.files["wiki_top10cats.tar.gz"] = archive
    assert script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet"]) == 0


def test_hostile_members_in_a_dataset_archive_are_reported_not_raised(server, tmp_path, capsys):
    with tarfile.open(fileobj=io.BytesIO(wiki_archive()), mode="r:gz") as src:
        members = {m.name: src.extractfile(m).read() for m in src if m.isfile()}
    members["wikipedia_dataset/../../../evil.txt"] = b"gotcha"
    server.files["wiki_top10cats.tar.gz"] = _tar(members, "w:gz")
    script = load_script("data/download.py")
    assert script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet"]) == 0
    assert "refused 1 archive member(s)" in capsys.readouterr().out
    assert provenance.read_meta(tmp_path / "Wikipedia")["refused"] == {"outside_collection": 1}
    assert not (tmp_path.parent / "evil.txt").exists() and not list(tmp_path.rglob("evil.txt"))


def test_a_new_dataset_is_a_declarative_entry(server, tmp_path):
    """A zip of photos plus a tar.gz of lists unpacked into gt/: no code beyond the DatasetSpec."""
    photos = _zip({"photos/a.jpg": _jpeg(1), "photos/b.jpg": _jpeg(2), "../evil.txt": b"x"})
    gt = _tar({"good.txt": b"a\nb\n"}, "w:gz")
    server.files.update({"toy/photos.zip": photos, "toy/gt.tar.gz": gt})
    spec = downloads.DatasetSpec(
        key="toy", folder="Toy", mirrors=(server.url + "toy",), top="photos",
        files=(downloads.RemoteFile("photos.zip", "sha256:" + hashlib.sha256(photos).hexdigest()),
               downloads.RemoteFile("gt.tar.gz", into="gt")),
        required=("photos", "gt"), id_lists=(("gt/good.txt", "photos"),))
    assert spec.env_var == "TEXTTOPICNET_TOY_MIRRORS"
    data = tmp_path / "data"
    result = downloads.install(spec, data, quiet=True)
    assert result.refused == {"outside_collection": 1} and result.members == 3
    assert _files_under(data / "Toy") == {"photos/a.jpg", "photos/b.jpg", "gt/good.txt", "meta.json"}
    assert not (tmp_path / "evil.txt").exists() and not (data / "evil.txt").exists()
    assert downloads.marker_ok(spec, data / "Toy")
    # A list naming an image the archive lacks: the tree is not put in place.
    server.files["toy/gt.tar.gz"] = _tar({"good.txt": b"a\nc\n"}, "w:gz")
    with pytest.raises(DataError, match=r"1 of the 2 ids in good.txt have no file in photos/ \(first: c\)"):
        downloads.install(spec, tmp_path / "data2", quiet=True)
    assert not (tmp_path / "data2" / "Toy").exists() and not list((tmp_path / "data2").glob(".Toy.*"))


def test_incomplete_existing_folder_is_not_trusted(server, tmp_path):
    (tmp_path / "Wikipedia" / "texts").mkdir(parents=True)
    server.files["wiki_top10cats.tar.gz"] = wiki_archive()
    script = load_script("data/download.py")
    with pytest.raises(DataError, match="exists but is incomplete.*--force"):
        script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet"])
    assert script.main(["wikipedia", "--root", str(tmp_path), "--mirror", server.url, "--quiet", "--force"]) == 0
    assert (tmp_path / "Wikipedia" / "testset_txt_img_cat.list").is_file()


def test_imageclef_instructions_and_layout_check(tmp_path, capsys):
    script = load_script("data/download.py")
    with pytest.raises(DataError, match="ImageCLEF Wikipedia collection not found"):
        script.main(["imageclef", "--root", str(tmp_path)])
    assert "http://www.imageclef.org/wikidata" in capsys.readouterr().out
    coll = tmp_path / "ImageCLEF_Wikipedia"
    for sub, stem, article in (("0", "1", "text/en/1/100"), ("0", "2", "text/en/1/missing"), ("1", "3", None)):
        (coll / "images" / sub).mkdir(parents=True, exist_ok=True)
        (coll / "metadata" / sub).mkdir(parents=True, exist_ok=True)
        (coll / "images" / sub / f"{stem}.jpg").write_bytes(_jpeg(int(stem)))
        caption = f'<caption article="{article}">c</caption>' if article else "<caption>c</caption>"
        (coll / "metadata" / sub / f"{stem}.xml").write_text(
            f'<image><name xml:lang="en">{caption}</name></image>', encoding="utf-8")
    (coll / "text" / "en" / "1").mkdir(parents=True)
    (coll / "text" / "en" / "1" / "100").write_text("an article", encoding="utf-8")
    assert script.main(["imageclef", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 images; 1 with an English article on disk" in out
    assert "skipped 1: no_english_article" in out and "skipped 1: article file named" in out


def test_real_voc_sample_through_the_installer(server, tmp_path, shared_data):
    """The real VOC2007 files (CRLF lists, padded labels, a truncated JPEG) packed the way the official tar is."""
    mini = shared_data / "voc2007" / "mini"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(mini / "VOCdevkit", arcname="VOCdevkit")
    archive = buf.getvalue()
    server.files["VOCtrainval_06-Nov-2007.tar"] = archive
    spec = dataclasses.replace(downloads.DATASETS["voc2007"], files=(
        downloads.RemoteFile("VOCtrainval_06-Nov-2007.tar", "md5:" + hashlib.md5(archive).hexdigest()),))
    result = downloads.install(spec, tmp_path, mirrors=[server.url], quiet=True)
    summary = load_script("data/download.py").confirm_with_readers("voc2007", result.target)
    n_test = len((mini / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text().split())
    assert f"test {n_test} images x 20 classes" in summary
    real = mini / "VOCdevkit/VOC2007/JPEGImages/000001.jpg"
    assert (result.target / "VOCdevkit/VOC2007/JPEGImages/000001.jpg").read_bytes() == real.read_bytes()

"""Dataset downloads against a local HTTP server on 127.0.0.1 (never the internet).

The server supports Range requests and can drop the connection part-way through a
file, so resume, checksum mismatch, truncated and hostile archives are all exercised
through the real code path (gdown's downloader, tarfile, the layout checks, the
stage readers).
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

from texttopicnet.core import cli
from texttopicnet.core.errors import DataError
from texttopicnet.data import downloads


class LocalServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 with Range support; can cut a response short.

    ``drop[name] = n`` makes the next response for ``name`` stop after ``n`` body
    bytes and close the connection (one-shot). ``log`` records (name, Range header,
    body bytes sent).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop: dict[str, int] = {}
        self.log: list[tuple[str, str | None, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    server.log.append((name, None, 0))
                    return
                rng = self.headers.get("Range")
                start = 0
                if rng:
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
                self.send_header("ETag", '"' + hashlib.md5(body).hexdigest() + '"')
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
                    pass  # the client closed early (gdown probes before resuming)
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


def big_wiki_archive() -> tuple[bytes, bytes]:
    # Incompressible padding: more than two of gdown's 512 KiB writes, so a transfer cut at
    # 1.2 MB leaves whole chunks in the .part file (the chunk being read when the connection
    # drops is lost, as with any HTTP client reading fixed-size blocks).
    padding = random.Random(0).randbytes(1_600_000)
    return wiki_archive({"wikipedia_dataset/padding.bin": padding}), padding


def test_voc_download_with_mirror_fallback_and_readers(server, tmp_path):
    trainval, test = voc_archives()
    server.files.update({"voc/VOCtrainval_06-Nov-2007.tar": trainval, "voc/VOCtest_06-Nov-2007.tar": test})
    spec = dataclasses.replace(downloads.DATASETS["voc2007"], files=(
        downloads.RemoteFile("VOCtrainval_06-Nov-2007.tar", hashlib.md5(trainval).hexdigest()),
        downloads.RemoteFile("VOCtest_06-Nov-2007.tar", hashlib.md5(test).hexdigest())))
    # First mirror answers 404: the second one must be used.
    result = downloads.install(spec, tmp_path, mirrors=[server.url + "gone", server.url + "voc"], quiet=True)
    voc = tmp_path / "VOC2007" / "VOCdevkit" / "VOC2007"
    assert result.target == tmp_path / "VOC2007" and not result.skipped
    assert sorted(p.name for p in (voc / "JPEGImages").iterdir()) == [f"00000{i}.jpg" for i in range(1, 6)]
    assert (voc / "JPEGImages" / "000004.jpg").read_bytes() == _jpeg(4)
    assert ("gone/VOCtrainval_06-Nov-2007.tar", None, 0) in server.log
    assert (tmp_path / "VOC2007" / downloads.MARKER).is_file()
    assert not list(tmp_path.glob(".VOC2007.*")) and not list((tmp_path / "downloads").glob("*.part"))
    script = load_script("data/download.py")
    summary = script.confirm_with_readers("voc2007", result.target)
    assert "trainval 3 images x 2 classes" in summary and "test 2 images" in summary
    # Idempotent: nothing is fetched again.
    n = len(server.log)
    assert downloads.install(spec, tmp_path, mirrors=[server.url + "voc"], quiet=True).skipped
    assert len(server.log) == n


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
    assert script.main(["wikipedia", "--root", str(tmp_path), "--retries", "0", "--quiet"]) == 0
    # The second run asked only for the missing tail.
    assert ("wiki_top10cats.tar.gz", f"bytes={kept}-", len(archive) - kept) in server.log
    assert (tmp_path / "downloads" / "wiki_top10cats.tar.gz").read_bytes() == archive
    assert (tmp_path / "Wikipedia" / "padding.bin").read_bytes() == padding


def test_broken_transfer_is_retried_in_the_same_run(server, tmp_path):
    archive, _ = big_wiki_archive()
    server.files["w/wiki_top10cats.tar.gz"] = archive
    server.drop["w/wiki_top10cats.tar.gz"] = 1_200_000
    spec = downloads.DATASETS["wikipedia"]
    downloads.install(spec, tmp_path, mirrors=[server.url + "w"], retries=2, quiet=True)
    ranges = [rng for _, rng, _ in server.log if rng]
    assert len(ranges) == 1 and 0 < int(ranges[0][6:-1]) <= 1_200_000
    assert (tmp_path / "downloads" / "wiki_top10cats.tar.gz").read_bytes() == archive


def test_checksum_mismatch_fails_cleanly(server, tmp_path, capsys):
    trainval, test = voc_archives()  # served under the official names: the published md5 cannot match
    server.files.update({"VOCtrainval_06-Nov-2007.tar": trainval, "VOCtest_06-Nov-2007.tar": test})
    script = load_script("data/download.py")
    with pytest.raises(SystemExit) as exc:
        cli.run_main(script.main, ["voc2007", "--root", str(tmp_path), "--mirror", server.url, "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checksum mismatch" in err[0] and "c52e279531787c972589f7e41ab4ae64" in err[0]
    assert not (tmp_path / "VOC2007").exists() and not list(tmp_path.glob(".VOC2007.*"))
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == []  # nothing unverified kept


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


def test_path_traversal_is_rejected(tmp_path):
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_tar({"ok.txt": b"fine", "../escaped.txt": b"gotcha"}))
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(DataError, match="damaged or unsafe"):
        downloads.safe_extract(evil, into, quiet=True)
    assert not (tmp_path / "escaped.txt").exists()
    link = tmp_path / "link.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    link.write_bytes(buf.getvalue())
    with pytest.raises(DataError):
        downloads.safe_extract(link, into, quiet=True)
    assert not (into / "passwd").is_symlink()


def test_fallback_member_check_for_pythons_without_the_data_filter(tmp_path):
    def info(name, kind=tarfile.REGTYPE, link=""):
        m = tarfile.TarInfo(name)
        m.type, m.linkname = kind, link
        return m

    downloads._check_member(info("a/b.txt"), tmp_path)
    downloads._check_member(info("a/link", tarfile.SYMTYPE, "../c.txt"), tmp_path)  # stays inside
    for bad in (info("../x"), info("/etc/x"), info("a/../../x"), info("l", tarfile.SYMTYPE, "/etc/passwd"),
                info("l", tarfile.SYMTYPE, "../../outside"), info("h", tarfile.LNKTYPE, "../outside"),
                info("dev", tarfile.CHRTYPE)):
        with pytest.raises(tarfile.TarError):
            downloads._check_member(bad, tmp_path)


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
        downloads.RemoteFile("VOCtrainval_06-Nov-2007.tar", hashlib.md5(archive).hexdigest()),))
    result = downloads.install(spec, tmp_path, mirrors=[server.url], quiet=True)
    summary = load_script("data/download.py").confirm_with_readers("voc2007", result.target)
    n_test = len((mini / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text().split())
    assert f"test {n_test} images x 20 classes" in summary
    real = mini / "VOCdevkit/VOC2007/JPEGImages/000001.jpg"
    assert (result.target / "VOCdevkit/VOC2007/JPEGImages/000001.jpg").read_bytes() == real.read_bytes()

"""The search server's JSON API (texttopicnet.search.server) through fastapi's TestClient (httpx):
every endpoint, and bad requests each answered with the right status by a server that stays healthy."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import test_search_helpers as h
from fastapi.testclient import TestClient
from scipy.stats import entropy

from texttopicnet.search.engine import SearchEngine
from texttopicnet.search.query import query_vector
from texttopicnet.search.server import create_app

UPLOAD_LIMIT = 256 << 10


@pytest.fixture(scope="module")
def engine():
    return SearchEngine.open(h.tiny_index())


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine, max_upload_bytes=UPLOAD_LIMIT)) as c:
        yield c


def png_bytes(path) -> bytes:
    return path.read_bytes()


def bomb_png(width=100_000, height=100_000) -> bytes:
    """A PNG whose header claims width x height pixels (10 gigapixels) with one tiny data chunk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def assert_healthy(client, engine):
    for path in ("/api/health", "/health"):
        r = client.get(path)
        assert r.status_code == 200 and r.json() == {"status": "ok", "images": len(engine.index)}
    r = client.get("/api/search", params={"q": "sea", "k": 3})
    assert r.status_code == 200 and len(r.json()["results"]) == 3


def test_page_and_info(client, engine):
    r = client.get("/")
    assert r.status_code == 200 and "TextTopicNet search" in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "http://" not in r.text and "https://" not in r.text  # nothing external
    info = client.get("/api/info").json()
    assert info["images"] == 8 and info["similarity"] == "kl" and info["space"]["name"] == "lda"
    assert set(info["example_words"]) <= set(engine.space.vocabulary())
    assert client.get("/favicon.ico").status_code == 204


def slow_ranking(engine, text, images=None):
    rows = np.asarray(engine.index.embeddings, dtype=np.float64)
    imgs = {i: rows[engine.index.row_of[i]] for i in engine.index.ids}
    imgs.update(images or {})
    q = query_vector(engine.space, text, imgs).astype(np.float64)
    d = [(entropy(q, np.maximum(x, 1e-10) / np.maximum(x, 1e-10).sum()), i) for i, x in enumerate(rows)]
    return [engine.index.ids[i] for _, i in sorted(d)]


@pytest.mark.parametrize("text", ["sea", "2*whale - tower", "tree + [img:3]", "[img:4] - [img:5] + 0.5*owl"])
def test_search_ranks_like_a_slow_loop(client, engine, text):
    r = client.get("/api/search", params={"q": text, "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["id"] for x in body["results"]] == slow_ranking(engine, text)
    assert [x["rank"] for x in body["results"]] == list(range(1, 9))
    assert body["query"] == text and all(t["known"] for t in body["terms"])
    post = client.post("/api/search", json={"q": text, "k": 8}).json()
    assert [x["id"] for x in post["results"]] == [x["id"] for x in body["results"]]


def test_paging(client):
    full = [x["id"] for x in client.get("/api/search", params={"q": "sea", "k": 8}).json()["results"]]
    page = [x["id"] for x in client.get("/api/search", params={"q": "sea", "k": 3, "offset": 3}).json()["results"]]
    assert page == full[3:6]


def test_image_by_id(client, engine):
    for image_id in engine.index.ids[:2]:
        r = client.get(f"/api/image/{image_id}")
        assert r.status_code == 200 and r.content == engine.index.image_path(image_id).read_bytes()
        assert r.headers["content-type"] == "image/png"


def test_upload_plus_words(client, engine):
    path = engine.index.image_path(engine.index.ids[0])
    r = client.post("/api/search/image", files={"file": ("x.png", png_bytes(path), "image/png")},
                    data={"q": "sea - tree", "k": "8"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(t["kind"], t["value"]) for t in body["terms"]] == [("image", "@upload"), ("word", "sea"), ("word", "tree")]
    upload_row = engine.embed_upload(png_bytes(path))
    np.testing.assert_allclose(upload_row, engine.index.embeddings[0], atol=1e-6)  # same pixels, same row
    assert [x["id"] for x in body["results"]] == slow_ranking(engine, body["query"], {"@upload": upload_row})
    # the upload placed and weighted by the query itself
    r = client.post("/api/search/image", files={"file": ("x.png", png_bytes(path), "image/png")},
                    data={"q": "owl - 2*[img:@upload]"})
    assert r.status_code == 200 and r.json()["terms"][1] == {"weight": -2.0, "kind": "image", "value": "@upload",
                                                              "known": True}


BAD_IMAGE_IDS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
                 "%2Fetc%2Fpasswd", "..%5C..%5Cetc%5Cpasswd", "city/img02.png", "0", "9999", "%00", "@upload"]


@pytest.mark.parametrize("image_id", BAD_IMAGE_IDS)
def test_image_ids_outside_the_index_are_404(client, engine, image_id):
    r = client.get("/api/image/" + image_id)
    assert r.status_code == 404 and b"root:" not in r.content
    assert_healthy(client, engine)


BAD_QUERIES = [("", 400, "empty"), ("   ", 400, "empty"), ("sea +", 400, "syntax"), ("park - park", 400, "cancelled"),
               ("sea + [img:nope]", 404, "unknown_images"), (" ".join(["sea"] * 10_000), 413, "too_long"),
               (" ".join(f"w{i}" for i in range(80)), 413, "too_many_terms")]


@pytest.mark.parametrize("text,status,code", BAD_QUERIES)
def test_bad_queries(client, engine, text, status, code):
    for r in (client.get("/api/search", params={"q": text}), client.post("/api/search", json={"q": text})):
        assert r.status_code == status and r.json()["detail"]["error"] == code, r.text
    assert_healthy(client, engine)


def test_ten_thousand_term_query_in_a_body(client, engine):
    r = client.post("/api/search", json={"q": " + ".join(f"w{i}" for i in range(10_000))})
    assert r.status_code == 413 and r.json()["detail"]["error"] == "too_long"
    assert_healthy(client, engine)


def test_unknown_words_named_with_suggestions(client, engine):
    r = client.get("/api/search", params={"q": "seaa + tree - owll"})
    assert r.status_code == 422
    d = r.json()["detail"]
    assert d["error"] == "unknown_words" and d["words"] == ["seaa", "owll"]
    assert "sea" in d["suggestions"]["seaa"] and "owl" in d["suggestions"]["owll"]
    assert [(t["value"], t["known"]) for t in d["terms"]] == [("seaa", False), ("tree", True), ("owll", False)]
    assert_healthy(client, engine)


@pytest.mark.parametrize("params", [{"q": "sea", "k": 0}, {"q": "sea", "k": 100_000}, {"q": "sea", "offset": -1},
                                    {"q": "sea", "k": "x"}, {}])
def test_bad_parameters_are_422(client, engine, params):
    assert client.get("/api/search", params=params).status_code == 422
    assert_healthy(client, engine)


@pytest.mark.parametrize("name,data,status,code", [
    ("notes.txt", b"hello, this is not an image", 415, "not_an_image"),
    ("empty.png", b"", 415, "not_an_image"),
    ("bomb.png", bomb_png(), 413, "decompression_bomb"),
    ("big.png", b"\x89PNG" + b"\0" * (UPLOAD_LIMIT + 10), 413, "too_large"),
    ("huge.png", b"\0" * (UPLOAD_LIMIT + (200 << 10)), 413, "too_large"),
])
def test_bad_uploads(client, engine, name, data, status, code):
    r = client.post("/api/search/image", files={"file": (name, data, "image/png")}, data={"q": "sea"})
    assert r.status_code == status, r.text
    assert r.json()["detail"]["error"] == code
    assert "/tmp" not in r.text  # the message names the upload, not a private file
    assert_healthy(client, engine)


def test_streamed_oversized_upload_is_cut_off(client, engine):
    def body():  # no Content-Length: the limit applies while streaming
        yield (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
               b"Content-Type: image/png\r\n\r\n")
        for _ in range(20):
            yield b"\0" * (64 << 10)
        yield b"\r\n--xyz--\r\n"
    r = client.post("/api/search/image", content=body(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413
    assert_healthy(client, engine)


def test_upload_without_file_and_uploads_disabled(engine):
    with TestClient(create_app(engine, allow_uploads=False)) as c:
        r = c.post("/api/search/image", files={"file": ("a.png", bomb_png(10, 10), "image/png")})
        assert r.status_code == 403
        assert c.post("/api/search/image", data={"q": "sea"}).status_code == 422


def test_timeout_middleware_answers_504():
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from texttopicnet.search.limits import Timeout

    async def slow(_request):
        await asyncio.sleep(5)
        return PlainTextResponse("late")

    async def fast(_request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/slow", slow), Route("/fast", fast)])
    app.add_middleware(Timeout, seconds=0.05)
    with TestClient(app) as c:
        r = c.get("/slow")
        assert r.status_code == 504 and r.json()["detail"]["error"] == "timeout"
        assert c.get("/fast").text == "ok"


def test_with_upload_text():
    from texttopicnet.search.server import with_upload

    assert with_upload("", 1.0) == "[img:@upload]"
    assert with_upload("sea", 2.0) == "2*[img:@upload] + sea"
    assert with_upload("- sea", 1.0) == "[img:@upload] - sea"
    assert with_upload("sea - [img:@upload]", 1.0) == "sea - [img:@upload]"


@pytest.mark.skipif(not __import__("texttopicnet.search.backends", fromlist=["x"]).faiss_available(),
                    reason="faiss is not installed (pip install faiss-cpu)")
def test_faiss_backend_serves_the_same_results(engine):
    other = SearchEngine.open(h.tiny_index(), backend="faiss")
    with TestClient(create_app(other)) as c:
        for text in ("sea", "2*whale - tower + [img:3]"):
            got = c.get("/api/search", params={"q": text, "k": 8}).json()["results"]
            want = engine.search(text, k=8)["results"]
            assert [r["id"] for r in got] == [r["id"] for r in want]
            np.testing.assert_allclose([r["distance"] for r in got], [r["distance"] for r in want], atol=1e-5)

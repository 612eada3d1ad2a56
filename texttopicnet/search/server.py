"""The search server: a FastAPI app over a :class:`~texttopicnet.search.engine.SearchEngine`.

Endpoints (JSON unless said otherwise)::

    GET  /                      the search page (static/index.html: no build step, nothing external)
    GET  /api/health            {"status": "ok", "images": N}  (also /health)
    GET  /api/info              the index: size, space, network, example words and ids
    GET  /api/search?q=&k=&offset=      search by a text query (query.py's language)
    POST /api/search            the same with a JSON body {"q", "k", "offset"} (long queries)
    POST /api/search/image      multipart: file (an image), q (optional words), k, offset, weight:
                                the upload is the term [img:@upload]; where q does not name it,
                                it is added as weight*[img:@upload]
    GET  /api/image/{id}        the image file of an indexed id (nothing else on disk is reachable)

Errors are ``{"detail": {"error": code, "message": ..., ...}}`` with: 400 empty or malformed
query, 404 unknown image id, 413 query/upload too large or decompression bomb, 415 upload
that is not an image, 422 unknown words (``words``, ``suggestions``, ``terms``), undecodable
image or a bad parameter, 504 past the request time limit.

Run it with ``python search/02_serve.py --index runs/demo/search`` (binds 127.0.0.1).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from ..core.errors import UserError
from ..data.images import CORRUPT, DECOMPRESSION_BOMB, UNDECODABLE, ImageReadError
from .engine import MAX_K, MAX_OFFSET, SearchEngine
from .limits import BodyLimit, Headers, Timeout
from .query import IMAGE_OPEN, MAX_QUERY_CHARS, MAX_WEIGHT, QueryError, parse_terms

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD_BYTES = 10 << 20   # 10 MiB: a large phone photo is 3-8 MB
REQUEST_TIMEOUT_S = 30.0      # a search takes milliseconds; an upload's forward pass well under a second
UPLOAD_ID = "@upload"
K_DEFAULT = 24
# The page and its images come from this server only; nothing external can load.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_IMAGE_STATUS = {CORRUPT: (415, "not_an_image"), DECOMPRESSION_BOMB: (413, "decompression_bomb"),
                 UNDECODABLE: (422, "undecodable_image")}


class SearchBody(BaseModel):
    q: str  # no length limit here: parse_query answers 413 above MAX_QUERY_CHARS, BodyLimit bounds the bytes
    k: int = Field(K_DEFAULT, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


def _error(status: int, code: str, message: str, **details) -> JSONResponse:
    return JSONResponse({"detail": {"error": code, "message": message, **details}}, status_code=status)


def with_upload(q: str | None, weight: float) -> str:
    """The query text for an image search: ``q`` as is when it names the upload, else upload term + q."""
    q = (q or "").strip()
    named = bool(q) and any(k == "image" and v == UPLOAD_ID for _, k, v in parse_terms(q))
    if named:
        return q
    term = f"{weight:g}*{IMAGE_OPEN}{UPLOAD_ID}]" if weight != 1 else f"{IMAGE_OPEN}{UPLOAD_ID}]"
    if not q:
        return term
    return f"{term} {q}" if q[0] in "+-" else f"{term} + {q}"


def create_app(engine: SearchEngine, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               timeout_s: float = REQUEST_TIMEOUT_S, allow_uploads: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        yield
        engine.close()  # stop the batcher thread

    app = FastAPI(title="TextTopicNet search", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine = engine
    page = (STATIC / "index.html").read_bytes()

    @app.exception_handler(QueryError)
    async def query_error(_request: Request, exc: QueryError):
        return JSONResponse({"detail": exc.as_dict()}, status_code=exc.status)

    @app.exception_handler(UserError)
    async def user_error(_request: Request, exc: UserError):
        return _error(400, "bad_request", str(exc))

    @app.get("/", include_in_schema=False)
    def index_page():
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/api/health")
    @app.get("/health", include_in_schema=False)
    def health():
        return {"status": "ok", "images": len(engine.index)}

    @app.get("/api/info")
    def info():
        return {**engine.describe(), "limits": {"query_chars": MAX_QUERY_CHARS, "k": MAX_K, "offset": MAX_OFFSET,
                                                "upload_bytes": max_upload_bytes, "weight": MAX_WEIGHT,
                                                "timeout_s": timeout_s}, "uploads": allow_uploads}

    # Searches are async: parsing and combining take microseconds in the event loop, the ranking
    # runs in the engine's batcher thread together with the other queries waiting (engine.Batcher).
    @app.get("/api/search")
    async def search_get(q: str = Query(...), k: int = Query(K_DEFAULT, ge=1, le=MAX_K),
                         offset: int = Query(0, ge=0, le=MAX_OFFSET)):
        return {"query": q, **await engine.search_async(q, k=k, offset=offset)}

    @app.post("/api/search")
    async def search_post(body: SearchBody):
        return {"query": body.q, **await engine.search_async(body.q, k=body.k, offset=body.offset)}

    @app.post("/api/search/image")
    async def search_image(file: UploadFile = File(...), q: str = Form(""),
                           k: int = Form(K_DEFAULT, ge=1, le=MAX_K), offset: int = Form(0, ge=0, le=MAX_OFFSET),
                           weight: float = Form(1.0, gt=0, le=MAX_WEIGHT)):
        if not allow_uploads:
            return _error(403, "uploads_disabled", "this server does not accept uploads (--no-uploads)")
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return _error(413, "too_large", f"upload larger than {max_upload_bytes:,} bytes", limit=max_upload_bytes)
        if not data:
            return _error(415, "not_an_image", "the upload is empty")
        text = with_upload(q, weight)
        try:
            row = await run_in_threadpool(engine.embed_upload, data)
        except ImageReadError as exc:
            status, code = _IMAGE_STATUS.get(exc.reason, (422, "unreadable_image"))
            return _error(status, code, f"the upload cannot be used: {exc.message}")
        result = await engine.search_async(text, k, offset, {UPLOAD_ID: row})
        return {"query": text, **result}

    @app.get("/api/image/{image_id:path}")
    def image(image_id: str):
        path = engine.index.image_path(image_id)
        if path is None or not path.is_file():
            return _error(404, "unknown_image", "no image with this id in the index")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})

    app.add_middleware(Headers, headers=SECURITY_HEADERS)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes + (64 << 10))  # + room for the form's other fields
    app.add_middleware(Timeout, seconds=timeout_s)
    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          timeout_keep_alive: int = 5, limit_concurrency: int | None = 256) -> None:
    """Run ``app`` with uvicorn in this process (blocks)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=timeout_keep_alive,
                limit_concurrency=limit_concurrency)

"""ASGI middleware that keeps one request from hurting the server: body size and time limits.

- :class:`BodyLimit`: a declared ``Content-Length`` above the limit is answered 413 before
  any byte is read; a body that grows past it while streaming (chunked uploads) stops
  with 413 too, so nothing larger than the limit is ever buffered or spooled to disk.
- :class:`Timeout`: a request that takes longer than the limit is answered 504 (when no
  response has started yet). Work already running in a thread finishes in the background;
  the client gets its answer on time.

Both answer JSON ``{"detail": {"error": ..., "message": ...}}`` like the API's other errors.
:class:`Headers` adds fixed headers (the page's Content-Security-Policy) to every response.
All three are plain ASGI (no ``BaseHTTPMiddleware``: it would wrap errors raised while the
body is read and costs a task per request).
"""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException


async def send_json(send, status: int, detail: dict) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await send_json(send, 400, {"error": "bad_request", "message": "bad Content-Length"})
                if declared > self.max_bytes:
                    return await send_json(send, 413, self._detail())
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises HTTPException from body parsing unchanged: the client gets 413.
                    raise HTTPException(413, detail=self._detail())
            return message

        return await self.app(scope, limited_receive, send)

    def _detail(self) -> dict:
        return {"error": "too_large", "message": f"request body larger than {self.max_bytes:,} bytes",
                "limit": self.max_bytes}


class Timeout:
    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, float(seconds)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.seconds <= 0:
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.seconds)
        except asyncio.TimeoutError:
            if not started:
                await send_json(send, 504, {"error": "timeout",
                                            "message": f"the request took longer than {self.seconds:g} s"})


class Headers:
    def __init__(self, app, headers: dict[str, str]):
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def add_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", ())}
                message = {**message, "headers": list(message.get("headers", ())) +
                           [(k, v) for k, v in self.headers if k not in have]}
            await send(message)

        return await self.app(scope, receive, add_headers)

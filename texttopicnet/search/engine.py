"""A loaded index, its text space and a backend: queries in, ranked image ids out.

The server (server.py) is a thin HTTP layer over :class:`SearchEngine`; tests and the
evaluation use it directly::

    from texttopicnet.search.engine import SearchEngine
    engine = SearchEngine.open("runs/demo/search")
    engine.search("ocean + 2*music - [img:12]", k=10)["results"][0]   # {"id": ..., "distance": ...}

The text space is the one recorded in ``index.json`` (its checksum is verified: an index
embedded for another space would rank nonsense) unless ``space=`` overrides it. The
network (needed only to embed uploaded images) is loaded on the first upload.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from ..core.errors import DataError, UserError
from ..data.images import MAX_PIXELS
from .backends import make_backend
from .index import SearchIndex, load_index, space_checksum
from .query import UPLOAD_PREFIX, QueryError, merge_terms, parse_query, query_vector
from .words import UnknownQueryWords

MAX_K = 200  # results per request: a page of thumbnails, not a dump of the index
MAX_OFFSET = 10_000


class SearchEngine:
    def __init__(self, index: SearchIndex, space, backend: str = "exact", device: str = "cpu",
                 max_pixels: int | None = MAX_PIXELS, **backend_options):
        if space.dim != int(index.info["dim"]):
            raise DataError(f"the text space has {space.dim} dimensions, the index {index.info['dim']}")
        if space.kind != index.info["kind"]:
            raise DataError(f"the text space is a {space.kind} space, the index was built for a "
                            f"{index.info['kind']} space")
        self.index, self.space = index, space
        self.similarity = index.info["similarity"]
        self.target = (index.info.get("space") or {}).get("target")
        t0 = time.perf_counter()
        self.backend = make_backend(backend, index.embeddings, self.similarity, **backend_options)
        self.load_seconds = time.perf_counter() - t0
        self.device, self.max_pixels = device, max_pixels
        self._embedder = None
        self._batcher = None
        self._embedder_lock = threading.Lock()
        self._warm_up()

    @classmethod
    def open(cls, folder, space: str | Path | None = None, backend: str = "exact", root=None,
             verify_space: bool = True, **options) -> SearchEngine:
        from ..text.spaces import load_text_space

        index = load_index(folder, root=root)
        space_path = Path(space) if space is not None else index.resolve("space")
        if verify_space and space is None:
            recorded = (index.info.get("space") or {}).get("sha256")
            if recorded and space_checksum(space_path) != recorded:
                raise DataError(f"{space_path}: the text space changed since the index was built (sha256 mismatch); "
                                "rebuild the index (search/01_build_index.py --force)")
        return cls(index, load_text_space(space_path), backend=backend, **options)

    def _warm_up(self) -> None:
        # Lazy caches (WordNet, the topic-word matrix) are built here, before server threads race for them.
        self._examples = self.example_words()
        vocab = self._examples[:1]
        if vocab:
            try:
                query_vector(self.space, vocab[0], target=self.target)
                self.space.nearest_known(vocab[0] + "x", n=1)  # its look-up index, for the first unknown word
            except QueryError:
                pass

    # --- what the page shows ---------------------------------------------------------------
    def example_words(self, n: int = 12) -> list[str]:
        """Known words to suggest as queries: the top word of each topic for a topic model (one
        word per theme), else the most frequent words."""
        words: list[str] = []
        top = getattr(self.space, "top_words", None)
        if callable(top):
            for rank in range(3):
                for t in range(self.space.dim):
                    w = top(t, rank + 1)[rank][0] if len(top(t, rank + 1)) > rank else ""
                    if w.isalpha() and w not in words:
                        words.append(w)
                if len(words) >= n:
                    break
        if len(words) < n:
            try:
                vocab = self.space.vocabulary()
            except NotImplementedError:
                vocab = []
            words += [w for w in vocab[: max(n * 5, n)] if w.isalpha() and w not in words]
        from .words import raw_word_vectors

        return [w for w in words[: 2 * n] if not raw_word_vectors(self.space, [w])[1]][:n]  # typed back, they work

    def describe(self) -> dict:
        info = self.index.info
        return {"images": len(self.index), "dim": info["dim"], "similarity": self.similarity,
                "space": {k: (info.get("space") or {}).get(k) for k in ("name", "kind", "target")},
                "network": {k: (info.get("network") or {}).get(k) for k in ("arch", "num_outputs")},
                "backend": self.backend.name, "example_words": list(self._examples),
                "example_ids": self.index.ids[:3]}

    def describe_terms(self, terms, unknown=()) -> list[dict]:
        bad = set(unknown)
        return [{"weight": float(w), "kind": k, "value": v,
                 "known": (v in self.index.row_of or v.startswith(UPLOAD_PREFIX)) if k == "image" else v not in bad}
                for w, k, v in terms]

    # --- searching ----------------------------------------------------------------------------
    def image_rows(self, terms, uploads=None) -> dict[str, np.ndarray]:
        out = dict(uploads or {})
        for _, kind, value in terms:
            if kind == "image" and value not in out:
                row = self.index.row_of.get(value)
                if row is not None:
                    out[value] = np.asarray(self.index.embeddings[row], dtype=np.float64)
        return out

    def prepare(self, text, k: int = 24, offset: int = 0, uploads: dict | None = None):
        """(terms, query vector): parsed, checked and combined; raises :class:`QueryError` (with ``.status``).

        Unknown words carry the parsed terms (``details["terms"]``) so the page can mark them.
        """
        if not 1 <= int(k) <= MAX_K or not 0 <= int(offset) <= MAX_OFFSET:
            raise QueryError(f"k must be in 1..{MAX_K} and offset in 0..{MAX_OFFSET}", status=422, code="bad_range")
        terms = parse_query(text) if isinstance(text, str) else merge_terms(text)
        if not terms:
            raise QueryError("the query's terms cancel out (their weights sum to 0)", code="cancelled")
        try:
            return terms, query_vector(self.space, terms, self.image_rows(terms, uploads), target=self.target)
        except UnknownQueryWords as exc:
            exc.details["terms"] = self.describe_terms(terms, exc.words)
            raise

    def _answer(self, terms, rows, dist, offset: int, t0: float) -> dict:
        rows, dist = rows[int(offset):], dist[int(offset):]
        results = [{"rank": int(offset) + i + 1, "id": self.index.ids[r], "distance": round(float(d), 6)}
                   for i, (r, d) in enumerate(zip(rows, dist))]
        return {"terms": self.describe_terms(terms), "results": results, "images": len(self.index),
                "similarity": self.similarity, "took_ms": round((time.perf_counter() - t0) * 1000, 3)}

    def search(self, text, k: int = 24, offset: int = 0, uploads: dict | None = None) -> dict:
        """``{"terms": [...], "results": [{"rank", "id", "distance"}], "images": N, "took_ms"}``."""
        t0 = time.perf_counter()
        terms, vec = self.prepare(text, k, offset, uploads)
        rows, dist = self.backend.search(vec[None], int(offset) + int(k))
        return self._answer(terms, rows[0], dist[0], offset, t0)

    async def search_async(self, text, k: int = 24, offset: int = 0, uploads: dict | None = None) -> dict:
        """:meth:`search` for the server: the ranking runs in the batcher thread, together with the
        other queries waiting at that moment (one pass over the index for all of them)."""
        import asyncio

        t0 = time.perf_counter()
        terms, vec = self.prepare(text, k, offset, uploads)
        rows, dist = await asyncio.wrap_future(self.batcher().submit(vec, int(offset) + int(k)))
        return self._answer(terms, rows, dist, offset, t0)

    def batcher(self) -> Batcher:
        with self._embedder_lock:
            if self._batcher is None:
                self._batcher = Batcher(self.backend)
            return self._batcher

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None

    # --- uploads -----------------------------------------------------------------------------
    def embedder(self):
        with self._embedder_lock:
            if self._embedder is None:
                from ..weights.loading import load_network
                from .embedding import ImageEmbedder

                net_info = self.index.info.get("network") or {}
                spec = self.index.resolve("network") if net_info.get("source") != "random" else "random"
                net, info = load_network(spec, num_outputs=self.space.dim if spec == "random" else None,
                                         seed=int(net_info.get("seed", 0)), arch=net_info.get("arch"))
                if net_info.get("sha256") and info["sha256"] != net_info["sha256"]:
                    raise DataError(f"{spec}: the network changed since the index was built (sha256 mismatch)")
                self._embedder = ImageEmbedder(net, self.space.kind, device=self.device, max_pixels=self.max_pixels)
            return self._embedder

    def embed_upload(self, data: bytes) -> np.ndarray:
        if not data:
            raise UserError("empty upload")
        return self.embedder().embed_bytes(data).astype(np.float64)


class Batcher:
    """One thread ranks every query waiting at that moment in one call to the backend.

    Under load the queries of concurrent requests share one pass over the index (a matrix
    product instead of one matrix-vector product each: the index is read once per batch);
    a lone query runs at once, with no waiting window.
    """

    def __init__(self, backend, max_batch: int = 64):
        import queue

        self.backend, self.max_batch = backend, int(max_batch)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="search-batcher", daemon=True)
        self._thread.start()

    def submit(self, vector: np.ndarray, k: int):
        from concurrent.futures import Future

        fut: Future = Future()
        self._queue.put((np.asarray(vector), int(k), fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            live = [b for b in batch if b[2].set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                rows, dist = self.backend.search(np.stack([v for v, _, _ in live]), max(k for _, k, _ in live))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                for _, _, fut in live:
                    fut.set_exception(exc)
                continue
            for j, (_, k, fut) in enumerate(live):
                fut.set_result((rows[j, :k], dist[j, :k]))

"""The search server under load: concurrent clients against the real server process on 127.0.0.1.

For synthetic indexes of 100k and 1M entries (40-d topic distributions: the paper's 40
topics, KL ranking; a 40-topic LDA space fitted on generated texts gives the query words),
``search/02_serve.py`` runs as its own process; ``CLIENTS`` asyncio + httpx clients send
mixed queries (``a + b``, ``2*a - b``, ``a + [img:ID]``) for a bounded time: queries/s,
p50 and p99 latency, errors (must be 0), then one client at a time for the same time, and
the server's resident memory (VmRSS; RssAnon = its own heap and arrays; RssFile = shared
libraries and the memory-mapped index file). A bad request of each kind is sent at the end: the server must answer them
and still be healthy.

Baseline (the original demo's structure, SEED_SYSTEMS.md 002): a per-item Python loop over
a dict of image vectors, one score per image, then a full sort; timed in-process on
``NAIVE_ITEMS`` items and scaled linearly to the index size (it is linear); ratio = its
time per query / ours under load. Client and server share the machine's cores.

    python benchmarks/bench_search.py            # 100k and 1M, 10 s each (prints JSON rows)
    python benchmarks/bench_search.py --quick    # 10k and 100k, 3 s each
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from common import row  # noqa: E402

BENCH = "search"
DIM = 40
CLIENTS = 16
NAIVE_ITEMS = 20_000
SERVER_START_S = 600


def fit_space(folder: Path):
    """A 40-topic LDA space over generated texts (40 subjects of 12 words), saved to ``folder``."""
    import numpy as np

    import texttopicnet

    rng = np.random.default_rng(0)
    def letters(i: int) -> str:  # the tokenizer keeps alphabetic words only
        return "".join("abcdefghij"[int(d)] for d in str(i))
    words = [[f"top{letters(s)}wd{letters(j)}" for j in range(12)] for s in range(DIM)]
    texts = [" ".join(rng.choice(words[i % DIM], 20)) for i in range(DIM * 15)]
    space = texttopicnet.fit_text_space("lda", texts, seed=0, num_topics=DIM, no_below=2, no_above=0.5, passes=3,
                                        reproducible=True, tokenizer="simple")
    space.save(folder)
    return space


def make_index(folder: Path, n: int, space_dir: Path, space) -> None:
    """``n`` random topic distributions (float32), ids 1..n, every path the same small image."""
    import numpy as np
    from PIL import Image

    from texttopicnet.search.index import space_checksum, write_index
    from texttopicnet.search.sources import Collection, Item

    root = folder / "images"
    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (40, 90, 160)).save(root / "img.png")
    rng = np.random.default_rng(n)
    rows = np.concatenate([rng.dirichlet(np.full(DIM, 0.1), size=min(200_000, n - s)).astype(np.float32)
                           for s in range(0, n, 200_000)])
    items = [Item(str(i + 1), "img.png") for i in range(n)]
    rec = {"path": str(space_dir), "name": "lda", "kind": "distribution", "similarity": "kl", "dim": DIM,
           "sha256": space_checksum(space_dir), "target": "distribution"}
    write_index(folder / "index", rows, items, Collection("folder", root, items, {}, "synthetic"),
                network={"sha256": "random-seed0-k40", "source": "random", "arch": "caffenet", "num_outputs": DIM},
                space=rec)


def queries(vocab: list[str], n_ids: int, count: int = 200) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(1)
    out = []
    for i in range(count):
        a, b = rng.choice(vocab, 2, replace=False)
        out.append([f"{a} + {b}", f"2*{a} - {b}", f"{a} + [img:{int(rng.integers(1, n_ids + 1))}]"][i % 3])
    return out


async def load(url: str, qs: list[str], clients: int, seconds: float) -> dict:
    """``clients`` coroutines, each sending one query after the other until the time is up."""
    import httpx

    latencies, errors = [], []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker(w: int):
            i = w
            while time.perf_counter() < deadline:
                q = qs[i % len(qs)]
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await client.get("/api/search", params={"q": q, "k": 24})
                    ok = r.status_code == 200 and len(r.json()["results"]) == 24
                except httpx.HTTPError as exc:
                    ok, r = False, exc
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors.append(str(getattr(r, "status_code", r)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"queries": len(lat), "seconds": elapsed, "qps": len(lat) / elapsed,
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "mean_ms": 1000 * statistics.fmean(lat), "errors": len(errors), "error_examples": errors[:5]}


def server_memory_mb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024.0
    return out


def bad_requests_answered(url: str) -> dict:
    """One bad request of each kind: their statuses, then the server must still answer a good query."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as c:
        got = {
            "traversal": c.get("/api/image/..%2F..%2Fetc%2Fpasswd").status_code,
            "unknown_word": c.get("/api/search", params={"q": "qqqzzz"}).status_code,
            "10k_terms": c.post("/api/search", json={"q": " + ".join(["a"] * 10_000)}).status_code,
            "not_an_image": c.post("/api/search/image", files={"file": ("a.txt", b"hello", "text/plain")}).status_code,
            "oversized": c.post("/api/search/image", files={"file": ("a.png", b"\0" * (11 << 20), "image/png")}
                                ).status_code,
        }
        got["healthy_after"] = c.get("/api/health").status_code
    return got


def naive_seconds_per_query(n: int, qs_vectors) -> float:
    """The original demo's loop: score every image in Python, sort all; timed on NAIVE_ITEMS, scaled to n."""
    import numpy as np

    rng = np.random.default_rng(2)
    m = min(n, NAIVE_ITEMS)
    db = {str(i): v for i, v in enumerate(np.log(rng.dirichlet(np.full(DIM, 0.1), size=m) + 1e-10))}
    times = []
    for q in qs_vectors[:3]:
        t0 = time.perf_counter()
        scores = {k: float(np.dot(q, v)) for k, v in db.items()}
        top = sorted(scores.items(), key=lambda kv: -kv[1])[:24]
        times.append(time.perf_counter() - t0)
        assert len(top) == 24
    return statistics.median(times) * n / m


def bench_size(workdir: Path, n: int, seconds: float, space_dir: Path, space) -> list[dict]:
    import httpx

    from texttopicnet.search.process import ServerProcess
    from texttopicnet.search.query import query_vector

    folder = workdir / f"n{n}"
    make_index(folder, n, space_dir, space)
    with ServerProcess(folder / "index", folder / "server.log") as server:
        url = server.url
        start_s = server.wait_healthy(SERVER_START_S)
        vocab = httpx.get(url + "/api/info", timeout=30).json()["example_words"]
        qs = queries(vocab, n)
        asyncio.run(load(url, qs, CLIENTS, min(2.0, seconds)))  # warm-up
        conc = asyncio.run(load(url, qs, CLIENTS, seconds))
        seq = asyncio.run(load(url, qs, 1, seconds / 2))
        mem = server_memory_mb(server.pid)
        bad = bad_requests_answered(url)
    vecs = [query_vector(space, q) for q in qs[:6] if "[img:" not in q][:3]
    naive = naive_seconds_per_query(n, vecs)
    ok = conc["errors"] == 0 and seq["errors"] == 0
    bad_ok = bad == {"traversal": 404, "unknown_word": 422, "10k_terms": 413, "not_an_image": 415, "oversized": 413,
                     "healthy_after": 200}
    notes = (f"{CLIENTS} clients x {seconds:g} s: {conc['qps']:.0f} q/s, p50 {conc['p50_ms']:.1f} ms, p99 "
             f"{conc['p99_ms']:.1f} ms, errors {conc['errors']}/{conc['queries']}; one client at a time: "
             f"{seq['qps']:.0f} q/s, p50 {seq['p50_ms']:.1f} ms, errors {seq['errors']}; server RSS "
             f"{mem.get('VmRSS', 0):.0f} MiB (anonymous {mem.get('RssAnon', 0):.0f}, file-backed: libraries + "
             f"mapped index {mem.get('RssFile', 0):.0f}), started in {start_s:.0f} s; machine load average "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; bad requests "
             f"{'answered right, healthy after' if bad_ok else bad}; naive: per-item Python loop + full sort, "
             f"{naive * 1000:.0f} ms/query (timed on {min(n, NAIVE_ITEMS):,} items, scaled)")
    r = row(BENCH, f"search API under load, {n:,} entries ({DIM}-d, KL)", conc["seconds"],
            naive * conc["queries"], items=conc["queries"], unit="queries", peak_mb=mem.get("VmRSS"),
            target="0 errors, bad requests refused", notes=notes)
    r["met"] = ok and bad_ok
    r.update(n=n, concurrent=conc, sequential=seq, memory_mb=mem, bad_requests=bad, naive_s_per_query=naive)
    return [r]


def run(workdir: Path, quick: bool) -> list[dict]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    space_dir = workdir / "space"
    space = fit_space(space_dir)
    sizes, seconds = ((10_000, 100_000), 3.0) if quick else ((100_000, 1_000_000), 10.0)
    rows = []
    for n in sizes:
        rows += bench_size(workdir, n, seconds, space_dir, space)
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="bench_search_") as tmp:
        print(json.dumps(run(Path(tmp), quick), indent=2, default=str))

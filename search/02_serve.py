"""Serve a search index: the search page and its JSON API, on 127.0.0.1 by default.

Open the printed address in a browser: type words and images mixed with + and -, click a
result to add it to the query, drop an image to search with it. API and limits:
``texttopicnet/search/server.py``.

Run::

    python search/02_serve.py --index runs/demo/search            # then open http://127.0.0.1:8000/
    python search/02_serve.py --index runs/demo/search --port 8080 --backend faiss
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402

STAGE = "search_serve"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser():
    from texttopicnet.search.server import MAX_UPLOAD_BYTES, REQUEST_TIMEOUT_S

    p = cli.make_parser(__doc__, parents=[cli.device_parser()])
    p.add_argument("--index", type=Path, default=Path("runs/demo/search"),
                   help="index folder written by search/01_build_index.py")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; the default keeps the server private to this machine")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    p.add_argument("--backend", choices=("exact", "faiss"), default="exact",
                   help="'exact': chunked matrix products (up to a few million images); 'faiss': faiss "
                        "IndexFlatIP (pip install faiss-cpu), same ranking, for larger collections")
    p.add_argument("--space", type=Path, default=None, help="text space folder (default: the one index.json records)")
    p.add_argument("--root", type=Path, default=None, help="image root (default: the one index.json records)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20,
                   help="largest accepted upload; larger requests are refused (413) before they are read")
    p.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_S, help="seconds before a request gets 504")
    p.add_argument("--no-uploads", action="store_true", help="refuse image uploads (403)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.timeout <= 0:
        raise UserError("--max-upload-mb and --timeout must be positive")
    from texttopicnet.search.engine import SearchEngine
    from texttopicnet.search.server import create_app, serve

    engine = SearchEngine.open(args.index, space=args.space, backend=args.backend, root=args.root,
                               device=str(cli.resolve_device(args.device)))
    app = create_app(engine, max_upload_bytes=int(args.max_upload_mb * 2**20), timeout_s=args.timeout,
                     allow_uploads=not args.no_uploads)
    if args.host not in LOOPBACK:
        cli.log(f"warning: binding {args.host}: the index's images are reachable from other machines")
    host = f"[{args.host}]" if ":" in args.host else args.host
    cli.log(f"serving {len(engine.index)} images ({engine.index.info['space']['name']} space, {engine.backend.name} "
            f"backend) at http://{host}:{args.port}/  (Ctrl-C stops)")
    serve(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    cli.run_main(main)

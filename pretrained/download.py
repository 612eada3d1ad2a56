"""Fetch the published TextTopicNet artefacts, convert the Caffe models and check that everything loads.

    python pretrained/download.py                       # everything into pretrained/
    python pretrained/download.py --only model lda      # just the 40-topic network and the LDA model

Files (Google Drive ids from the original release, fetched by pooch through gdown, which
handles Drive's confirmation pages and resumes a broken transfer when rerun):
the 40-topic CaffeNet (``model``), the VOC2007 fine-tuned CaffeNet (``voc``), the LDA
model, its state and dictionary (``lda``) and ``training_labels40.json`` (``labels``).
No checksums were published, so the sha256 of each file is recorded beside it
(``<file>.sha256``) when it is first fetched, and a reused or re-fetched file must match it
(``--force`` fetches again and records anew, keeping the old file if that fails). Then:
every ``.caffemodel`` becomes a ``.safetensors`` state dict (pretrained/convert_caffemodel.py)
that is loaded with texttopicnet.weights.loading.load_network; the LDA files are loaded with
texttopicnet.text.topics.TopicModel; the labels are converted to our labels format
(``--labels-out``). Rerunning skips whatever is already done. ``--url BASE`` or the
environment variable TEXTTOPICNET_PRETRAINED_URL fetches ``BASE/<file name>`` over
plain HTTP(S) instead of Google Drive (a mirror, or a local server in tests).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli  # noqa: E402
from texttopicnet.core.errors import DataError  # noqa: E402
from texttopicnet.data import downloads  # noqa: E402
from texttopicnet.weights import caffe_import, published  # noqa: E402

HERE = Path(__file__).resolve().parent
URL_ENV = "TEXTTOPICNET_PRETRAINED_URL"


def build_parser():
    p = cli.make_parser(__doc__)
    p.add_argument("--dest", type=Path, default=HERE,
                   help="folder for the published files (pretrained/ is where --weights published and "
                        "run_pipeline.py --weights published look)")
    p.add_argument("--only", nargs="+", choices=published.GROUPS, default=list(published.GROUPS),
                   help="which artefacts: model (40-topic CaffeNet), voc (fine-tuned on VOC2007), "
                        "lda (ldamodel40.lda + .state + dictionary.dict), labels (training_labels40.json)")
    p.add_argument("--url", default=None, metavar="BASE",
                   help=f"fetch BASE/<file name> instead of Google Drive (also: ${URL_ENV})")
    p.add_argument("--labels-out", type=Path, default=Path("runs") / "published" / "labels",
                   help="labels stage folder the published training_labels40.json is converted into "
                        "(train on the authors' exact targets with --out runs/published)")
    p.add_argument("--collection", type=Path, default=None,
                   help="ImageCLEF Wikipedia root to resolve the label file's image paths against "
                        "(default: data/ImageCLEF_Wikipedia when it exists, else the paths are kept as written)")
    p.add_argument("--no-convert", action="store_true", help="only download; skip conversions and load checks")
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.add_argument("--retries", type=int, default=3, help="extra attempts after a broken transfer")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def fetch_all(arts, dest: Path, base: str | None, args) -> dict[str, Path]:
    out = {}
    for art in arts:
        remote = downloads.RemoteFile(art.name)
        source = {"bases": [base]} if base else {"drive_id": art.drive_id}
        out[art.name] = downloads.fetch(remote, dest, retries=args.retries, quiet=args.quiet, force=args.force,
                                        log=cli.log, **source)
    return out


def check_network(path: Path, expected_outputs: int) -> str:
    from texttopicnet.weights.loading import load_network

    net, info = load_network(path)
    if info["num_outputs"] != expected_outputs:
        raise DataError(f"{path}: fc8 has {info['num_outputs']} outputs, the published model has {expected_outputs}")
    return f"{path.name}: loads, {info['num_outputs']} outputs, sha256 {info['sha256'][:12]}"


def check_lda(dest: Path) -> str:
    from texttopicnet.text.topics import TopicModel

    try:
        tm = TopicModel.load(dest / "ldamodel40.lda")
    except DataError:
        raise
    except Exception as exc:  # unpickling an old gensim model can fail in many ways
        raise DataError(f"{dest / 'ldamodel40.lda'}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    words = ", ".join(w for w, _ in tm.top_words(0, 5))
    return f"LDA: {tm.num_topics} topics, {len(tm.dictionary):,} words; topic 0: {words}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config("download_published", args)
    base = args.url or os.environ.get(URL_ENV, "").strip() or None
    if base and not base.endswith("/"):
        base += "/"
    arts = [a for a in published.ARTEFACTS if a.group in args.only]
    files = fetch_all(arts, args.dest, base, args)
    if args.no_convert:
        cli.log(f"downloaded {len(files)} file(s) into {args.dest}")
        return 0
    summary = []
    for name, path in files.items():
        if name.endswith(".caffemodel"):
            out, _ = caffe_import.convert_file(path, force=args.force, log=cli.log)
            summary.append(check_network(out, published.EXPECTED_OUTPUTS[name]))
    if "lda" in args.only:
        summary.append(check_lda(args.dest))
    if "labels" in args.only:
        coll = args.collection
        if coll is None and (Path("data") / "ImageCLEF_Wikipedia").is_dir():
            coll = Path("data") / "ImageCLEF_Wikipedia"
        counts = published.convert_training_labels(files["training_labels40.json"], args.labels_out,
                                                   collection=coll, force=args.force, log=cli.log)
        summary.append(f"labels: {counts['kept']:,} of {counts['entries']:,} images -> {args.labels_out}")
    for line in summary:
        cli.log(line)
    return 0


if __name__ == "__main__":
    cli.run_main(main)

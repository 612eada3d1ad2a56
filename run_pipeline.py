"""Run the whole TextTopicNet pipeline and write a results report.

Default: the embedded demo corpus (generated if missing) into runs/demo/:
corpus -> training pairs -> LDA -> labels -> pack -> train -> VOC-layout SVMs
(features extracted and cached on the way) -> retrieval -> report
(runs/demo/report/report.md and report.html). Uses a GPU automatically when there is one.

    python run_pipeline.py                       # the demo, < 10 min on a 2-core CPU
    python run_pipeline.py --dataset paper       # the paper's protocol on data/{ImageCLEF_Wikipedia,VOC2007,Wikipedia}
    python run_pipeline.py --weights published   # skip training; evaluate the published model
    python run_pipeline.py --from train          # rerun training and everything after it
    python run_pipeline.py --only report         # just rebuild the report

Finished stages are skipped (their meta.json and output checksums are checked, and the
inputs they were run against); deleting a stage's folder reruns it and what depends on it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from texttopicnet.core import cli
from texttopicnet.core.errors import UserError
from texttopicnet.pipeline import STAGE_NAMES, Runner, demo_settings, paper_settings, serve_command

PAPER_DATA = ("ImageCLEF_Wikipedia", "VOC2007", "Wikipedia")


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.seed_parser(), cli.workers_parser(), cli.device_parser()])
    p.add_argument("--dataset", choices=("demo", "paper"), default="demo",
                   help="'demo': the generated corpus that ships with the project; 'paper': the real datasets "
                        "with the paper's settings (40 topics, 160k iterations: a GPU job)")
    p.add_argument("--weights", choices=("trained", "published"), default="trained",
                   help="'published' skips pairs/LDA/labels/training and evaluates the imported published model "
                        "and LDA (get them with: python pretrained/download.py)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<dataset>)")
    p.add_argument("--data-root", type=Path, default=None,
                   help="datasets folder (default: runs/demo/data for the demo, data/ for --dataset paper)")
    p.add_argument("--scale", type=float, default=1.0, help="demo corpus size multiplier (benchmarks use > 1)")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, help="rerun this stage and all after it")
    p.add_argument("--only", choices=STAGE_NAMES, help="run just this stage")
    p.add_argument("--pretrained-dir", type=Path, default=Path("pretrained"),
                   help="where pretrained/download.py put the published files")
    p.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to cnn/02_train.py (repeatable), e.g. --train-arg=--iterations=50")
    return p


def _check_paper_data(root: Path) -> None:
    missing = [d for d in PAPER_DATA if not (root / d).is_dir()]
    if missing:
        raise UserError(f"--dataset paper needs {', '.join(str(root / d) for d in missing)}; get them with "
                        f"`python data/download.py voc2007`, `python data/download.py wikipedia` and "
                        f"`python data/download.py imageclef` (see data/README.md)")


def _check_published(pre: Path) -> None:
    needed = ["TextTopicNet_Wikipedia_ImageCLEF_40Topics.safetensors", "ldamodel40.lda", "dictionary.dict"]
    missing = [n for n in needed if not (pre / n).is_file()]
    if missing:
        raise UserError(f"--weights published needs {', '.join(missing)} in {pre}; get them with "
                        f"`python pretrained/download.py` (downloads and converts the published files)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or Path("runs") / args.dataset
    common = dict(seed=args.seed, workers=args.workers, device=args.device, weights=args.weights,
                  pretrained_dir=args.pretrained_dir.resolve(), train_overrides=tuple(args.train_arg))
    if args.dataset == "demo":
        settings = demo_settings(out.resolve(), data_root=(args.data_root or out / "data").resolve(),
                                 scale=args.scale, **common)
    else:
        data_root = (args.data_root or Path("data")).resolve()
        _check_paper_data(data_root)
        settings = paper_settings(out.resolve(), data_root, **common)
    if args.weights == "published":
        _check_published(settings.pretrained_dir)
    cli.print_config("run_pipeline", args)
    t0 = time.time()
    Runner(settings).run(force=args.force, from_stage=args.from_stage, only=args.only)
    report = settings.run_dir / "report" / "report.md"
    if report.is_file():
        print(f"report: {report} (and report.html beside it); total {time.time() - t0:.1f} s")
    serve = serve_command(settings)
    if serve:
        print("search the demo images: run this, then open http://127.0.0.1:8000/")
        print(serve)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    cli.run_main(main)

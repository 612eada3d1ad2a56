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
    python run_pipeline.py --out runs/w2v --space word2vec --arch resnet50 --loss triplet   # another configuration
    python run_pipeline.py --compare runs/demo runs/w2v                                     # side by side

Finished stages are skipped (their meta.json and output checksums are checked, and the
inputs they were run against); deleting a stage's folder reruns it and what depends on it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from texttopicnet.core import cli
from texttopicnet.core.errors import UserError
from texttopicnet.networks import backbones
from texttopicnet.pipeline import STAGE_NAMES, Runner, demo_settings, ensure_wordnet, paper_settings, serve_command
from texttopicnet.report.compare import compare_runs
from texttopicnet.text.spaces import SPACES
from texttopicnet.training.losses import LOSSES
from texttopicnet.vlm.train import PRESETS as VLM_PRESETS

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
    g = p.add_argument_group("configuration (defaults: the paper's)")
    g.add_argument("--corpus", default="imageclef",
                   help="training corpus: imageclef (the paper's) or manifest:PATH (any captioned-image corpus, "
                        "data/README.md; the demo writes one: manifest:runs/demo/data/Captions/manifest.jsonl)")
    g.add_argument("--space", default="lda", choices=SPACES,
                   help="text space the CNN predicts: lda (the paper's) or a related work's (docs/text_spaces.md)")
    g.add_argument("--space-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of a space other than lda, repeatable (e.g. dim=100)")
    g.add_argument("--target", default=None, choices=("minshift_l2", "minshift_max"),
                   help="training targets of a vector space (default minshift_l2, the TextTopicNet fork's)")
    g.add_argument("--arch", default="caffenet", choices=backbones.names(),
                   help="the network trained (caffenet: the paper's)")
    g.add_argument("--loss", default="sigmoid_ce", choices=list(LOSSES),
                   help="training loss (sigmoid_ce: the paper's)")
    p.add_argument("--vlm-preset", default="demo", choices=[n for n in VLM_PRESETS if n.startswith("demo")],
                   help="the CNN-VLM stage's preset: 'demo' (conv5, ~40 s) keeps the demo within 10 minutes; "
                        "'demo_long' (conv1+conv3, ~18 min on 2 cores) is the README's pasted-region check")
    p.add_argument("--compare", nargs="+", type=Path, metavar="RUN",
                   help="write a side-by-side report of finished run folders (configuration and results) "
                        "to the first one's report/compare.md, and stop")
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


def _check_configuration(args) -> None:
    if args.weights == "published" and (args.space != "lda" or args.arch != "caffenet" or args.loss != "sigmoid_ce"):
        raise UserError("--weights published is the authors' CaffeNet trained on their 40-topic LDA with sigmoid "
                        "cross-entropy: it cannot be combined with --space/--arch/--loss other than the defaults")
    if args.space == "lda" and (args.space_option or args.target):
        raise UserError("--space-option and --target are for the vector spaces (--space word2vec, ...); "
                        "LDA's options are the paper's")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        path = compare_runs(args.compare)
        print(f"wrote {path}")
        return 0
    _check_configuration(args)
    out = args.out or Path("runs") / args.dataset
    common = dict(seed=args.seed, workers=args.workers, device=args.device, weights=args.weights,
                  pretrained_dir=args.pretrained_dir.resolve(), train_overrides=tuple(args.train_arg),
                  corpus=args.corpus, space=args.space, space_options=tuple(args.space_option), target=args.target,
                  arch=args.arch, loss=args.loss, vlm_preset=args.vlm_preset)
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
    if settings.weights == "trained":
        ensure_wordnet()  # the release's lemmatiser; a fresh machine gets it here, not halfway through the run
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

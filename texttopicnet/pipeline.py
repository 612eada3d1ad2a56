"""The whole TextTopicNet pipeline as a graph of stage scripts, with skip/force/from/only.

Every stage runs through its own script (``lda/``, ``cnn/``, ``experiments/``) in a
subprocess, exactly as a user would run it by hand. The runner adds what single
scripts cannot know:

- **skipping**: a stage is skipped when every output folder holds a valid
  ``meta.json`` (outputs re-checksummed) *and* the ``meta.json`` files of the stages
  it depends on are the ones it was run against (recorded in ``RUN/pipeline.json``).
  So deleting one stage's output reruns that stage and everything downstream of it.
- ``--force`` (everything), ``--from STAGE`` (that stage and all after it),
  ``--only STAGE`` (just that one, even if its inputs are stale).
- a failed stage stops the run, naming the stage and the command that reproduces it.

Used by ``run_pipeline.py``; see there for the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .core.errors import UserError
from .core.io import read_json, write_json
from .core.provenance import META_NAME, stage_is_done

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Stage:
    name: str
    help: str
    # (script relative to the project root, argv) pairs; one stage may run a script several times
    commands: Callable[["Settings"], list[tuple[str, list[str]]]]
    outputs: Callable[["Settings"], list[Path]]  # folders that each hold a meta.json when done
    deps: tuple[str, ...] = ()
    enabled: Callable[["Settings"], bool] = lambda s: True
    inline: Callable[["Settings"], None] | None = None  # run in-process instead of commands


@dataclasses.dataclass
class Settings:
    """Everything the stages need to know, resolved from the command line."""

    run_dir: Path
    data_root: Path
    dataset: str = "demo"  # "demo" | "paper"
    weights: str = "trained"  # "trained" | "published"
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    scale: float = 1.0
    num_topics: int = 40
    no_below: int = 20
    no_above: float = 0.5
    passes: int | None = None
    train_preset: str = "paper"
    train_overrides: tuple[str, ...] = ()
    svm_layers: tuple[str, ...] | None = None  # None: the backbone's default layers (CaffeNet: pool5 fc6 fc7)
    pretrained_dir: Path = PROJECT_ROOT / "pretrained"
    # extension points (issue "any text space, any backbone, any corpus"); defaults are the paper's
    corpus: str = "imageclef"        # or manifest:PATH
    space: str = "lda"               # lda | lsi | word2vec | doc2vec | fasttext | glove
    space_options: tuple[str, ...] = ()
    target: str | None = None        # vector spaces: minshift_l2 (default) | minshift_max
    arch: str = "caffenet"
    loss: str = "sigmoid_ce"
    vlm_preset: str = "demo"         # experiments/vlm/01_train_vlm.py --preset (demo_long: the pasted-region check)

    @property
    def trained_weights(self) -> Path:
        if self.weights == "published":
            return self.pretrained_dir / "TextTopicNet_Wikipedia_ImageCLEF_40Topics.safetensors"
        return self.run_dir / "train" / "model.safetensors"

    @property
    def lda_dir(self) -> Path:
        return self.pretrained_dir if self.weights == "published" else self.run_dir / "lda"

    @property
    def layers(self) -> tuple[str, ...]:
        """SVM feature layers: --layers, else the backbone's defaults (pool5 fc6 fc7 for CaffeNet, the paper's)."""
        if self.svm_layers:
            return tuple(self.svm_layers)
        from .networks import backbones

        return tuple(backbones.get(self.arch).default_layers)

    @property
    def space_dir(self) -> Path:
        """The text space the network predicts: the LDA folder, or RUN/space (lda/02 --space X)."""
        return self.lda_dir if self.space == "lda" else self.run_dir / "space"

    @property
    def configuration(self) -> dict:
        """What a side-by-side comparison of runs lists (report/compare.py)."""
        from .text.spaces import default_target, space_class

        return {"corpus": self.corpus, "space": self.space,
                "target": self.target or default_target(space_class(self.space).kind), "arch": self.arch,
                "loss": self.loss,
                "weights": self.weights, "seed": self.seed}

    @property
    def tags(self) -> list[tuple[str, str]]:
        """(tag, weights spec) of every network the experiments compare."""
        main_tag = "published" if self.weights == "published" else "trained"
        return [(main_tag, str(self.trained_weights)), ("random", "random")]


def demo_settings(run_dir: Path, data_root: Path | None = None, **kw) -> Settings:
    """The embedded demo: a small generated corpus sized to run end to end in minutes on 2 CPU cores."""
    s = Settings(run_dir=run_dir, data_root=data_root or run_dir / "data", dataset="demo",
                 num_topics=12, no_below=3, no_above=0.5, passes=10, train_preset="demo")
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def paper_settings(run_dir: Path, data_root: Path, **kw) -> Settings:
    """The paper's protocol on the real datasets (REFERENCE.md): 40 topics, no_below 20, no_above 0.5."""
    s = Settings(run_dir=run_dir, data_root=data_root, dataset="paper", num_topics=40, no_below=20,
                 no_above=0.5, passes=None, train_preset="paper")
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def ensure_wordnet(log=print) -> None:
    """The text stage's default lemmatiser is WordNet (the release's): install it before the run starts
    (Debian's files, else nltk.download) so a fresh machine runs the quick start as it is."""
    from .text import wordnet

    if not wordnet.nltk_wordnet_works():
        log("WordNet (the release's lemmatiser) is not installed for NLTK; installing it ...")
        wordnet.install(log=log)


def _common(s: Settings) -> list[str]:
    return ["--out", str(s.run_dir)]


def _lda_args(s: Settings) -> list[str]:
    args = _common(s) + ["--seed", str(s.seed), "--workers", str(s.workers)]
    if s.space != "lda":  # the LDA options below mean nothing to the other spaces
        return args + ["--space", s.space] + [f"--space-option={o}" for o in s.space_options]
    args += ["--num-topics", str(s.num_topics), "--no-below", str(s.no_below), "--no-above", str(s.no_above)]
    if s.passes is not None:
        args += ["--passes", str(s.passes)]
    if s.dataset == "demo":
        args += ["--reproducible"]  # single-process LDA: the demo's numbers repeat exactly
    return args


def _pairs_args(s: Settings) -> list[str]:
    args = ["--data-root", str(s.data_root), "--workers", str(s.workers)] + _common(s)
    return args + (["--corpus", s.corpus] if s.corpus != "imageclef" else [])


def _labels_args(s: Settings) -> list[str]:
    args = _common(s) + ["--workers", str(s.workers)]
    return args + (["--target", s.target] if s.target else [])


def _train_args(s: Settings) -> list[str]:
    args = _common(s) + ["--preset", s.train_preset, "--device", s.device, "--seed", str(s.seed)]
    if s.arch != "caffenet":
        args += ["--arch", s.arch]
    if s.loss != "sigmoid_ce":
        args += ["--loss", s.loss]
    return args + list(s.train_overrides)


def _network_args(s: Settings, tag: str, weights: str) -> list[str]:
    """--weights/--tag of one compared network; a random network is built as the trained one's architecture."""
    return ["--weights", weights, "--tag", tag] + (["--arch", s.arch] if weights == "random" and s.arch != "caffenet"
                                                   else [])


def _svm_args(s: Settings, tag: str, weights: str) -> list[str]:
    return (_common(s) + _network_args(s, tag, weights)
            + ["--data-root", str(s.data_root), "--device", s.device, "--seed", str(s.seed), "--workers",
               str(s.workers), "--layers", *s.layers])


def _retrieval_args(s: Settings, tag: str, weights: str) -> list[str]:
    space = ["--lda", str(s.lda_dir)] if s.space == "lda" else ["--space", str(s.space_dir)]
    # both networks are read the same way: the random one as if trained with the run's loss
    loss = ["--loss", s.loss] if s.loss != "sigmoid_ce" and weights == "random" else []
    return (_common(s) + _network_args(s, tag, weights) + space + loss
            + ["--data-root", str(s.data_root), "--device", s.device, "--seed", str(s.seed)])


def _vlm_commands(s: Settings) -> list[tuple[str, list[str]]]:
    """The demo's CNN-VLM (experiments/vlm/) on held-out images: the quick conv5 preset (~1 minute on 2 cores),
    or ``demo_long`` (conv1+conv3, ~20 minutes), which also gets the README's check and reconstruction sizes."""
    images = str(s.data_root / "VOC2007" / "VOCdevkit" / "VOC2007" / "JPEGImages")
    common = _common(s) + ["--device", s.device, "--no-progress"]
    seed = ["--seed", str(s.seed)]
    if s.vlm_preset == "demo":
        # a conv5-only VLM: its prior is conv5's, and 15 inversion steps keep the stage short
        train, paste, inversion = [], ["--n", "60"], ["--iterations", "15", "--save-every", "5",
                                                      "--layer-weight", "conv5=1"]
    else:
        # the scripts' own defaults: 200 images per kind, the release's per-layer prior weights, 200 steps
        train, paste, inversion = ["--preset", s.vlm_preset], [], ["--save-every", "50"]
    return [("experiments/vlm/01_train_vlm.py", common + seed + train),
            ("experiments/vlm/02_maps.py", common + ["--images", images, "--limit", "6"]),  # deterministic
            ("experiments/vlm/04_pasted_region_check.py", common + seed + ["--images", images, *paste]),
            ("experiments/vlm/05_reconstruct.py", common + seed + ["--topic", "0", "1", "2", "3", *inversion])]


def _report_inline(s: Settings) -> None:
    from .report import build_report

    build_report(s)


def build_stages() -> list[Stage]:
    R = lambda s, *p: s.run_dir.joinpath(*p)  # noqa: E731
    trains = lambda s: s.weights == "trained"  # noqa: E731
    stages = [
        Stage("corpus", "generate the embedded demo corpus (all three dataset layouts)",
              lambda s: [("data/make_synthetic.py", ["--out", str(s.data_root), "--seed", str(s.seed),
                                                     "--scale", str(s.scale)])],
              lambda s: [],  # checked through synthetic.json below
              enabled=lambda s: s.dataset == "demo"),
        Stage("pairs", "training pairs: images kept by the paper's filters, with their articles",
              lambda s: [("lda/01_build_train_dict.py", _pairs_args(s))],
              lambda s: [R(s, "pairs")], deps=("corpus",), enabled=trains),
        Stage("lda", "text preprocessing and the LDA topic model (or the --space chosen)",
              lambda s: [("lda/02_learn_lda.py", _lda_args(s))],
              lambda s: [R(s, "lda")], deps=("pairs",), enabled=trains),
        Stage("labels", "per-image topic distributions (the CNN's targets)",
              lambda s: [("lda/03_generate_labels.py", _labels_args(s))],
              lambda s: [R(s, "labels")], deps=("lda",), enabled=trains),
        Stage("pack", "decode + resize every training image once into a uint8 store",
              lambda s: [("cnn/01_pack_images.py", _common(s) + ["--workers", str(s.workers)])],
              lambda s: [R(s, "packed")], deps=("labels",), enabled=trains),
        Stage("train", "train the network (CaffeNet) to predict the text space from pixels",
              lambda s: [("cnn/02_train.py", _train_args(s))],
              lambda s: [R(s, "train")], deps=("pack",), enabled=trains),
        Stage("voc_svm", "VOC2007-layout classification with linear SVMs (pool5/fc6/fc7 for CaffeNet)",
              lambda s: [("experiments/voc2007_classification.py", _svm_args(s, t, w)) for t, w in s.tags],
              lambda s: [R(s, "voc_svm", t) for t, _ in s.tags], deps=("train", "corpus")),
        Stage("retrieval", "Wikipedia-layout cross-modal retrieval, both directions",
              lambda s: [("experiments/multimodal_retrieval.py", _retrieval_args(s, t, w)) for t, w in s.tags],
              lambda s: [R(s, "retrieval", t) for t, _ in s.tags], deps=("train", "lda", "corpus")),
        Stage("search", "search index of the demo images (words, images and their arithmetic)",
              lambda s: [("search/01_build_index.py",
                          _common(s) + ["--weights", str(s.trained_weights), "--space", str(s.space_dir),
                                        # the ImageCLEF-layout pictures (the ones with articles)
                                        "--images", f"folder:{s.data_root / 'ImageCLEF_Wikipedia' / 'images'}",
                                        "--device", s.device,
                                        "--seed", str(s.seed), "--workers", str(s.workers)])],
              lambda s: [R(s, "search")], deps=("train", "lda", "corpus"), enabled=lambda s: s.dataset == "demo"),
        Stage("vlm", "CNN-VLM on the trained network: naturalness maps, pasted-region check, topic reconstructions",
              lambda s: _vlm_commands(s), lambda s: [R(s, f, "trained") for f in ("vlm", "vlm_maps", "vlm_paste",
                                                                               "vlm_reconstruct")],
              deps=("train", "corpus"), enabled=lambda s: s.dataset == "demo" and s.weights == "trained"
              and s.arch == "caffenet"),
        Stage("report", "results report (markdown + HTML + figures)", lambda s: [],
              # every stage the report draws from: a rerun one (say vlm with another preset) redoes the report
              lambda s: [R(s, "report")], deps=("train", "voc_svm", "retrieval", "search", "vlm"),
              inline=_report_inline),
    ]
    return stages


STAGE_NAMES = [st.name for st in build_stages()]


def serve_command(s: Settings) -> str | None:
    """The command that serves the run's search index (None when the run has no index)."""
    index = s.run_dir / "search"
    if not (index / "index.json").is_file():
        return None

    def shown(p: Path) -> str:  # relative to where the user is when that is shorter
        try:
            return os.path.relpath(p)
        except ValueError:
            return str(p)
    script = PROJECT_ROOT / "search" / "02_serve.py"
    return " ".join(shlex.quote(x) for x in ["python", min(shown(script), str(script), key=len), "--index",
                                             min(shown(index), str(index), key=len)])


# ---------------------------------------------------------------------------------------------
# Skip logic


def _stage_fingerprint(s: Settings, stage: Stage) -> str | None:
    """A hash of the meta.json files a finished stage left (None when not finished)."""
    if stage.name == "corpus":
        marker = s.data_root / "synthetic.json"
        return hashlib.sha256(marker.read_bytes()).hexdigest() if marker.is_file() else None
    h = hashlib.sha256()
    for out in stage.outputs(s):
        meta = out / META_NAME
        if not meta.is_file():
            return None
        h.update(meta.read_bytes())
    return h.hexdigest()


class Runner:
    """Runs the enabled stages in order; see the module docstring for the skip rules."""

    def __init__(self, settings: Settings, stages: Sequence[Stage] | None = None, log=print):
        self.s = settings
        self.stages = [st for st in (stages or build_stages()) if st.enabled(settings)]
        self.by_name = {st.name: st for st in self.stages}
        self.log = log
        self.state_path = settings.run_dir / "pipeline.json"
        self.state = read_json(self.state_path) if self.state_path.is_file() else {"stages": {}}
        self.state["configuration"] = settings.configuration
        self.timings: dict[str, float] = {}

    def _deps_fingerprint(self, stage: Stage) -> dict[str, str | None]:
        return {d: _stage_fingerprint(self.s, self.by_name[d]) for d in stage.deps if d in self.by_name}

    def is_current(self, stage: Stage) -> bool:
        """Finished, outputs intact, and run against the current outputs of its dependencies."""
        if stage.name == "corpus":
            return _stage_fingerprint(self.s, stage) is not None
        outs = stage.outputs(self.s)
        if not outs or not all(stage_is_done(o) for o in outs):
            return False
        recorded = self.state["stages"].get(stage.name, {})
        # the same inputs, and the same command lines: a run folder reused with another --space,
        # --arch, --loss, ... redoes the stages whose commands changed (and then what follows)
        return recorded.get("deps") == self._deps_fingerprint(stage) and recorded.get("commands") == self._commands(stage)

    def _commands(self, stage: Stage) -> list[list[str]]:
        return [[script, *argv] for script, argv in stage.commands(self.s)]

    def command_line(self, script: str, argv: list[str]) -> str:
        return " ".join(shlex.quote(x) for x in ["python", script, *argv])

    def run(self, force: bool = False, from_stage: str | None = None, only: str | None = None) -> dict:
        for name in (from_stage, only):
            if name is not None and name not in self.by_name:
                raise UserError(f"unknown or disabled stage {name!r}; stages here: {', '.join(self.by_name)}")
        names = [st.name for st in self.stages]
        start = names.index(from_stage) if from_stage else 0
        t_all = time.time()
        for stage in self.stages[start:]:
            if only and stage.name != only:
                continue
            explicit = force or from_stage is not None or only is not None
            if not explicit and self.is_current(stage):
                self.log(f"[{stage.name}] up to date, skipped")
                continue
            # A stage whose own outputs are complete but stale (its inputs or command changed) must be
            # told to redo them; an unfinished one is not forced, so that it resumes from its checkpoint.
            self._run_stage(stage, force=explicit or self._finished(stage))
        self.log(f"pipeline finished in {time.time() - t_all:.1f} s")
        return self.timings

    def _finished(self, stage: Stage) -> bool:
        if stage.name == "corpus":
            return _stage_fingerprint(self.s, stage) is not None
        outs = stage.outputs(self.s)
        return bool(outs) and any(stage_is_done(o) for o in outs)

    def _run_stage(self, stage: Stage, force: bool) -> None:
        self.log(f"[{stage.name}] {stage.help} ...")
        t0 = time.time()
        if stage.inline is not None:
            stage.inline(self.s)
        for script, argv in stage.commands(self.s):
            argv = list(argv) + (["--force"] if force else [])
            cmd = [sys.executable, str(PROJECT_ROOT / script), *argv]
            env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env)
            if proc.returncode != 0:
                raise StageFailed(stage.name, self.command_line(script, argv), proc.returncode)
        elapsed = time.time() - t0
        self.timings[stage.name] = elapsed
        self.state["stages"][stage.name] = {"deps": self._deps_fingerprint(stage), "commands": self._commands(stage),
                                            "seconds": round(elapsed, 2),
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(self.state_path, self.state)
        self.log(f"[{stage.name}] done in {elapsed:.1f} s")


class StageFailed(UserError):
    def __init__(self, stage: str, command: str, code: int):
        super().__init__(f"stage '{stage}' failed (exit code {code}). Rerun it with:\n  {command}")
        self.stage, self.command, self.code = stage, command, code

"""Stage 3: label every training image with the LDA topic distribution of its article.

Reads RUN/pairs/pairs.tsv and the model in RUN/lda (or --lda-dir: any folder with
ldamodel{K}.lda + dictionary.dict, e.g. the published ldamodel40.lda). Infers each unique
article's topics once, in batches over worker processes; articles with no topic
evidence are excluded (counted, never given a NaN or uniform label). A row is the
release's get_document_topics(bow, minimum_probability=None) written into K values:
topics under the model's 0.01 cut-off are 0 and rows sum to a little less than 1
(--label-rows dense keeps every topic). Writes RUN/labels/{labels.npy float32 (N, K),
index.txt, articles.txt, training_labels{K}.json, meta.json}.

Another text space (lda/02 --space, saved in RUN/space; or --space PATH, any saved space):
each article is embedded once (texttopicnet/text/spaces/articles.py) and its vector made a
training target in [0, 1] (--target: minshift_l2 by default, the TextTopicNet fork's;
minshift_max, LearnFromWebData's; texttopicnet/text/spaces/targets.py). Same files, D
columns instead of K; meta.json records the space, its similarity and the target transform.

A finished run is redone when the model or the pairs changed, or an argument that shapes the
labels (--space, --target, --label-rows, ...); --force redoes it anyway.

Run::

    python lda/03_generate_labels.py --out runs/demo
    python lda/03_generate_labels.py --out runs/full --lda-dir pretrained/lda --workers 8
    python lda/03_generate_labels.py --out runs/demo --target minshift_max   # after lda/02 --space word2vec
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402
from texttopicnet.data.pairs import inputs_unchanged, read_pairs_tsv, unique_articles  # noqa: E402
from texttopicnet.text import labels  # noqa: E402
from texttopicnet.text.preprocess import LEMMATIZERS, STOP_LISTS, resolve_lemmatizer_noted, stop_words_record  # noqa: E402,E501
from texttopicnet.text.spaces import SPACES, load_text_space, targets  # noqa: E402
from texttopicnet.text.spaces import articles as space_articles  # noqa: E402
from texttopicnet.text.spaces.base import MANIFEST, read_manifest  # noqa: E402
from texttopicnet.text.topics import ROW_MODES, TopicModel, find_model_file  # noqa: E402

STAGE = "labels"
# Arguments that shape the labels: a finished run with other values is redone. (Another pairs file or
# space is another input path, which inputs_unchanged already tells apart.)
ARG_KEYS = ("target", "label_rows", "lemmatizer", "stop_words", "seed")


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser()])
    p.add_argument("--pairs", type=Path, default=None, help="pairs.tsv to label (default: RUN/pairs/pairs.tsv)")
    p.add_argument("--lda-dir", type=Path, default=None,
                   help="LDA model folder or .lda file (default: RUN/lda); the published ldamodel40.lda works too")
    p.add_argument("--space", default=None,
                   help="the text space: a name (the space lda/02 fit in this run: RUN/lda for lda, RUN/space for "
                        "the others; a check that it is that one) or a folder (a saved space, an LDA model folder "
                        "or .lda file). Default: the space lda/02 recorded in RUN/lda/meta.json")
    p.add_argument("--target", choices=tuple(targets.TARGETS), default=None,
                   help="training-target transform of a space's vectors: distribution (LDA: the topic rows, see "
                        "--label-rows); minshift_l2 (default for vector spaces: the TextTopicNet fork's shift-if-"
                        "negative then L2) or minshift_max (LearnFromWebData's v -= min; v /= max)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="articles per worker task (large enough to amortise inter-process overhead)")
    p.add_argument("--label-rows", choices=ROW_MODES, default="release",
                   help="release = the release's get_document_topics(minimum_probability=None) rows: topics under "
                        "the model's 0.01 cut-off are 0, rows sum to a little less than 1, not renormalised; "
                        "dense = every topic's probability (rows sum to 1)")
    p.add_argument("--lemmatizer", choices=LEMMATIZERS, default=None,
                   help="default: the one recorded when the model was trained (lda/02 meta.json), else wordnet "
                        "(the release's); the same preprocessing as training is what makes the labels meaningful")
    p.add_argument("--stop-words", choices=tuple(STOP_LISTS), default=None,
                   help="default: the list recorded when the model was trained (lda/02 meta.json), else release "
                        "(the 174-word list the published model was trained with)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _collection_root(pairs_path: Path) -> Path | None:
    counts = pairs_path.parent / "filter_counts.json"
    try:
        root = io.read_json(counts).get("collection_root")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(root) if root else None


def resolve_space(args) -> tuple[str, Path]:
    """``(space name, path)`` of the space to label with (see --space); raises ``UserError`` when unclear."""
    run_lda = args.out / "lda"
    if args.lda_dir is not None:
        if args.space is not None:
            raise UserError("pass --space or --lda-dir, not both (--lda-dir is --space for an LDA model)")
        return "lda", args.lda_dir
    if args.space is not None and Path(args.space).exists():
        path = Path(args.space)
        if path.is_dir() and (path / MANIFEST).is_file():
            return read_manifest(path, verify=False)["space"], path
        return "lda", path  # an LDA folder or .lda file (TopicModel.load says when it is not)
    if not provenance.stage_is_done(run_lda, "lda"):
        raise UserError(f"{run_lda}: the LDA stage has not finished (no valid meta.json); "
                        f"run lda/02_learn_lda.py --out {args.out} first")
    meta = provenance.read_meta(run_lda) or {}
    recorded = meta.get("space", "lda")  # meta.json of lda/02 before --space: LDA
    if args.space is not None and args.space != recorded:
        if args.space not in SPACES:
            raise UserError(f"--space {args.space}: neither a folder nor a space name ({', '.join(SPACES)})")
        raise UserError(f"--space {args.space}: lda/02 fit the {recorded} space in {run_lda}; run "
                        f"lda/02_learn_lda.py --out {args.out} --space {args.space} first")
    # lda/02 saves every space other than LDA to RUN/space (found from --out, so a moved run folder works).
    return recorded, (run_lda if recorded == "lda" else args.out / "space")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.print_config("generate_labels", args)
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    out_dir = args.out / "labels"
    pairs_path = args.pairs or args.out / "pairs" / "pairs.tsv"
    name, space_path = resolve_space(args)
    kind = "distribution" if name == "lda" else "vector"
    target = args.target or targets.default_target(kind)
    if target not in targets.allowed_targets(kind):
        raise UserError(f"--target {target} is not a target of the {name} space ({kind}); choose "
                        f"{', '.join(targets.allowed_targets(kind))}")
    if kind == "vector" and (args.lemmatizer or args.stop_words):
        raise UserError(f"--lemmatizer / --stop-words are for LDA models; the {name} space tokenises as it was fit "
                        f"(recorded in {space_path / MANIFEST})")
    args.target = target  # recorded resolved; a meta.json from before --target had LDA's rows
    model_input = find_model_file(space_path) if kind == "distribution" else space_path / MANIFEST
    changed = provenance.args_changed(out_dir, args, ARG_KEYS,
                                      defaults={**vars(parser.parse_args([])), "target": "distribution"})
    if (provenance.stage_is_done(out_dir, STAGE) and not args.force
            and inputs_unchanged(out_dir, [pairs_path, model_input]) and not changed):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    if changed and provenance.stage_is_done(out_dir, STAGE):
        cli.log(f"redoing {out_dir}: arguments changed since it finished ({provenance.format_changes(changed)})")
    if args.pairs is None and pairs_path.exists() and not provenance.stage_is_done(pairs_path.parent, "pairs"):
        raise UserError(f"{pairs_path.parent}: the pairs stage has not finished (no valid meta.json); "
                        f"run lda/01_build_train_dict.py --out {args.out} first")
    pairs = read_pairs_tsv(pairs_path)
    articles = unique_articles(pairs)
    previous = provenance.recorded_outputs(out_dir)
    if kind == "distribution":
        result, inputs, extra = _lda_labels(args, out_dir, pairs, articles, model_input)
    else:
        result, inputs, extra = _space_labels(args, out_dir, pairs, articles, name, space_path, target)
    c = result.counts
    cli.log(f"labelled {c['images_labelled']} of {c['images_in']} images from {c['articles_labelled']} articles "
            f"in {extra['timing_s']:.1f} s; excluded articles: {c['excluded_articles']} "
            f"(images: {c['excluded_images']})")

    k = result.labels.shape[1]
    npy, index, arts = out_dir / "labels.npy", out_dir / "index.txt", out_dir / "articles.txt"
    interchange = out_dir / f"training_labels{k}.json"
    io.save_npy(npy, result.labels)
    io.write_lines(index, result.images)
    io.write_lines(arts, result.articles)
    io.write_json(interchange, labels.interchange_json(result, _collection_root(pairs_path)), indent=None)
    outputs = [npy, index, arts, interchange]
    provenance.remove_stale_outputs(previous, outputs)
    provenance.write_meta(out_dir, STAGE, args, inputs=inputs, outputs=outputs,
                          extra={**extra, "targets": targets.describe(target),
                                 "row_sums": {"min": float(result.labels.sum(axis=1).min()),
                                              "max": float(result.labels.sum(axis=1).max())},
                                 "counts": c})
    cli.log(f"wrote {npy} {result.labels.shape}")
    return 0


def _lda_labels(args, out_dir: Path, pairs, articles, model_file: Path):
    """The paper's topic rows (the stage's code path before --space existed)."""
    lem, stop = args.lemmatizer, args.stop_words
    if (model_file.parent / MANIFEST).is_file():  # an LDA space saved by space.save: its recorded tokenizer
        tok = read_manifest(model_file.parent, verify=False).get("tokenizer") or {}
        lem, stop = lem or tok.get("lemmatizer"), stop or tok.get("stop_words")
    tm = TopicModel.load(model_file, lemmatizer=lem, stop_words=stop)  # fail early, here
    lemmatizer, fallback = resolve_lemmatizer_noted(tm.lemmatizer)
    if fallback:
        cli.log(f"WARNING: {fallback}")
    stop_record = stop_words_record(tm.stop_words)
    cli.log(f"{len(pairs)} images, {len(articles)} unique articles; model {model_file} "
            f"({tm.num_topics} topics, {len(tm.dictionary)} words"
            + (", dictionary re-filtered as the release's label script does" if tm.dictionary_refiltered else "")
            + f"); lemmatizer {lemmatizer}; stop words {tm.stop_words}; rows {args.label_rows}"
            + (f" (cut-off {tm.minimum_probability:g})" if args.label_rows == "release" else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.invalidate(out_dir)

    t0 = time.perf_counter()
    vectors, status = labels.infer_articles(articles, model_file, workers=args.workers, batch_size=args.batch_size,
                                            seed=args.seed, lemmatizer=lemmatizer, progress=not args.no_progress,
                                            rows=args.label_rows, stop_words=tm.stop_words)
    elapsed = time.perf_counter() - t0
    result = labels.assemble(pairs, articles, vectors, status)
    extra = {"space": "lda", "space_dir": str(model_file.parent), "space_kind": "distribution", "similarity": "kl",
             "dim": tm.num_topics, "model": str(model_file), "num_topics": tm.num_topics, "lemmatizer": lemmatizer,
             "lemmatizer_fallback": fallback, **stop_record, "label_rows": args.label_rows,
             "minimum_probability": tm.minimum_probability if args.label_rows == "release" else None,
             "dictionary_refiltered": tm.dictionary_refiltered, "timing_s": round(elapsed, 2)}
    return result, [args.pairs or args.out / "pairs" / "pairs.tsv", model_file], extra


def _space_labels(args, out_dir: Path, pairs, articles, name: str, space_path: Path, target: str):
    """Targets from a vector space: embed each article once, transform the usable vectors."""
    space = load_text_space(space_path)  # verifies the saved files' checksums, fails early
    cli.log(f"{len(pairs)} images, {len(articles)} unique articles; space {name} at {space_path} ({space.dim} "
            f"dimensions, {space.similarity} similarity, tokenizer {space.tokenizer.spec}); target {target}")
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.invalidate(out_dir)

    t0 = time.perf_counter()
    vectors, status = space_articles.embed_articles(articles, space_path, workers=args.workers,
                                                    batch_size=args.batch_size, progress=not args.no_progress)
    rows, status = labels.vector_targets(vectors, status, target)
    elapsed = time.perf_counter() - t0
    result = labels.assemble(pairs, articles, rows, status, check=lambda y: targets.check_targets(y, target))
    extra = {"space": name, "space_dir": str(space_path), "space_kind": space.kind, "similarity": space.similarity,
             "dim": space.dim, "space_options": space.options, "tokenizer": space.tokenizer.spec,
             "timing_s": round(elapsed, 2)}
    return result, [args.pairs or args.out / "pairs" / "pairs.tsv", space_path / MANIFEST], extra


if __name__ == "__main__":
    cli.run_main(main)

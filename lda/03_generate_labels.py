"""Stage 3: label every training image with the LDA topic distribution of its article.

Reads RUN/pairs/pairs.tsv and the model in RUN/lda (or --lda-dir: any folder with
ldamodel{K}.lda + dictionary.dict, e.g. the published ldamodel40.lda). Infers each unique
article's topics once, in batches over worker processes; articles with no topic
evidence are excluded (counted, never given a NaN or uniform label). A row is the
release's get_document_topics(bow, minimum_probability=None) written into K values:
topics under the model's 0.01 cut-off are 0 and rows sum to a little less than 1
(--label-rows dense keeps every topic). Writes RUN/labels/{labels.npy float32 (N, K),
index.txt, articles.txt, training_labels{K}.json, meta.json}.

Run::

    python lda/03_generate_labels.py --out runs/demo
    python lda/03_generate_labels.py --out runs/full --lda-dir pretrained/lda --workers 8
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
from texttopicnet.text.topics import ROW_MODES, TopicModel, find_model_file  # noqa: E402

STAGE = "labels"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser()])
    p.add_argument("--pairs", type=Path, default=None, help="pairs.tsv to label (default: RUN/pairs/pairs.tsv)")
    p.add_argument("--lda-dir", type=Path, default=None,
                   help="LDA model folder or .lda file (default: RUN/lda); the published ldamodel40.lda works too")
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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config("generate_labels", args)
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    out_dir = args.out / "labels"
    pairs_path = args.pairs or args.out / "pairs" / "pairs.tsv"
    lda_dir = args.lda_dir or args.out / "lda"
    if (provenance.stage_is_done(out_dir, STAGE) and not args.force
            and inputs_unchanged(out_dir, [pairs_path, find_model_file(lda_dir)])):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    if args.lda_dir is None and not provenance.stage_is_done(lda_dir, "lda"):
        raise UserError(f"{lda_dir}: the LDA stage has not finished (no valid meta.json); "
                        f"run lda/02_learn_lda.py --out {args.out} first")
    if args.pairs is None and pairs_path.exists() and not provenance.stage_is_done(pairs_path.parent, "pairs"):
        raise UserError(f"{pairs_path.parent}: the pairs stage has not finished (no valid meta.json); "
                        f"run lda/01_build_train_dict.py --out {args.out} first")
    pairs = read_pairs_tsv(pairs_path)
    articles = unique_articles(pairs)
    model_file = find_model_file(lda_dir)
    tm = TopicModel.load(model_file, lemmatizer=args.lemmatizer, stop_words=args.stop_words)  # fail early, here
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
    c = result.counts
    cli.log(f"labelled {c['images_labelled']} of {c['images_in']} images from {c['articles_labelled']} articles "
            f"in {elapsed:.1f} s; excluded articles: {c['excluded_articles']} (images: {c['excluded_images']})")

    k = tm.num_topics
    npy, index, arts = out_dir / "labels.npy", out_dir / "index.txt", out_dir / "articles.txt"
    interchange = out_dir / f"training_labels{k}.json"
    io.save_npy(npy, result.labels)
    io.write_lines(index, result.images)
    io.write_lines(arts, result.articles)
    io.write_json(interchange, labels.interchange_json(result, _collection_root(pairs_path)), indent=None)
    provenance.write_meta(out_dir, STAGE, args, inputs=[pairs_path, model_file],
                          outputs=[npy, index, arts, interchange],
                          extra={"model": str(model_file), "num_topics": k, "lemmatizer": lemmatizer,
                                 "lemmatizer_fallback": fallback, **stop_record, "label_rows": args.label_rows,
                                 "minimum_probability": (tm.minimum_probability if args.label_rows == "release"
                                                         else None),
                                 "dictionary_refiltered": tm.dictionary_refiltered,
                                 "row_sums": {"min": float(result.labels.sum(axis=1).min()),
                                              "max": float(result.labels.sum(axis=1).max())},
                                 "counts": c, "timing_s": round(elapsed, 2)})
    cli.log(f"wrote {npy} {result.labels.shape}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

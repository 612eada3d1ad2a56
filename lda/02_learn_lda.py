"""Stage 2: learn the LDA topic space from the training articles (gensim), as the release does.

Reads RUN/pairs/pairs.tsv, preprocesses each unique article once (wiki markup filter, the
release's table regex, 174 stop words, NLTK WordNet lemmatiser; texttopicnet/text/preprocess.py),
builds ONE DOCUMENT PER IMAGE as the release does (an article counts once per image), a
gensim Dictionary filtered with filter_extremes(20, 0.5), a MatrixMarket bag-of-words corpus,
and trains LDA on every document. Writes RUN/lda/{dictionary.dict (filtered: the model's
vocabulary), corpus.mm, documents.txt, ldamodel{K}.lda (+ gensim side files), topics.json,
quality.json, meta.json}; tokens.txt/tokens.json are a resumable cache.

``--space NAME`` fits another text space (lsi, word2vec, doc2vec, fasttext, glove:
texttopicnet/text/spaces, docs/text_spaces.md) on the same documents (the same tokens, one
per image by default) and saves it to RUN/space/ (manifest.json + the space's files);
RUN/lda/meta.json records the space, its options (``--space-option KEY=VALUE``) and where it
is, and lda/03 labels the images with it. The default, ``lda``, is the code path above.

A finished run is redone when an argument that shapes the space changed (``--space``,
``--corpus-unit``, ``--num-topics``, ...); --force redoes it anyway.

Run::

    python lda/02_learn_lda.py --out runs/demo --no-below 3 --passes 10 --reproducible   # tiny demo corpus
    python lda/02_learn_lda.py --out runs/full                                           # paper settings
    python lda/02_learn_lda.py --out runs/demo --space word2vec --space-option dim=100 --space-option min_count=2
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gensim.corpora import MmCorpus  # noqa: E402

from texttopicnet.core import cli, io, provenance  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402
from texttopicnet.data.pairs import inputs_unchanged, read_pairs_tsv, unique_articles  # noqa: E402
from texttopicnet.text import lda_train, preprocess, space_train  # noqa: E402
from texttopicnet.text.spaces import DEFAULT_SPACE, SPACES, default_options  # noqa: E402
from texttopicnet.text.topics import DICTIONARY_NAME, model_filename, save_lda  # noqa: E402

STAGE = "lda"
SPACE_DIR = "space"  # RUN/space: where a space other than LDA is saved
# Arguments that shape the outputs (a finished run with other values is redone), per space.
# (Another pairs file is another input path, which inputs_unchanged already tells apart.)
COMMON_KEYS = ("space", "corpus_unit", "lemmatizer", "stop_words", "seed")
LDA_KEYS = ("num_topics", "no_below", "no_above", "keep_n", "passes", "chunksize", "iterations", "reproducible",
            "holdout", "coherence")
SPACE_KEYS = ("space_option",)


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser()])
    p.add_argument("--pairs", type=Path, default=None, help="pairs.tsv to read (default: RUN/pairs/pairs.tsv)")
    p.add_argument("--space", choices=SPACES, default=DEFAULT_SPACE,
                   help="the text space the CNN learns to predict: lda = the paper's topic model (the options below); "
                        "lsi / word2vec / doc2vec / fasttext / glove = the related work's spaces "
                        "(docs/text_spaces.md), fit on the same documents and saved to RUN/space")
    p.add_argument("--space-option", action="append", default=None, metavar="KEY=VALUE",
                   help="an option of a space other than lda, repeatable (e.g. dim=100, min_count=2, epochs=10, "
                        "weighting=tfidf, workers=4, vectors=glove.6B.50d.txt); defaults are the related work's, "
                        "see texttopicnet/text/spaces/<space>.py. workers=1 (their default) is the reproducible one")
    p.add_argument("--num-topics", type=int, default=40,
                   help="LDA topics; the paper found 40 best on validation among the sizes it tried")
    p.add_argument("--corpus-unit", choices=lda_train.CORPUS_UNITS, default="image",
                   help="image = one LDA document per training image, as the release (an article counts once "
                        "per image: filter_extremes counts and topic weights follow image counts); article = "
                        "one document per unique article")
    p.add_argument("--no-below", type=int, default=20,
                   help="drop words in fewer documents than this (release: filter_extremes(no_below=20)); "
                        "use 2-5 for the small demo corpus")
    p.add_argument("--no-above", type=float, default=0.5,
                   help="drop words in more than this fraction of documents (release: no_above=0.5)")
    p.add_argument("--keep-n", type=int, default=100000,
                   help="keep at most this many most frequent words after filtering (gensim's default, which "
                        "the release's filter_extremes call used); 0 keeps all")
    p.add_argument("--passes", type=int, default=1,
                   help="passes over the corpus (the paper used gensim's default, 1; small corpora need ~10+)")
    p.add_argument("--chunksize", type=int, default=2000, help="documents per online LDA update (gensim default)")
    p.add_argument("--iterations", type=int, default=50, help="inference iterations per document (gensim default)")
    p.add_argument("--reproducible", action="store_true",
                   help="single-process LdaModel seeded by --seed: identical topics on every run "
                        "(gensim's LdaMulticore, the paper's and the default here, is not reproducible)")
    p.add_argument("--lemmatizer", choices=preprocess.LEMMATIZERS, default=preprocess.DEFAULT_LEMMATIZER,
                   help="wordnet = NLTK's WordNetLemmatizer, the release's (needs WordNet data: python -m "
                        "texttopicnet.text.wordnet --install; fails without it); auto = WordNet, else simplemma "
                        "with a warning; simplemma also lemmatises verbs/adjectives. Recorded in meta.json")
    p.add_argument("--stop-words", choices=tuple(preprocess.STOP_LISTS), default=preprocess.DEFAULT_STOP_WORDS,
                   help="release = the 174-word English list of stop-words 2015.x-2018.7.23 (the release's era, "
                        "recorded in the package); package = the installed stop-words package's list "
                        "(1,333 words in 2025.11.4)")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="fraction of articles (at most 2000) kept out of LDA training, with all their images, "
                        "to measure held-out perplexity; 0 (default) trains on everything, as the release did")
    p.add_argument("--coherence", choices=("u_mass", "c_v", "c_npmi"), default="u_mass",
                   help="topic coherence measure (u_mass streams the corpus; c_v/c_npmi read up to 5000 articles)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def check_args(args) -> None:
    if args.num_topics < 2:
        raise UserError(f"--num-topics must be >= 2, got {args.num_topics}")
    if args.no_below < 1 or not 0 < args.no_above <= 1:
        raise UserError("--no-below must be >= 1 and --no-above in (0, 1]")
    if args.keep_n < 0:
        raise UserError(f"--keep-n must be >= 0 (0 keeps every word), got {args.keep_n}")
    if args.passes < 1 or args.chunksize < 1 or args.iterations < 1:
        raise UserError("--passes, --chunksize and --iterations must be >= 1")
    if not 0 <= args.holdout < 0.5:
        raise UserError(f"--holdout must be in [0, 0.5), got {args.holdout}")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cli.print_config("learn_lda", args)
    check_args(args)
    is_lda = args.space == "lda"
    if is_lda and args.space_option:
        raise UserError("--space-option is for the spaces other than lda; lda takes --num-topics, --no-below, ...")
    space_options = {} if is_lda else space_train.parse_options(args.space_option)
    out_dir = args.out / "lda"
    pairs_path = args.pairs or args.out / "pairs" / "pairs.tsv"
    keys = COMMON_KEYS + (LDA_KEYS if is_lda else SPACE_KEYS)
    changed = provenance.args_changed(out_dir, args, keys, defaults=vars(parser.parse_args([])))
    if (provenance.stage_is_done(out_dir, STAGE) and not args.force and inputs_unchanged(out_dir, [pairs_path])
            and not changed):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    if changed and provenance.stage_is_done(out_dir, STAGE):
        cli.log(f"redoing {out_dir}: arguments changed since it finished ({provenance.format_changes(changed)})")
    if args.pairs is None and pairs_path.exists() and not provenance.stage_is_done(pairs_path.parent, "pairs"):
        raise UserError(f"{pairs_path.parent}: the pairs stage has not finished (no valid meta.json); "
                        f"run lda/01_build_train_dict.py --out {args.out} first")
    if not is_lda:
        _note_unused_lda_flags(args, parser)
        space_dir = args.out / SPACE_DIR
        if space_dir.is_dir() and any(space_dir.iterdir()) and not (space_dir / "manifest.json").is_file():
            raise UserError(f"{space_dir}: exists and is not a saved text space; move it away (the {args.space} "
                            f"space is saved there)")
    pairs = read_pairs_tsv(pairs_path)
    articles = unique_articles(pairs)
    lemmatizer, fallback = preprocess.resolve_lemmatizer_noted(args.lemmatizer)
    if fallback:
        cli.log(f"WARNING: {fallback}")
    stop_record = preprocess.stop_words_record(args.stop_words)
    cli.log(f"{len(pairs)} images, {len(articles)} unique articles from {pairs_path}; lemmatizer: {lemmatizer}; "
            f"stop words: {args.stop_words} ({stop_record['stop_words_count']} words)")
    previous = provenance.recorded_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance.invalidate(out_dir)
    progress = not args.no_progress
    t0 = time.perf_counter()

    tokens_path, stats = lda_train.tokenize_articles(articles, out_dir, lemmatizer, workers=args.workers,
                                                        progress=progress, reuse=not args.force,
                                                        stop_words=args.stop_words)
    cli.log(f"preprocessing: {stats.tokens} tokens; {len(stats.empty_after_preprocessing)} articles empty after "
            f"preprocessing, {len(stats.unreadable)} unreadable" + (" (reused tokens.txt)" if stats.reused else ""))
    for line in stats.unreadable[:5]:
        cli.log(f"  unreadable: {line}")
    t_pre = time.perf_counter() - t0
    common = {"pairs": pairs, "articles": articles, "pairs_path": pairs_path, "tokens_path": tokens_path,
              "stats": stats, "lemmatizer": lemmatizer, "fallback": fallback, "stop_record": stop_record,
              "t_pre": t_pre}
    if is_lda:
        outputs = _learn_lda(args, out_dir, **common)
    else:
        outputs = _fit_space(args, out_dir, space_options, **common)
    removed = provenance.remove_stale_outputs(previous, outputs)
    if removed:
        cli.log(f"removed {len(removed)} file(s) of the previous run: " + ", ".join(p.name for p in removed[:8]))
    cli.log(f"wrote {out_dir}")
    return 0


def _note_unused_lda_flags(args, parser) -> None:
    defaults = vars(parser.parse_args([]))
    unused = [k for k in LDA_KEYS if getattr(args, k) != defaults[k]]
    if unused:
        cli.log(f"note: {', '.join('--' + k.replace('_', '-') for k in unused)} configure the lda space only; "
                f"{args.space} takes --space-option KEY=VALUE (its defaults: {default_options(args.space)})")


def _learn_lda(args, out_dir: Path, pairs, articles, pairs_path, tokens_path, stats, lemmatizer, fallback,
               stop_record, t_pre) -> list[Path]:
    """The paper's LDA (the stage's code path before --space existed, unchanged). Returns the outputs."""
    doc_articles = lda_train.document_articles(pairs, articles, args.corpus_unit)
    dictionary, vocab_before = lda_train.build_dictionary(tokens_path, args.no_below, args.no_above,
                                                          keep_n=args.keep_n or None, doc_articles=doc_articles)
    cli.log(f"dictionary over {len(doc_articles)} documents (one per {args.corpus_unit}): {vocab_before} words -> "
            f"{len(dictionary)} after filter_extremes(no_below={args.no_below}, no_above={args.no_above}, "
            f"keep_n={args.keep_n or None})")
    dict_path, mm_path, docs_path = out_dir / DICTIONARY_NAME, out_dir / "corpus.mm", out_dir / "documents.txt"
    with io.atomic_path(dict_path) as tmp:
        dictionary.save(str(tmp))
    documents, no_words, with_words = lda_train.build_bow_corpus(tokens_path, dictionary, articles, mm_path,
                                                                 doc_articles)
    io.write_lines(docs_path, documents)
    corpus = MmCorpus(str(mm_path))
    cli.log(f"corpus: {len(documents)} documents; {len(no_words)} articles have no dictionary word (empty rows, "
            f"as in the release)")

    excluded, heldout_first = lda_train.heldout_rows(doc_articles, with_words, args.holdout, args.seed)
    train = lda_train.Subset(corpus, excluded) if excluded else corpus
    if len(train) < args.num_topics:
        cli.log(f"warning: {len(train)} training documents for {args.num_topics} topics; topics will be noisy")
    cli.log(f"training LDA: {args.num_topics} topics, {args.passes} pass(es), {len(train)} documents "
            f"({len(heldout_first)} articles, {len(excluded)} documents held out) ...")
    t1 = time.perf_counter()
    lda, mode = lda_train.train_lda(train, dictionary, args.num_topics, args.passes, args.seed, args.workers,
                                       args.reproducible, chunksize=args.chunksize, iterations=args.iterations)
    t_lda = time.perf_counter() - t1
    cli.log(f"trained with {mode} in {t_lda:.1f} s; top words:")
    cli.log(lda_train.format_topics(lda))

    quality = lda_train.evaluate(lda, dictionary, train, [corpus[i] for i in heldout_first], tokens_path,
                                    total_docs=len(corpus),
                                    coherence=args.coherence, seed=args.seed, workers=args.workers)
    cli.log(f"held-out perplexity: {quality['heldout_perplexity']}; coherence ({args.coherence}): "
            f"{quality['coherence']['mean']}")

    model_files = save_lda(lda, out_dir / model_filename(args.num_topics))
    topics_path, quality_path = out_dir / "topics.json", out_dir / "quality.json"
    io.write_json(topics_path, lda_train.topics_json(lda))
    io.write_json(quality_path, {**quality, "lda_mode": mode, "train_docs": len(train)})
    counts = {**stats.as_dict(), "no_dictionary_words": len(no_words), "corpus_documents": len(documents),
              "images": len(pairs), "vocabulary_before_filter": vocab_before, "vocabulary": len(dictionary),
              "train_documents": len(train), "heldout_articles": len(heldout_first),
              "heldout_documents": len(excluded)}
    outputs = [dict_path, mm_path, Path(f"{mm_path}.index"), docs_path, topics_path, quality_path, *model_files]
    provenance.write_meta(
        out_dir, STAGE, args, inputs=[pairs_path],
        outputs=outputs,
        extra={"space": "lda", "space_dir": str(out_dir), "lemmatizer": lemmatizer,
               "lemmatizer_requested": args.lemmatizer, "lemmatizer_fallback": fallback,
               **stop_record, "corpus_unit": args.corpus_unit, "keep_n": args.keep_n or None,
               "dictionary_saved": "after filter_extremes (the release saved it before; TopicModel.load accepts both)",
               "lda_mode": mode, "counts": counts,
               "excluded": {"empty_after_preprocessing": stats.empty_after_preprocessing[:1000],
                            "no_dictionary_words": no_words[:1000], "unreadable": stats.unreadable[:1000]},
               "timing_s": {"preprocessing": round(t_pre, 2), "lda": round(t_lda, 2)}})
    return outputs


def _fit_space(args, out_dir: Path, options: dict, pairs, articles, pairs_path, tokens_path, stats, lemmatizer,
               fallback, stop_record, t_pre) -> list[Path]:
    """A space other than LDA on the same documents, saved to RUN/space. Returns the outputs."""
    doc_articles = lda_train.document_articles(pairs, articles, args.corpus_unit)
    tokenizer = {"name": "project", "lemmatizer": lemmatizer, "stop_words": args.stop_words}
    space_dir = args.out / SPACE_DIR
    cli.log(f"fitting the {args.space} space on {len(doc_articles)} documents (one per {args.corpus_unit}), "
            f"options {options or '(defaults)'} ...")
    t1 = time.perf_counter()
    space = space_train.fit_space(args.space, tokens_path, doc_articles, args.seed, tokenizer, options)
    t_fit = time.perf_counter() - t1
    space.save(space_dir)
    outputs = space_train.space_files(space_dir)
    cli.log(f"{args.space}: {space.dim} dimensions, {space.similarity} similarity, "
            f"{len(space.vocabulary())} words; fit in {t_fit:.1f} s; saved to {space_dir}")
    counts = {**stats.as_dict(), "corpus_documents": len(doc_articles), "images": len(pairs),
              "vocabulary": len(space.vocabulary())}
    provenance.write_meta(
        out_dir, STAGE, args, inputs=[pairs_path], outputs=outputs,
        extra={"space": args.space, "space_dir": str(space_dir), "space_kind": space.kind,
               "similarity": space.similarity, "dim": space.dim, "space_options": space.options,
               "tokenizer": space.tokenizer.spec, "space_info": space.info,
               "lemmatizer": lemmatizer, "lemmatizer_requested": args.lemmatizer, "lemmatizer_fallback": fallback,
               **stop_record, "corpus_unit": args.corpus_unit, "counts": counts,
               "excluded": {"empty_after_preprocessing": stats.empty_after_preprocessing[:1000],
                            "unreadable": stats.unreadable[:1000]},
               "timing_s": {"preprocessing": round(t_pre, 2), "fit": round(t_fit, 2)}})
    return outputs


if __name__ == "__main__":
    cli.run_main(main)

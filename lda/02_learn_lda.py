"""Stage 2: learn the LDA topic space from the training articles (gensim), as the release does.

Reads RUN/pairs/pairs.tsv, preprocesses each unique article once (wiki markup filter, the
release's table regex, 174 stop words, NLTK WordNet lemmatiser; texttopicnet/text/preprocess.py),
builds ONE DOCUMENT PER IMAGE as the release does (an article counts once per image), a
gensim Dictionary filtered with filter_extremes(20, 0.5), a MatrixMarket bag-of-words corpus,
and trains LDA on every document. Writes RUN/lda/{dictionary.dict (filtered: the model's
vocabulary), corpus.mm, documents.txt, ldamodel{K}.lda (+ gensim side files), topics.json,
quality.json, meta.json}; tokens.txt/tokens.json are a resumable cache.

Run::

    python lda/02_learn_lda.py --out runs/demo --no-below 3 --passes 10 --reproducible   # tiny demo corpus
    python lda/02_learn_lda.py --out runs/full                                           # paper settings
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
from texttopicnet.text import lda_train, preprocess  # noqa: E402
from texttopicnet.text.topics import DICTIONARY_NAME, model_filename, save_lda  # noqa: E402

STAGE = "lda"


def build_parser():
    p = cli.make_parser(__doc__, parents=[cli.io_parser(), cli.seed_parser(), cli.workers_parser()])
    p.add_argument("--pairs", type=Path, default=None, help="pairs.tsv to read (default: RUN/pairs/pairs.tsv)")
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
    args = build_parser().parse_args(argv)
    cli.print_config("learn_lda", args)
    check_args(args)
    out_dir = args.out / "lda"
    pairs_path = args.pairs or args.out / "pairs" / "pairs.tsv"
    if provenance.stage_is_done(out_dir, STAGE) and not args.force and inputs_unchanged(out_dir, [pairs_path]):
        cli.log(f"already done: {out_dir} (use --force to redo)")
        return 0
    if args.pairs is None and pairs_path.exists() and not provenance.stage_is_done(pairs_path.parent, "pairs"):
        raise UserError(f"{pairs_path.parent}: the pairs stage has not finished (no valid meta.json); "
                        f"run lda/01_build_train_dict.py --out {args.out} first")
    pairs = read_pairs_tsv(pairs_path)
    articles = unique_articles(pairs)
    lemmatizer, fallback = preprocess.resolve_lemmatizer_noted(args.lemmatizer)
    if fallback:
        cli.log(f"WARNING: {fallback}")
    stop_record = preprocess.stop_words_record(args.stop_words)
    cli.log(f"{len(pairs)} images, {len(articles)} unique articles from {pairs_path}; lemmatizer: {lemmatizer}; "
            f"stop words: {args.stop_words} ({stop_record['stop_words_count']} words)")
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
    provenance.write_meta(
        out_dir, STAGE, args, inputs=[pairs_path],
        outputs=[dict_path, mm_path, Path(f"{mm_path}.index"), docs_path, topics_path, quality_path, *model_files],
        extra={"lemmatizer": lemmatizer, "lemmatizer_requested": args.lemmatizer, "lemmatizer_fallback": fallback,
               **stop_record, "corpus_unit": args.corpus_unit, "keep_n": args.keep_n or None,
               "dictionary_saved": "after filter_extremes (the release saved it before; TopicModel.load accepts both)",
               "lda_mode": mode, "counts": counts,
               "excluded": {"empty_after_preprocessing": stats.empty_after_preprocessing[:1000],
                            "no_dictionary_words": no_words[:1000], "unreadable": stats.unreadable[:1000]},
               "timing_s": {"preprocessing": round(t_pre, 2), "lda": round(t_lda, 2)}})
    cli.log(f"wrote {out_dir}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)

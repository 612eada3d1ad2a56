"""WordNet 3.0 data for NLTK's WordNetLemmatizer (the release's lemmatiser), offline.

NLTK reads WordNet from ``<data dir>/corpora/wordnet/`` (or ``wordnet.zip``), where
``<data dir>`` is any entry of ``nltk.data.path`` (``$NLTK_DATA`` first). This module
fills that folder without internet where the Debian/Ubuntu packages ``wordnet-base``
and ``wordnet-sense-index`` are installed: it COPIES their WordNet 3.0 database from
``/usr/share/wordnet`` (NLTK >= 3.9 refuses to read corpora through paths outside its
data folders, so a symlink will not do) and writes the small ``lexnames`` table those
packages lack (45 lines ``NN<TAB>lexicographer file<TAB>syntactic category``, the
table of the lexnames(5WN) man page). Elsewhere it falls back to
``nltk.download('wordnet')``, which needs internet once.

Run::

    python -m texttopicnet.text.wordnet --install            # $NLTK_DATA, else first writable nltk.data.path
    python -m texttopicnet.text.wordnet --install /opt/nltk_data
    python -m texttopicnet.text.wordnet --check              # exit 0 when NLTK can lemmatise with WordNet

Installing is idempotent (a complete folder is left alone) and atomic (files are copied
into a temporary folder that is renamed into place). On Debian::

    apt-get install -y wordnet-base wordnet-sense-index && python -m texttopicnet.text.wordnet --install
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from ..core.errors import UserError

DEBIAN_DIR = Path("/usr/share/wordnet")
DEBIAN_LICENSE = Path("/usr/share/doc/wordnet-base/copyright")

# The database files NLTK's WordNetCorpusReader opens (its _FILES), less ``lexnames``, which
# we write ourselves. wordnet-sense-index provides index.sense; wordnet-base the rest.
DATABASE_FILES = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
                  "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")

# WordNet 3.0's 45 lexicographer files, in file-number order (lexnames(5WN)). The
# syntactic category follows from the prefix: 1 noun, 2 verb, 3 adjective, 4 adverb.
LEXICOGRAPHER_FILES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# What the release's lemmatiser does (noun POS): the checks every install must pass.
KNOWN_LEMMAS = {"dates": "date", "was": "wa", "came": "came", "geese": "goose", "churches": "church"}


def lexnames_table() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line, numbered from 00."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n"
                   for i, name in enumerate(LEXICOGRAPHER_FILES))


def _creatable(path: Path) -> bool:
    """True when ``path`` is a writable folder or could be created as one."""
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def default_data_dir() -> Path:
    """Where ``--install`` writes: ``$NLTK_DATA``'s first entry, else the first writable ``nltk.data.path`` entry."""
    env = os.environ.get("NLTK_DATA", "")
    first = next((e for e in env.split(os.pathsep) if e), None)
    if first:
        return Path(first)
    import nltk

    for entry in nltk.data.path:
        if entry and _creatable(Path(entry)):
            return Path(entry)
    raise UserError("no writable NLTK data folder: set NLTK_DATA to a writable folder, or pass one to --install")


def check_folder(folder: str | os.PathLike) -> str | None:
    """``None`` when ``folder`` (a ``corpora/wordnet`` folder) lemmatises as the release did, else the problem."""
    folder = Path(folder)
    missing = [n for n in (*DATABASE_FILES, "lexnames") if not (folder / n).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    import nltk

    # NLTK >= 3.9 reads corpora only under nltk.data.path entries: put the folder's data root
    # (<data dir>/corpora/wordnet) first on the path for the duration of the check.
    if folder.name != "wordnet" or folder.parent.name != "corpora":
        return f"{folder} is not a <data dir>/corpora/wordnet folder"
    data_root = str(folder.parent.parent)
    added = data_root not in nltk.data.path
    if added:
        nltk.data.path.insert(0, data_root)
    try:
        reader = _lemma_reader(str(folder))
        for word, lemma in KNOWN_LEMMAS.items():
            got = min(reader._morphy(word, "n"), key=len, default=word)  # WordNetLemmatizer's rule
            if got != lemma:
                return f"lemmatises {word!r} as {got!r}, expected {lemma!r}"
    except Exception as exc:  # a damaged file: ValueError, AssertionError, OSError, PermissionError ...
        return f"{exc.__class__.__name__}: {exc}"
    finally:
        if added:
            nltk.data.path.remove(data_root)
    return None


def _find_corpus():
    """NLTK's own lookup of the WordNet corpus (``$NLTK_DATA`` first; a folder or ``wordnet.zip``)."""
    import nltk

    try:
        return nltk.data.find("corpora/wordnet")
    except LookupError:
        return nltk.data.find("corpora/wordnet.zip/wordnet/")  # what nltk.download leaves


_LEMMATIZER = None


def _lemma_reader(root):
    """NLTK's WordNetCorpusReader minus the multilingual sense map (see :func:`noun_lemmatizer`)."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class LemmaOnlyReader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return {}  # the OMW sense map: _morphy never reads it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
        return LemmaOnlyReader(root, None)


def noun_lemmatizer():
    """``WordNetLemmatizer().lemmatize`` (noun POS, the release's call) without NLTK's 15-second start.

    NLTK >= 3.9's ``WordNetCorpusReader.__init__`` always builds a WordNet-3.0 sense map for
    the Open Multilingual WordNet (``map_wn``: it parses ``index.sense`` twice, ~600k lines),
    which lemmatisation never reads. This reader skips that map and is otherwise NLTK's own:
    the lemma is ``min(reader._morphy(word, "n"), key=len)`` or the word, exactly as
    ``WordNetLemmatizer.lemmatize`` computes it (tests compare the two on real texts).
    Raises ``LookupError`` when the data is not on NLTK's search path. Cached per process.
    """
    global _LEMMATIZER
    if _LEMMATIZER is None:
        morphy = _lemma_reader(_find_corpus())._morphy

        def lemmatize(word: str) -> str:
            lemmas = morphy(word, "n")
            return min(lemmas, key=len) if lemmas else word

        _LEMMATIZER = lemmatize
    return _LEMMATIZER


def nltk_wordnet_works() -> bool:
    """True when NLTK finds WordNet data on ``nltk.data.path`` here and lemmatises as the release did."""
    try:
        lemmatize = noun_lemmatizer()
        return all(lemmatize(w) == lemma for w, lemma in KNOWN_LEMMAS.items())
    except (ImportError, LookupError, OSError, ValueError):
        return False


def _copy_debian(source: Path, target: Path, log) -> None:
    corpora = target.parent
    corpora.mkdir(parents=True, exist_ok=True)
    # Staged as <corpora>/.wordnet-XXXX/corpora/wordnet so it can be checked with NLTK
    # before it is renamed into place (same file system: the rename is atomic).
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    tmp = staging / "corpora" / "wordnet"
    tmp.mkdir(parents=True)
    try:
        for name in DATABASE_FILES:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_table(), encoding="ascii")
        if DEBIAN_LICENSE.is_file():  # WordNet's licence asks that it travel with copies
            shutil.copyfile(DEBIAN_LICENSE, tmp / "LICENSE")
        problem = check_folder(tmp)
        if problem:
            raise UserError(f"the WordNet files in {source} do not work with NLTK ({problem})")
        if target.exists():  # an incomplete earlier install (a complete one returned before)
            shutil.rmtree(target)
        os.replace(tmp, target)
        log(f"WordNet 3.0 copied from {source} into {target}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _warn_if_not_searched(data_dir: Path, log) -> None:
    import nltk

    searched = {os.path.realpath(str(p)) for p in nltk.data.path}
    if os.path.realpath(data_dir) not in searched:
        log(f"note: {data_dir} is not on NLTK's search path; set NLTK_DATA={data_dir} where the stages run")


def install(data_dir: str | os.PathLike | None = None, source: str | os.PathLike = DEBIAN_DIR,
            download: bool = True, log=print) -> Path:
    """Make ``<data_dir>/corpora/wordnet`` usable by NLTK; returns the folder (or the zip NLTK downloaded).

    Copies ``source`` (Debian's /usr/share/wordnet) when it holds the database, else
    ``nltk.download('wordnet')`` when ``download``; raises :class:`UserError` with the
    fix when neither works.
    """
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    source = Path(source)
    target = data_dir / "corpora" / "wordnet"
    if target.is_dir() and check_folder(target) is None:
        log(f"WordNet already installed in {target}")
        return target
    zipped = data_dir / "corpora" / "wordnet.zip"
    if zipped.is_file() and not target.exists():
        log(f"WordNet already installed in {zipped} (nltk.download)")
        return zipped
    if all((source / n).is_file() for n in DATABASE_FILES):
        _copy_debian(source, target, log)
        _warn_if_not_searched(data_dir, log)
        return target
    if download:
        import nltk

        log(f"{source} has no WordNet database; trying nltk.download('wordnet') into {data_dir} ...")
        if nltk.download("wordnet", download_dir=str(data_dir), quiet=True):
            return zipped if zipped.is_file() else target
    raise UserError(
        f"cannot install WordNet into {data_dir}: {source} lacks the database and nltk.download('wordnet') "
        f"{'failed (no internet?)' if download else 'was not allowed'}. On Debian/Ubuntu: apt-get install -y "
        f"wordnet-base wordnet-sense-index, then python -m texttopicnet.text.wordnet --install")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--install", nargs="?", const="", metavar="DIR",
                   help="NLTK data folder to fill (default: $NLTK_DATA, else the first writable nltk.data.path entry)")
    g.add_argument("--check", action="store_true", help="exit 0 when NLTK's WordNetLemmatizer works here")
    p.add_argument("--source", type=Path, default=DEBIAN_DIR,
                   help="WordNet 3.0 database folder to copy (Debian's wordnet-base + wordnet-sense-index)")
    p.add_argument("--no-download", action="store_true", help="never fall back to nltk.download('wordnet')")
    args = p.parse_args(argv)
    if args.check:
        ok = nltk_wordnet_works()
        print("WordNet works with NLTK" if ok else "WordNet data not found by NLTK (nltk.data.path); "
              "run python -m texttopicnet.text.wordnet --install")
        return 0 if ok else 1
    try:
        install(args.install or None, source=args.source, download=not args.no_download)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training pairs: which ImageCLEF Wikipedia images the paper trains on, and why the others are not.

With the default keep rule ``release`` (REFERENCE.md "Stage 1", the original
``generate_train_dict.py``) an image is kept when:

- its file name's second dot-separated part is exactly ``jpg`` or ``jpeg`` (so ~30k PNGs
  are dropped by name; a PNG *named* ``.jpg`` is kept, as PIL reads it),
- its metadata's first English caption names an article (``caption@article`` not empty),
- PIL reads its header and both sides are >= 256 px.

On top of the release, and counted under their own reasons: paths that lead outside the
collection are refused (``outside_collection``), an article that is not on disk is
dropped (``article_missing``: the release's LDA script crashed on it), a header claiming
more than ``max_pixels`` pixels is refused before decoding (``decompression_bomb``) and,
with ``decode="full"`` (default), an image whose pixel data does not decode even
leniently is dropped (``undecodable``; the packing stage would skip it anyway). The
rule ``ours`` (the toolkit's earlier rules) also demands JPEG bytes (``not_jpeg``) and a
non-empty article (``article_empty``); see :data:`texttopicnet.data.readers.imageclef.KEEP_RULES`.

Each removed image is counted under the first reason that applies, in the order of
:data:`REASONS`. Checks run in worker processes (``check_items``); nothing raises on a
bad file.

Use::

    from texttopicnet.data.readers import imageclef
    from texttopicnet.data import pairs
    items = imageclef.list_imageclef(imageclef.find_collection_root("data"))
    kept, counts = pairs.filter_items(items, workers=2)
    pairs.write_pairs_tsv(path, kept); pairs.read_pairs_tsv(path)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DataError
from ..core.io import atomic_open
from ..core.paths import OUTSIDE
from .images import MAX_PIXELS, ImageReadError, check_decodes, probe
from .readers.imageclef import keep_rule

MIN_SIDE = 256  # the paper keeps images whose width and height are both >= 256 px
PAPER_KEPT = 100_785  # images the paper trained on
PAPER_UNIQUE_ARTICLES = 35_582  # their distinct articles

# Removal reasons, in the order they are checked (an image counts under the first one).
REASON_HELP = {
    "extension": "the keep rule does not read this file name (release: name.split('.')[1] is not exactly "
                 "'jpg' or 'jpeg': PNG, GIF, SVG, .JPG, a.b.jpg, no dot)",
    "no_metadata": "no metadata/<folder>/<id>.xml for the image",
    "bad_metadata": "the metadata is not well-formed XML or unreadable (the release crashed on it)",
    "no_english_article": "no English caption naming an article (release: exact {xml:lang: en} child, "
                          "its first caption, article attribute absent or empty)",
    OUTSIDE: "a metadata file, caption@article or image that resolves outside the collection root "
             "(../.., absolute path, symlink): refused, never read",
    "article_missing": "the article file named by the caption is not on disk (the release's LDA script crashed)",
    "article_empty": "the article file is empty or whitespace only (keep rule 'ours' only; the release kept "
                     "these and stage 3 excludes them)",
    "unreadable": "the image file cannot be opened (vanished, no permission)",
    "corrupt": "PIL cannot read the image header (not an image, empty, cut short; the release crashed on it)",
    "decompression_bomb": "the header claims more pixels than --max-pixels: refused before decoding",
    "not_jpeg": "readable, but not JPEG content whatever its name (keep rule 'ours' only)",
    "too_small": "width or height below --min-side (256 px in the paper)",
    "undecodable": "header fine and large enough, but the pixel data does not decode even leniently "
                   "(the release kept it; --decode-check header keeps it too)",
}
REASONS = tuple(REASON_HELP)
EXAMPLES_PER_REASON = 5
DECODE_CHECKS = {
    "full": "decode the pixel data once (JPEGs at 1/8 scale) and drop what does not decode, as packing would",
    "header": "read the header only, as the release did (undecodable files are then skipped at packing)",
}


@dataclass(frozen=True)
class Pair:
    image_path: Path
    article_path: Path
    metadata_id: str


@dataclass(frozen=True)
class CheckOptions:
    """What :func:`check_item` demands beyond the listing (picklable: sent to worker processes)."""
    rule: str = "release"
    min_side: int = MIN_SIDE
    max_pixels: int | None = MAX_PIXELS
    decode: str = "full"


def article_problem(path: Path | None, need_text: bool = True) -> str | None:
    """``None`` when the article is usable, else ``article_missing`` / ``article_empty``.

    ``need_text=False`` (the release) only asks for the file to exist.
    """
    if path is None or not path.is_file():
        return "article_missing"
    if not need_text:
        return None
    try:
        if path.stat().st_size == 0:
            return "article_empty"
        with open(path, "rb") as fh:
            # A non-empty file is usable as soon as one non-whitespace byte shows up.
            while True:
                block = fh.read(1 << 16)
                if not block:
                    return "article_empty"
                if block.strip():
                    return None
    except OSError:
        return "article_empty"


def image_problem(path: Path, options: CheckOptions = CheckOptions()) -> str | None:
    """``None`` for an image the rule keeps (header, size, then optionally pixel data), else the reason."""
    rule = keep_rule(options.rule)
    try:
        info = probe(path, max_pixels=options.max_pixels)
    except ImageReadError as exc:
        return exc.reason  # unreadable / corrupt / decompression_bomb
    if rule.jpeg_bytes and not info.is_jpeg:
        return "not_jpeg"
    if info.width < options.min_side or info.height < options.min_side:
        return "too_small"
    if options.decode == "full":
        try:
            check_decodes(path, max_pixels=options.max_pixels)
        except ImageReadError as exc:
            return exc.reason if exc.reason != "corrupt" else "undecodable"
    return None


def check_item(item, options: CheckOptions | int = CheckOptions()) -> str | None:
    """The removal reason for one ``ImageCLEFItem``, or ``None`` when it is kept.

    (An int ``options`` is read as ``min_side`` with the other defaults.)
    """
    if isinstance(options, int):
        options = CheckOptions(min_side=options)
    if item.problem is not None:
        return item.problem
    reason = article_problem(item.article_path, need_text=keep_rule(options.rule).article_text)
    if reason is not None:
        return reason
    return image_problem(item.image_path, options)


def _check_chunk(args: tuple) -> list[str | None]:
    items, options, check = args
    return [check(it, options) for it in items]


def check_items(items: Sequence, workers: int = 1, options=CheckOptions(), chunk: int = 256,
                progress: bool = True, check=check_item) -> list[str | None]:
    """``check(item, options)`` for every item, in order, over ``workers`` processes (with a progress bar).

    ``check`` (a module-level function, so workers can import it) defaults to :func:`check_item`;
    the manifest corpus passes its own (``manifest_pairs.check_record``).
    """
    from tqdm import tqdm

    from ..text.preprocess import mp_context

    # Items whose listing already failed need no worker; only the rest are shipped out.
    problems = [getattr(it, "problem", None) for it in items]
    todo = [i for i, p in enumerate(problems) if p is None]
    out: list[str | None] = list(problems)
    chunks = [([items[j] for j in todo[i:i + chunk]], options, check) for i in range(0, len(todo), chunk)]
    bar = tqdm(total=len(todo), desc="checking images", unit="img", disable=not progress)
    results: list[str | None] = []
    try:
        if workers <= 1 or len(chunks) <= 1:
            for c in chunks:
                results.extend(_check_chunk(c))
                bar.update(len(c[0]))
        else:
            with mp_context().Pool(workers) as pool:
                for c, res in zip(chunks, pool.imap(_check_chunk, chunks)):
                    results.extend(res)
                    bar.update(len(c[0]))
    finally:
        bar.close()
    for j, reason in zip(todo, results):
        out[j] = reason
    return out


def filter_items(items: Sequence, workers: int = 1, min_side: int = MIN_SIDE, progress: bool = True,
                 rule: str = "release", decode: str = "full", max_pixels: int | None = MAX_PIXELS
                 ) -> tuple[list[Pair], dict]:
    """Keep the paper's images. Returns ``(pairs, counts)``; ``counts`` is what filter_counts.json holds."""
    keep_rule(rule)  # unknown names fail here, before any work
    if decode not in DECODE_CHECKS:
        raise DataError(f"unknown decode check {decode!r}; choose one of {', '.join(DECODE_CHECKS)}")
    options = CheckOptions(rule=rule, min_side=min_side, max_pixels=max_pixels, decode=decode)
    reasons = check_items(items, workers=workers, options=options, progress=progress)
    kept: list[Pair] = []
    removed: Counter = Counter()
    examples: dict[str, list[str]] = {r: [] for r in REASONS}
    for item, reason in zip(items, reasons):
        if reason is None:
            kept.append(Pair(Path(item.image_path), Path(item.article_path), item.metadata_id))
            continue
        removed[reason] += 1
        ex = examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(str(item.image_path))
    counts = {
        "images": len(items),
        "kept": len(kept),
        "paper_kept": PAPER_KEPT,
        "unique_articles": len({p.article_path for p in kept}),
        "paper_unique_articles": PAPER_UNIQUE_ARTICLES,
        "keep_rule": rule,
        "decode_check": decode,
        "min_side": min_side,
        "max_pixels": max_pixels,
        "removed": {r: removed.get(r, 0) for r in list(REASONS) + sorted(set(removed) - set(REASONS))},
        "removed_total": sum(removed.values()),
        "order": ("each removed image is counted under the first failing check, in the order of 'removed' "
                  "(outside_collection: where the path is met: metadata, then article, then image)"),
        "reasons": dict(REASON_HELP),
        "examples": {r: ex for r, ex in examples.items() if ex},
    }
    return kept, counts


def format_counts(counts: dict) -> str:
    """A short human summary of filter counts (printed by lda/01)."""
    head = (f"{counts['images']:,} files under images/ (keep rule {counts.get('keep_rule', '?')}): "
            f"{counts['kept']:,} kept (paper: {counts.get('paper_kept', PAPER_KEPT):,}) from "
            f"{counts['unique_articles']:,} unique articles (paper: "
            f"{counts.get('paper_unique_articles', PAPER_UNIQUE_ARTICLES):,}); "
            f"{counts['removed_total']:,} removed:")
    lines = [head]
    for reason, n in counts["removed"].items():
        if n:
            lines.append(f"  {reason:<20} {n:>9,}")
    return "\n".join(lines)


# --- pairs.tsv / train_dict json --------------------------------------------------------

def write_pairs_tsv(path: str | os.PathLike, pairs: Iterable[Pair]) -> None:
    """``image_path<TAB>article_path<TAB>metadata_id`` per line, absolute paths (atomic write)."""
    with atomic_open(path, "w") as fh:
        for p in pairs:
            fields = (str(p.image_path), str(p.article_path), p.metadata_id)
            if any(("\t" in f or "\n" in f) for f in fields):
                raise DataError(f"cannot store a path with a tab or newline in pairs.tsv: {fields!r}")
            fh.write("\t".join(fields) + "\n")


def read_pairs_tsv(path: str | os.PathLike) -> list[Pair]:
    """Read ``pairs.tsv``; a missing or malformed file is a :class:`DataError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pairs file not found; run lda/01_build_train_dict.py first (or pass --pairs)")
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise DataError(f"{path}:{n}: expected 3 tab-separated fields, found {len(fields)}")
            out.append(Pair(Path(fields[0]), Path(fields[1]), fields[2]))
    if not out:
        raise DataError(f"{path}: no training pairs (every image was filtered out?); see filter_counts.json")
    return out


def unique_articles(pairs: Sequence[Pair]) -> list[Path]:
    """Distinct article paths, in order of first appearance."""
    return list(dict.fromkeys(p.article_path for p in pairs))


def train_dict(pairs: Iterable[Pair], root: Path) -> dict[str, str]:
    """The original's ``train_dict_ImageCLEF_Wikipedia.json``: image path -> article path, relative to ``root``."""
    def rel(p: Path) -> str:
        try:
            return Path(os.path.relpath(p, root)).as_posix()
        except ValueError:  # another drive on Windows
            return str(p)
    return {rel(p.image_path): rel(p.article_path) for p in pairs}


def inputs_unchanged(stage_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> bool:
    """True when the inputs a finished stage recorded in meta.json still have the same checksums.

    A later stage is stale when an earlier one was redone (new pairs, new model), even if
    its own outputs are intact.
    """
    from ..core.provenance import file_checksums, read_meta

    meta = read_meta(stage_dir) or {}
    recorded = meta.get("inputs") or {}
    current = file_checksums(inputs)
    return all(recorded.get(path) == digest for path, digest in current.items()) and len(current) == len(inputs)

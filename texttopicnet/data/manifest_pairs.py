"""Training pairs from a manifest corpus: stage 1 for any folder of captioned images (``--corpus manifest:PATH``).

A manifest (``texttopicnet.data.readers.manifest``; written by ``data/make_manifest.py``)
lists one captioned image per line. Stage 1 turns it into the same ``pairs.tsv`` the
ImageCLEF corpus gives (``image_path<TAB>article_path<TAB>metadata_id``), so every later
stage runs unchanged: an image's "article" is its caption file. A caption given inline
(``text``) is written to ``RUN/pairs/texts/<ab>/<sha256 of the caption>.txt`` (UTF-8,
temp file then rename; named by content, never by the record's id, so identical captions
share one file); a ``text_file`` record points at its own file inside the manifest's folder.

Each line is counted under the first reason that removes it (:data:`REASONS`, in order):
the manifest reader's line reasons (malformed JSON, missing fields, a path leaving the
manifest's folder, a repeated id), then the split (``--splits``; default ``train`` and
records without a split), then the caption (file missing or unreadable, not UTF-8,
empty), then the image (missing, unreadable, not an image, decompression bomb, a side
under ``--min-side``, pixel data that does not decode). Short captions are kept: a
caption of a few words is what web images come with (a caption left with no word after
preprocessing is counted by lda/02 and lda/03, as ImageCLEF's empty articles are).
Transparent and palette images are kept; decoding composites them on white
(``texttopicnet.data.images.load_rgb``). An image listed twice with two captions is two
training pairs.

``--min-side`` defaults to :data:`MANIFEST_MIN_SIDE` (64 px) for manifests instead of the
paper's 256: captioned web images are often small (Flickr and Instagram thumbnails of 150
to 240 px, MIRFlickr's 500 px longest side), and the CNN sees every image resized to
256x256 anyway; below 64 px (icons, spacer and tracking GIFs, thumbnails of thumbnails)
a 4x upscale leaves nothing to learn from.

Use::

    from texttopicnet.data import manifest_pairs
    kept, counts = manifest_pairs.build_pairs("corpus/manifest.jsonl", "runs/mine/pairs/texts", workers=2)
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DataError, UserError
from ..core.paths import OUTSIDE
from .images import MAX_PIXELS
from .pairs import DECODE_CHECKS, EXAMPLES_PER_REASON, CheckOptions, Pair, check_items, image_problem
from .readers.manifest import REASONS as LINE_REASONS
from .readers.manifest import ManifestRecord, read_manifest, read_text

MANIFEST_MIN_SIDE = 64
UNSPLIT = "unsplit"  # --splits name for records without a "split" field
ALL_SPLITS = "all"
DEFAULT_SPLITS = ("train", UNSPLIT)
TEXTS_DIR = "texts"

LINE_HELP = {
    "bad_json": "the manifest line is not valid JSON (or not UTF-8)",
    "not_an_object": "the manifest line is JSON but not an object",
    "no_image": "no non-empty \"image\" string",
    "no_text": "neither a non-empty \"text\" nor a \"text_file\" (or both)",
    "bad_field": "id / tags / categories / split of the wrong type",
    OUTSIDE: "the image or text_file resolves outside the manifest's folder (../, absolute path, symlink): "
             "refused, never read",
    "duplicate_id": "an id already used by an earlier line",
}
RECORD_HELP = {
    "split_not_selected": "its split is not among --splits (default: train and records without a split)",
    "caption_unreadable": "the text_file is missing or cannot be read",
    "caption_not_utf8": "the text_file is not UTF-8 text (never decoded by guessing)",
    "caption_empty": "the caption is empty or whitespace only",
    "unstorable_path": "the image or caption path holds a tab or newline, which pairs.tsv cannot store",
    "image_missing": "the image file is not on disk",
    "unreadable": "the image file cannot be opened (no permission, a folder)",
    "corrupt": "PIL cannot read the image header (not an image, empty, cut short)",
    "decompression_bomb": "the header claims more pixels than --max-pixels: refused before decoding",
    "too_small": "width or height below --min-side (64 px by default for manifests)",
    "undecodable": "header fine, but the pixel data does not decode even leniently",
}
REASON_HELP = {**{r: LINE_HELP[r] for r in LINE_REASONS}, **RECORD_HELP}
REASONS = tuple(REASON_HELP)


@dataclass(frozen=True)
class RecordCheck:
    """What :func:`check_record` demands (picklable: sent to worker processes)."""
    min_side: int = MANIFEST_MIN_SIDE
    max_pixels: int | None = MAX_PIXELS
    decode: str = "full"


def parse_splits(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"train,unsplit"`` -> ``("train", "unsplit")``; ``"all"`` -> ``None`` (every record)."""
    if value is None:
        return DEFAULT_SPLITS
    names = [s.strip() for s in (value.split(",") if isinstance(value, str) else value) if s.strip()]
    if not names:
        raise UserError("--splits needs at least one split name (or 'all')")
    if ALL_SPLITS in names:
        return None
    return tuple(dict.fromkeys(names))


def split_selected(record: ManifestRecord, splits: tuple[str, ...] | None) -> bool:
    if splits is None:
        return True
    return (record.split if record.split is not None else UNSPLIT) in splits


def _has_control(path: Path | None) -> bool:
    return path is not None and any(c in str(path) for c in "\t\n\r")


def check_record(record: ManifestRecord, options: RecordCheck = RecordCheck()) -> str | None:
    """The removal reason of one (split-selected) record, or ``None`` when it is kept. Never raises."""
    if _has_control(record.image) or _has_control(record.text_file):
        return "unstorable_path"
    try:
        text = read_text(record)
    except ValueError:
        return "caption_not_utf8"
    except OSError:
        return "caption_unreadable"
    if not text.strip():
        return "caption_empty"
    if not record.image.is_file():
        return "image_missing" if not record.image.exists() else "unreadable"
    return image_problem(record.image, CheckOptions(rule="release", min_side=options.min_side,
                                                    max_pixels=options.max_pixels, decode=options.decode))


def check_records(records: Sequence[ManifestRecord], options: RecordCheck, workers: int = 1,
                  progress: bool = True) -> list[str | None]:
    return check_items(records, workers=workers, options=options, progress=progress, check=check_record)


def caption_file(texts_dir: Path, text: str) -> Path:
    """Where an inline caption is stored: named by the sha256 of its UTF-8 bytes, two-level fan-out."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return texts_dir / digest[:2] / f"{digest}.txt"


def write_caption(path: Path, text: str) -> None:
    """Write a caption (temp file then rename); an existing file of the right size is kept (same content)."""
    data = text.encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_unused_captions(texts_dir: Path, used: set[Path]) -> int:
    """Delete caption files of an earlier run that no pair uses any more (only under ``texts_dir``)."""
    removed = 0
    if not texts_dir.is_dir():
        return 0
    for p in texts_dir.glob("*/*.txt"):
        if p not in used:
            p.unlink()
            removed += 1
    return removed


def build_pairs(manifest: str | os.PathLike, texts_dir: str | os.PathLike, workers: int = 1,
                min_side: int = MANIFEST_MIN_SIDE, max_pixels: int | None = MAX_PIXELS, decode: str = "full",
                splits: tuple[str, ...] | None = DEFAULT_SPLITS, progress: bool = True
                ) -> tuple[list[Pair], dict]:
    """Read, check and pair a manifest. Returns ``(pairs, counts)``; counts are filter_counts.json's."""
    if decode not in DECODE_CHECKS:
        raise DataError(f"unknown decode check {decode!r}; choose one of {', '.join(DECODE_CHECKS)}")
    manifest = Path(manifest)
    texts_dir = Path(texts_dir)
    records, line_counts = read_manifest(manifest)
    removed: Counter = Counter({r: n for r, n in line_counts["skipped"].items() if n})
    examples: dict[str, list[str]] = {r: list(ex) for r, ex in line_counts["examples"].items()}

    def drop(reason: str, where: str) -> None:
        removed[reason] += 1
        ex = examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            ex.append(where)

    selected = []
    for rec in records:
        if split_selected(rec, splits):
            selected.append(rec)
        else:
            drop("split_not_selected", f"{rec.id} (split {rec.split})")
    reasons = check_records(selected, RecordCheck(min_side=min_side, max_pixels=max_pixels, decode=decode),
                            workers=workers, progress=progress)
    kept: list[Pair] = []
    used: set[Path] = set()
    for rec, reason in zip(selected, reasons):
        if reason is not None:
            drop(reason, str(rec.image))
            continue
        if rec.text is not None:
            article = caption_file(texts_dir, rec.text)
            write_caption(article, rec.text)
            used.add(article)
        else:
            article = rec.text_file
        ident = " ".join(rec.id.split("\t")).replace("\n", " ").replace("\r", " ")
        kept.append(Pair(rec.image, article, ident))
    stale = remove_unused_captions(texts_dir, used)
    split_counts = Counter(r.split if r.split is not None else UNSPLIT for r in records)
    counts = {
        "corpus": "manifest",
        "manifest": str(manifest.resolve()),
        "collection_root": str(manifest.resolve().parent),
        "images": line_counts["lines"],
        "kept": len(kept),
        "unique_articles": len({p.article_path for p in kept}),
        "inline_captions": len(used),
        "stale_captions_removed": stale,
        "splits": ALL_SPLITS if splits is None else list(splits),
        "split_sizes": dict(sorted(split_counts.items())),
        "decode_check": decode,
        "min_side": min_side,
        "max_pixels": max_pixels,
        "removed": {r: removed.get(r, 0) for r in list(REASONS) + sorted(set(removed) - set(REASONS))},
        "removed_total": sum(removed.values()),
        "order": ("each removed line is counted under the first failing check, in the order of 'removed' "
                  "(the manifest line, its split, its caption, then its image)"),
        "reasons": dict(REASON_HELP),
        "examples": {r: ex for r, ex in examples.items() if ex},
    }
    return kept, counts


def format_counts(counts: dict) -> str:
    """A short human summary (printed by lda/01)."""
    head = (f"{counts['images']:,} manifest lines ({counts['manifest']}): {counts['kept']:,} kept, "
            f"{counts['unique_articles']:,} distinct captions; {counts['removed_total']:,} removed:")
    lines = [head]
    for reason, n in counts["removed"].items():
        if n:
            lines.append(f"  {reason:<20} {n:>9,}")
    return "\n".join(lines)

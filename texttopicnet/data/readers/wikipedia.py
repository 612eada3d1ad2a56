"""Reader for the Wikipedia cross-modal dataset (Rasiwasia et al., ACM MM 2010).

Layout (``data/Wikipedia/``)::

    texts/<text_id>.xml              <document id name cat><text>...</text><imageset>...</imageset></document>
    images/<category>/<image_id>.jpg (or a flat images/<image_id>.jpg)
    trainset_txt_img_cat.list        text_id<TAB>image_id<TAB>category (1..10), 2,173 lines
    testset_txt_img_cat.list         same, 693 lines
    categories.list                  the 10 category names in id order

About 31% of the real text files are not well-formed XML (undefined entities, stray
``&`` and ``<``), so :func:`read_wiki_text` cuts the ``<text>`` body out with a
regular expression instead of an XML parser. The ``cat`` attribute inside a text
file is Wikipedia's own category id, not the 1..10 label; the label comes from the
list files.

Ids come from the list files, so they are untrusted: a text id whose ``texts/<id>.xml``
(or an image id / category name whose image path) would resolve outside the dataset root
(``../../x``, an absolute path, a symlink out) is refused and counted under
``outside_collection``: the row is dropped (a refused text) or keeps no image (a refused
image). Nothing outside the root is opened.

Use::

    from texttopicnet.data.readers import wikipedia
    root = wikipedia.find_wikipedia_root("data")
    refused = {}
    pairs = wikipedia.load_wikipedia(root, split="test", refused=refused)   # 693 WikiPair records
"""

from __future__ import annotations

import html
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import DataError
from ...core.paths import OUTSIDE, inside

FOLDER_NAME = "Wikipedia"
STANDARD_CATEGORIES = ("art", "biology", "geography", "history", "literature",
                       "media", "music", "royalty", "sport", "warfare")
SPLIT_FILES = {"train": "trainset_txt_img_cat.list", "test": "testset_txt_img_cat.list"}
HOW_TO_GET = ("run `python data/download.py wikipedia` (or `python data/make_synthetic.py --out data` "
              "for the demo corpus); see data/README.md")


@dataclass(frozen=True)
class WikiPair:
    text_id: str
    image_id: str
    category: int            # 1..number of categories, as in the list files
    category_name: str
    text: str
    image_path: Path | None  # None if the image file is absent


def _is_root(path: Path) -> bool:
    return path.is_dir() and ((path / "texts").is_dir() or (path / SPLIT_FILES["test"]).is_file())


def find_wikipedia_root(path: str | os.PathLike) -> Path:
    """The dataset root: ``path`` itself or its ``Wikipedia`` (or ``wikipedia``) child."""
    path = Path(path).expanduser()
    for cand in (path, path / FOLDER_NAME, path / FOLDER_NAME.lower()):
        if _is_root(cand):
            return cand.absolute()
    if not path.exists():
        raise DataError(f"{path}: folder not found; expected the Wikipedia cross-modal dataset; {HOW_TO_GET}")
    raise DataError(f"{path}: neither it nor {path / FOLDER_NAME} holds the Wikipedia cross-modal dataset "
                    f"(texts/ and {SPLIT_FILES['test']}); {HOW_TO_GET}")


def categories(root: str | os.PathLike) -> list[str]:
    """Category names in id order (id = index + 1): ``categories.list``, else the 10 standard names."""
    path = Path(root) / "categories.list"
    if not path.is_file():
        return list(STANDARD_CATEGORIES)
    with open(path, encoding="utf-8", errors="replace") as fh:
        names = [line.strip() for line in fh if line.strip()]
    if not names:
        raise DataError(f"{path}: empty category list; {HOW_TO_GET}")
    return names


_TEXT = re.compile(r"<text\b[^>]*>(.*?)(?:</text\s*>|<imageset\b|</document\s*>|\Z)", re.DOTALL | re.IGNORECASE)


def read_wiki_text(path: str | os.PathLike) -> str:
    """The ``<text>`` body of one text file, read leniently (never fails on malformed XML).

    Entities are decoded where they are valid (``&amp;`` -> ``&``); stray ``&`` and
    undefined entities are left as they are. Invalid UTF-8 bytes become U+FFFD.
    A file without a ``<text>`` element yields its whole content minus tags.
    OSErrors propagate unchanged.
    """
    with open(path, "rb") as fh:
        raw = fh.read().decode("utf-8", errors="replace")
    match = _TEXT.search(raw)
    body = match.group(1) if match else re.sub(r"<[^>]{0,200}>", " ", raw)
    return html.unescape(body).strip()


def _read_list(path: Path, n_categories: int) -> list[tuple[str, str, int]]:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) != 3:
                raise DataError(f"{path}:{lineno}: expected 'text_id<TAB>image_id<TAB>category', got {line!r}")
            text_id, image_id, cat = (p.strip() for p in parts)
            try:
                category = int(cat)
            except ValueError:
                raise DataError(f"{path}:{lineno}: category {cat!r} is not an integer") from None
            if not 1 <= category <= n_categories:
                raise DataError(f"{path}:{lineno}: category {category} outside 1..{n_categories}")
            rows.append((text_id, image_id, category))
    return rows


def _image_path(root: Path, category_name: str, image_id: str) -> tuple[Path | None, bool]:
    """``(path of the image or None, refused)``: ``images/<category>/<id>.jpg``, else ``images/<id>.jpg``.

    ``refused`` is True when a candidate would resolve outside ``root`` (it is never opened).
    The unresolved path is returned: caches downstream are keyed on these strings.
    """
    refused = False
    for rel in (f"images/{category_name}/{image_id}.jpg", f"images/{image_id}.jpg"):
        if inside(root, rel) is None:
            refused = True
            continue
        cand = root / rel
        if cand.is_file():
            return cand, False
    return None, refused


def load_wikipedia(root: str | os.PathLike, split: str = "test", refused: dict | None = None) -> list[WikiPair]:
    """The pairs of ``split`` ("train", "test" or "all" = train then test), in list-file order.

    Raises :class:`DataError` for a missing list file, a malformed line, or text
    files that the list names but ``texts/`` lacks (the evaluation needs every pair).
    Images may be absent (``image_path`` is then ``None``): text-only uses work.
    A row whose text would resolve outside ``root`` is dropped, an image path that would
    is not used; both are counted in ``refused[OUTSIDE]`` (a one-line warning goes to
    stderr when no ``refused`` dict is given).
    """
    if split not in ("train", "test", "all"):
        raise DataError(f"unknown Wikipedia split {split!r}; expected 'train', 'test' or 'all'")
    root = Path(root).absolute()
    names = categories(root)
    splits = ["train", "test"] if split == "all" else [split]
    rows = []
    for s in splits:
        path = root / SPLIT_FILES[s]
        if not path.is_file():
            raise DataError(f"{path}: split list not found; {HOW_TO_GET}")
        rows.extend(_read_list(path, len(names)))
    n_refused, examples = 0, []
    kept_rows = []
    for row in rows:
        if inside(root, f"texts/{row[0]}.xml") is None:
            n_refused += 1
            examples.append(row[0])
        else:
            kept_rows.append(row)
    texts_dir = root / "texts"
    missing = [t for t, _, _ in kept_rows if not (texts_dir / f"{t}.xml").is_file()]
    if missing:
        raise DataError(f"{texts_dir}: {len(missing)} of {len(kept_rows)} text files named by the {split} list are "
                        f"missing (first: {missing[0]}.xml); {HOW_TO_GET}")
    pairs = []
    for text_id, image_id, category in kept_rows:
        name = names[category - 1]
        image_path, image_refused = _image_path(root, name, image_id)
        if image_refused and image_path is None:
            n_refused += 1
            examples.append(image_id)
        pairs.append(WikiPair(text_id=text_id, image_id=image_id, category=category, category_name=name,
                              text=read_wiki_text(texts_dir / f"{text_id}.xml"), image_path=image_path))
    if n_refused:
        if refused is not None:
            refused[OUTSIDE] = refused.get(OUTSIDE, 0) + n_refused
        else:
            print(f"warning: {root}: {n_refused} id(s) of the {split} list lead outside the dataset folder and "
                  f"were refused ({OUTSIDE}; first: {examples[0]!r})", file=sys.stderr, flush=True)
    return pairs

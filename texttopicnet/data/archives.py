"""Safe extraction of downloaded archives: nothing lands outside the folder it is unpacked into.

tar archives go through the standard library's ``data`` extraction filter (Python 3.9.17+,
3.10.12+, 3.11.4+, 3.12+): no member outside the target, no link pointing out of it, no
device file or fifo, no setuid bits. zip members are checked with
:func:`texttopicnet.core.paths.inside` (symlinks already on disk included). A refused member
is skipped and counted, never raised::

    from collections import Counter
    from texttopicnet.data.archives import extract
    refused = Counter()
    n = extract(Path("downloads/wiki_top10cats.tar.gz"), Path("staging"), refused)
    # refused: {"outside_collection": 1, "link_outside": 2, "special_file": 0 ...}

A damaged archive (truncated, not an archive) raises :class:`DataError`. Another kind of
archive is one more entry in :data:`EXTRACTORS`.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ..core.errors import DataError
from ..core.paths import OUTSIDE, inside

# tarfile's filter errors -> the counter a refused member goes to.
TAR_REFUSALS = {"OutsideDestinationError": OUTSIDE, "AbsolutePathError": OUTSIDE,
                "LinkOutsideDestinationError": "link_outside", "AbsoluteLinkError": "link_outside",
                "SpecialFileError": "special_file"}
HAS_TAR_FILTERS = hasattr(tarfile, "data_filter")
NEED_FILTERS = "safe extraction needs tarfile's extraction filters: Python 3.9.17+, 3.10.12+, 3.11.4+ or 3.12+"


def _extract_tar(archive: Path, into: Path, refused: Counter, bar: tqdm) -> int:
    extracted = 0

    def data_filter_counted(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        nonlocal extracted
        try:
            member = tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            refused[TAR_REFUSALS.get(type(exc).__name__, "unsafe_member")] += 1
            return None  # extractall skips it
        extracted += 1
        return member

    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
        def members():  # streaming: one pass, also over a compressed archive
            for member in tar:
                bar.update(raw.tell() - bar.n)
                yield member
        tar.extractall(into, members=members(), filter=data_filter_counted)
    return extracted


def _extract_zip(archive: Path, into: Path, refused: Counter, bar: tqdm) -> int:
    extracted = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = inside(into, info.filename)  # None for "../x", "/x" or a path through a link out of into
            if target is None:
                refused[OUTSIDE] += 1
            elif info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                extracted += 1
            bar.update(info.compress_size)
    return extracted


EXTRACTORS: dict[str, Callable[[Path, Path, Counter, tqdm], int]] = {
    ".tar": _extract_tar, ".tar.gz": _extract_tar, ".tgz": _extract_tar, ".tar.bz2": _extract_tar,
    ".tar.xz": _extract_tar, ".zip": _extract_zip}


def extract(archive: Path, into: Path, refused: Counter, quiet: bool = False) -> int:
    """Unpack ``archive`` into ``into`` (created); unsafe members are counted in ``refused``.

    Returns the number of members written. Raises :class:`DataError` for an unknown kind
    of file, a damaged archive or one with no usable member.
    """
    extractor = next((fn for suffix, fn in EXTRACTORS.items() if archive.name.endswith(suffix)), None)
    if extractor is None:
        raise DataError(f"{archive.name}: not an archive kind this installer unpacks ({', '.join(EXTRACTORS)})")
    if extractor is _extract_tar and not HAS_TAR_FILTERS:
        raise DataError(NEED_FILTERS)
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tqdm(total=archive.stat().st_size, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                  disable=quiet) as bar:
            count = extractor(archive, into, refused, bar)
            bar.update(bar.total - bar.n)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
        text = " ".join(str(exc).split())[:300]
        raise DataError(f"{archive}: cannot be extracted ({type(exc).__name__}: {text}); "
                        "the archive is damaged") from None
    if count == 0:
        raise DataError(f"{archive}: the archive holds no usable member")
    return count

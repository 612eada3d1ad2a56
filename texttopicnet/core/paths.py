"""Keeping every path taken from data inside the root the user named.

Paths read from data files (a caption's ``article`` attribute, a manifest's ``image``, a
label JSON's keys, a list file's lines, an archive member, an HTTP request's id) are
untrusted: ``../../etc/passwd``, an absolute path or a symlink pointing out of the
collection must never be read or written. :func:`inside` is the one test every reader
uses; a refused path is counted under :data:`OUTSIDE` (``outside_collection``) by the
caller, never raised as a crash.

Use::

    from texttopicnet.core.paths import inside, OUTSIDE
    path = inside(root, caption_article)     # absolute, resolved Path, or None when it leaves root
    if path is None:
        counts[OUTSIDE] += 1
"""

from __future__ import annotations

import os
from pathlib import Path

OUTSIDE = "outside_collection"  # the counter name every stage uses for a refused path


def _real(path: str | os.PathLike) -> str:
    # realpath resolves every symlink (also of components that exist only partly), so a
    # link inside the root that points out of it is judged by where it really leads.
    return os.path.realpath(os.fspath(path))


def is_inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """True when ``path`` (absolute, or relative to the working directory) resolves inside ``root``."""
    real_root = _real(root)
    real = _real(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def inside(root: str | os.PathLike, relative: str | os.PathLike) -> Path | None:
    """``root / relative`` resolved (symlinks followed), or ``None`` when it leaves ``root``.

    ``relative`` may use ``/`` or ``\\`` separators. An absolute ``relative`` is refused
    (``None``) unless it already lies inside ``root``; ``..`` components are allowed as
    long as the resolved path stays inside. The file need not exist.
    """
    text = os.fspath(relative)
    if "\x00" in text:
        return None
    text = text.replace("\\", "/")
    candidate = Path(text) if os.path.isabs(text) else Path(root) / text
    if not is_inside(root, candidate):
        return None
    return Path(_real(candidate))

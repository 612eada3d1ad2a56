"""Verified, resumable downloads and safe extraction of the public datasets (VOC2007, Wikipedia).

What happens for a dataset (see :func:`install`):

1. every archive is fetched into ``<root>/downloads/`` with gdown's downloader (a
   well-kept library that already does HTTP Range resume of a ``.part`` file, retries
   with back-off, ``If-Range`` so a changed remote file is never spliced onto old
   bytes, and a tqdm progress bar); mirrors are tried in order (official host first);
2. it is verified: the published md5 where there is one (VOC2007, REFERENCE.md),
   else its sha256 is recorded in a ``<archive>.sha256`` sidecar and checked on reuse;
   a file that fails is deleted, so the next run starts clean;
3. the archives are extracted into a temporary folder beside the target
   (``<root>/.VOC2007.partial-*``) with tarfile's ``data`` filter (no absolute paths,
   no ``..``, no links out of the tree, no device files), the layout is checked,
   ``meta.json`` (provenance: archives' checksums, mirrors, versions) is written, and
   only then is the folder renamed into place. A failed or interrupted run therefore
   never leaves a tree that a stage would trust;
4. a target whose ``meta.json`` says it is finished and whose layout checks out is skipped.

Mirrors can be replaced with ``--mirror`` or ``TEXTTOPICNET_<DATASET>_MIRRORS``
(space-separated base URLs), which is how the tests point at a local server.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..core import provenance
from ..core.errors import DataError
from ..core.io import sha256_file

MARKER = provenance.META_NAME  # meta.json, written last into the tree before it is renamed into place
CACHE_DIR = "downloads"
USER_AGENT = "texttopicnet/0.1 dataset downloader (python-requests via gdown)"


@dataclass(frozen=True)
class RemoteFile:
    name: str                 # file name on every mirror and in the cache folder
    md5: str | None = None    # published checksum (None: record our own sha256)


@dataclass(frozen=True)
class DatasetSpec:
    key: str                                   # command-line name, e.g. "voc2007"
    folder: str                                # target folder under the data root
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]                   # base URLs, tried in order
    locate: Callable[[Path], Path]             # extracted temp tree -> folder that becomes the target
    check: Callable[[Path], list[str]]         # target folder -> layout problems (empty: fine)
    description: str = ""

    @property
    def env_var(self) -> str:
        return f"TEXTTOPICNET_{self.key.upper()}_MIRRORS"


# ---------------------------------------------------------------- layout checks

def voc_problems(target: Path) -> list[str]:
    """Problems with ``<target>/VOCdevkit/VOC2007``: folders present, every listed image on disk."""
    voc = target / "VOCdevkit" / "VOC2007"
    problems = [f"{voc / sub} missing" for sub in ("JPEGImages", "Annotations", "ImageSets/Main")
                if not (voc / sub).is_dir()]
    if problems:
        return problems
    lists = [p for p in (voc / "ImageSets" / "Main" / f"{s}.txt" for s in ("trainval", "test")) if p.is_file()]
    if not lists:
        return [f"{voc / 'ImageSets/Main'} has neither trainval.txt nor test.txt"]
    images = {p.stem for p in (voc / "JPEGImages").iterdir()}
    for lst in lists:
        ids = [line.split()[0] for line in lst.read_text(encoding="utf-8").splitlines() if line.strip()]
        missing = [i for i in ids if i not in images]
        if missing:
            problems.append(f"{len(missing)} of the {len(ids)} images in {lst.name} are not in JPEGImages "
                            f"(first: {missing[0]})")
    return problems


def voc_locate(tree: Path) -> Path:
    if (tree / "VOCdevkit").is_dir():
        return tree
    raise DataError(f"the VOC2007 archives did not contain a VOCdevkit/ folder (found: {_listing(tree)})")


WIKI_LISTS = ("trainset_txt_img_cat.list", "testset_txt_img_cat.list")


def wikipedia_problems(target: Path) -> list[str]:
    """Problems with a Wikipedia dataset folder: both split lists, texts/ and images/, every text present."""
    problems = [f"{target / n} missing" for n in WIKI_LISTS if not (target / n).is_file()]
    problems += [f"{target / d} missing" for d in ("texts", "images") if not (target / d).is_dir()]
    if problems:
        return problems
    texts = {p.stem for p in (target / "texts").iterdir()}
    for name in WIKI_LISTS:
        ids = [line.split()[0] for line in (target / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        missing = [i for i in ids if i not in texts]
        if missing:
            problems.append(f"{len(missing)} of the {len(ids)} texts in {name} are not in texts/ "
                            f"(first: {missing[0]})")
    return problems


def wikipedia_locate(tree: Path) -> Path:
    """The folder holding the split lists: the archive's top level or one or two folders down."""
    for depth in range(3):
        hits = sorted(p.parent for p in tree.glob("/".join(["*"] * depth + [WIKI_LISTS[0]])))
        if hits:
            return hits[0]
    raise DataError(f"the Wikipedia archive has no {WIKI_LISTS[0]} (found: {_listing(tree)})")


def _listing(tree: Path, limit: int = 8) -> str:
    names = sorted(p.name for p in tree.iterdir()) if tree.is_dir() else []
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "") if names else "nothing"


VOC_BASES = ("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/", "https://pjreddie.com/media/files/")

DATASETS: dict[str, DatasetSpec] = {
    "voc2007": DatasetSpec(
        key="voc2007", folder="VOC2007",
        files=(RemoteFile("VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
               RemoteFile("VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f")),
        mirrors=VOC_BASES, locate=voc_locate, check=voc_problems,
        description="PASCAL VOC2007 trainval + test (about 900 MB)"),
    "wikipedia": DatasetSpec(
        key="wikipedia", folder="Wikipedia",
        files=(RemoteFile("wiki_top10cats.tar.gz"),),
        mirrors=("http://www.svcl.ucsd.edu/projects/crossmodal/",), locate=wikipedia_locate,
        check=wikipedia_problems,
        description="Rasiwasia et al. 2010 Wikipedia cross-modal dataset (2,866 pairs)"),
}


def mirrors_for(spec: DatasetSpec, override: Sequence[str] | None = None) -> list[str]:
    """Base URLs to try: ``override`` (``--mirror``), else the environment variable, else the defaults."""
    if override:
        bases = list(override)
    elif os.environ.get(spec.env_var, "").strip():
        bases = os.environ[spec.env_var].split()
    else:
        bases = list(spec.mirrors)
    return [b if b.endswith("/") else b + "/" for b in bases]


# ---------------------------------------------------------------- download + verify

def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    # hashlib directly: torchvision.datasets.utils.calculate_md5 does the same but importing
    # torchvision costs 5-10 s, more than hashing a VOC tarball.
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, remote: RemoteFile) -> str | None:
    """None when ``path`` matches its checksum (published md5, else the recorded sha256 sidecar)."""
    if remote.md5:
        got = file_md5(path)
        return None if got == remote.md5 else f"md5 {got} != published {remote.md5}"
    sidecar = _sidecar(path)
    if sidecar.is_file():
        want = sidecar.read_text(encoding="utf-8").split()[0]
        got = sha256_file(path)
        return None if got == want else f"sha256 {got} != recorded {want} ({sidecar.name})"
    return None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _partials(dest: Path) -> list[Path]:
    # gdown names its partial file <output name><8 random chars>.part beside the output.
    staging = _staging(dest)
    return [p for p in dest.parent.glob(f"{staging.name}*.part")]


def _staging(dest: Path) -> Path:
    return dest.with_name(dest.name + ".unverified")


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _gdown_download(url: str | None, output: Path, *, drive_id: str | None = None, retries: int = 3,
                    timeout: float = 60.0, quiet: bool = False) -> None:
    import gdown

    kwargs = dict(output=str(output), quiet=quiet, resume=True)
    if drive_id:
        kwargs["id"] = drive_id
    else:
        kwargs.update(url=url, use_cookies=False, user_agent=USER_AGENT)
    # retries/timeout are recent gdown options; older versions still resume on the next run.
    params = inspect.signature(gdown.download).parameters
    if "retries" in params:
        kwargs["retries"] = retries
    if "timeout" in params:
        # A dead host (the official VOC server is often down) fails fast so the mirror gets its turn.
        kwargs["timeout"] = (min(15.0, timeout), timeout)
    result = gdown.download(**kwargs)
    if result is None or not output.is_file():
        raise DataError(f"download of {url or drive_id} gave no file")


def fetch(remote: RemoteFile, cache: Path, bases: Sequence[str] = (), *, drive_id: str | None = None,
          retries: int = 3, timeout: float = 60.0, quiet: bool = False, force: bool = False, log=print) -> Path:
    """Download ``remote`` into ``cache`` (trying each base URL, or a Drive id), verify it, return its path.

    The verified file appears under its final name only after its checksum passed (it
    is downloaded as ``<name>.unverified``). A transfer that breaks off keeps its
    ``.part`` file, so running again resumes it; a file that fails its checksum is
    deleted with its partial files. ``force`` downloads again but replaces an existing
    file only with a verified one. Raises :class:`DataError` when every source failed.
    """
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / remote.name
    if dest.is_file() and not force:
        problem = verify(dest, remote)
        if problem is None:
            log(f"{dest}: already downloaded and verified")
            return dest
        log(f"{dest}: {problem}; downloading it again")
        dest.unlink()
        _sidecar(dest).unlink(missing_ok=True)
    staging = _staging(dest)
    if staging.is_file():  # left by a run that stopped between download and verification
        if _finish(staging, dest, remote, log) is None:
            return dest
    urls = [None] if drive_id else [b + remote.name for b in bases]
    if not urls:
        raise DataError(f"no mirror to download {remote.name} from")
    failures = []
    for url in urls:
        source = url or f"drive:{drive_id}"
        try:
            _gdown_download(url, staging, drive_id=drive_id, retries=retries, timeout=timeout, quiet=quiet)
        except DataError as exc:
            failures.append(f"{source}: {exc}")
            continue
        except Exception as exc:  # requests / gdown raise many types; all mean "this source failed"
            kept = _partials(dest)
            note = f" ({kept[0].stat().st_size:,} bytes kept in {kept[0].name}; rerun to resume)" if kept else ""
            failures.append(f"{source}: {type(exc).__name__}: {_short(exc)}{note}")
            continue
        problem = _finish(staging, dest, remote, log)
        if problem is None:
            return dest
        failures.append(f"{source}: {problem}; the file was deleted")
    raise DataError(f"could not download {remote.name}: " + " | ".join(failures))


def _finish(staging: Path, dest: Path, remote: RemoteFile, log) -> str | None:
    """Verify a downloaded file; rename it into place (None) or delete it and its partials (the problem)."""
    problem = _check_download(staging, remote)
    if problem is None:
        digest = sha256_file(staging)
        os.replace(staging, dest)
        _write_sidecar(dest, digest)
        log(f"{dest}: verified ({'md5' if remote.md5 else 'sha256 recorded'}: {remote.md5 or digest})")
        return None
    staging.unlink(missing_ok=True)
    for part in _partials(dest):
        part.unlink(missing_ok=True)
    return problem


def _check_download(path: Path, remote: RemoteFile) -> str | None:
    if remote.md5:
        got = file_md5(path)
        if got != remote.md5:
            hint = " (the server sent a web page, not the file)" if _looks_like_html(path) else ""
            return f"checksum mismatch: md5 {got}, published {remote.md5}{hint}"
        return None
    if _looks_like_html(path):
        return "the server sent a web page instead of the file (quota exceeded or a login page?)"
    return None


def _write_sidecar(path: Path, digest: str) -> None:
    from ..core.io import write_text

    write_text(_sidecar(path), f"{digest}  {path.name}\n")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- extraction

def safe_extract(archive: Path, into: Path, quiet: bool = False) -> int:
    """Extract a tar(.gz/.bz2/.xz) archive into ``into``, refusing anything that would land outside it.

    Uses tarfile's ``data`` filter (Python >= 3.12, 3.11.4, 3.10.12, 3.9.17); on older
    Pythons each member is checked by hand with the same rules. Returns the member
    count; a damaged or hostile archive is a :class:`DataError`.
    """
    from tqdm import tqdm

    has_filter = hasattr(tarfile, "data_filter")
    count = 0
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
                tqdm(total=archive.stat().st_size, unit="B", unit_scale=True, desc=f"extract {archive.name}",
                     disable=quiet) as bar:
            for member in tar:  # streaming: one pass over a compressed archive
                if has_filter:
                    tar.extract(member, into, filter="data")
                else:
                    _check_member(member, into)
                    tar.extract(member, into)
                count += 1
                bar.update(raw.tell() - bar.n)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # TarError covers ReadError and the filter's OutsideDestination/AbsolutePath/... errors.
        raise DataError(f"{archive}: cannot be extracted ({type(exc).__name__}: {_short(exc)}); "
                        "the archive is damaged or unsafe") from None
    if count == 0:
        raise DataError(f"{archive}: the archive is empty")
    return count


def _check_member(member: tarfile.TarInfo, into: Path) -> None:
    root = os.path.realpath(into)
    target = os.path.realpath(os.path.join(root, member.name))
    if os.path.isabs(member.name) or os.path.commonpath([root, target]) != root:
        raise tarfile.TarError(f"member {member.name!r} would be written outside the target folder")
    if member.issym() or member.islnk():
        link = os.path.realpath(os.path.join(os.path.dirname(target) if member.issym() else root, member.linkname))
        if os.path.isabs(member.linkname) or os.path.commonpath([root, link]) != root:
            raise tarfile.TarError(f"link {member.name!r} points outside the target folder")
    if member.isdev():
        raise tarfile.TarError(f"member {member.name!r} is a device file")


# ---------------------------------------------------------------- the whole job

@dataclass
class InstallResult:
    target: Path
    skipped: bool
    archives: list[Path] = field(default_factory=list)
    members: int = 0


def stage_name(spec: DatasetSpec) -> str:
    return f"download_{spec.key}"


def marker_ok(spec: DatasetSpec, target: Path) -> bool:
    return provenance.stage_is_done(target, stage_name(spec)) and not spec.check(target)


def install(spec: DatasetSpec, root: Path, *, mirrors: Sequence[str] | None = None, force: bool = False,
            remove_archives: bool = False, retries: int = 3, timeout: float = 60.0, quiet: bool = False,
            args=None, log=print) -> InstallResult:
    """Download, verify, extract and check ``spec`` into ``root/spec.folder`` (see the module docstring)."""
    root = Path(root)
    target = root / spec.folder
    for stale in root.glob(f".{spec.folder}.partial-*") if root.is_dir() else ():
        log(f"removing {stale}: left by an interrupted extraction")
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists() and not force:
        if marker_ok(spec, target):
            log(f"already done: {target} was downloaded, verified and extracted (--force redoes it)")
            return InstallResult(target, skipped=True)
        problems = spec.check(target)
        if not problems:
            log(f"{target} already holds the dataset (not downloaded by this script, layout checked); leaving it")
            return InstallResult(target, skipped=True)
        raise DataError(f"{target} exists but is incomplete ({'; '.join(problems[:3])}); move it away or "
                        "rerun with --force to replace it")

    cache = root / CACHE_DIR
    bases = mirrors_for(spec, mirrors)
    log(f"{spec.key}: {spec.description}; mirrors: {', '.join(bases)}")
    archives = [fetch(f, cache, bases, retries=retries, timeout=timeout, quiet=quiet, log=log) for f in spec.files]

    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.partial-", dir=root))
    old = None
    try:
        members = 0
        for a in archives:
            try:
                members += safe_extract(a, tmp, quiet=quiet)
            except DataError as exc:
                # A verified-but-unreadable archive would fail the same way on every rerun: drop it.
                a.unlink(missing_ok=True)
                _sidecar(a).unlink(missing_ok=True)
                raise DataError(f"{exc}; deleted it, rerun to download it again") from None
        found = spec.locate(tmp)
        problems = spec.check(found)
        if problems:
            raise DataError(f"the extracted {spec.key} data is incomplete: {'; '.join(problems[:3])}")
        provenance.write_meta(found, stage_name(spec), args, inputs=archives, extra={
            "dataset": spec.key, "published_md5": {f.name: f.md5 for f in spec.files},
            "mirrors": bases, "members": members})
        if target.exists():  # --force: swap the old tree out only once the new one is ready
            old = root / f".{spec.folder}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(found, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:  # the swap failed half-way: put the previous tree back
                os.replace(old, target)
    log(f"{target}: ready ({members:,} archive members)")
    if remove_archives:
        for a in archives:
            a.unlink(missing_ok=True)
            _sidecar(a).unlink(missing_ok=True)
        log(f"removed the archives from {cache}")
    return InstallResult(target, skipped=False, archives=archives, members=members)


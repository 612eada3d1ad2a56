"""Verified, resumable downloads and safe extraction of public datasets (VOC2007, Wikipedia).

:func:`install` (``python data/download.py NAME``) does, for one :class:`DatasetSpec`:

1. fetch each file into ``<data-root>/downloads/`` with pooch (``Pooch.fetch``): hash check
   (the published md5 for VOC2007, REFERENCE.md; else the sha256 recorded in ``<file>.sha256``
   when the file was first fetched), retries with back-off (``--retries``), the final name
   only once the hash matched (a download that fails it is deleted), mirrors in order (official
   host first; ``--mirror`` or ``TEXTTOPICNET_<KEY>_MIRRORS`` replace them). pooch restarts
   a broken transfer at byte 0, so our one piece of transfer code, :class:`ResumingDownloader`,
   keeps ``<file>.part`` and asks for the rest (HTTP Range + If-Range: a file changed on the
   server comes whole, never spliced). Google Drive ids go through gdown (:class:`DriveDownloader`);
2. extract into ``<data-root>/.<folder>.partial-*`` with :mod:`texttopicnet.data.archives`
   (tar: the standard library's ``data`` filter; zip: ``core.paths.inside``). Members that
   would land outside (symlinks included), links pointing out and device files are refused
   and counted (``outside_collection``, ``link_outside``, ``special_file``); a damaged
   archive is deleted (rerun to fetch it again);
3. check the layout, write ``meta.json``, and only then rename the folder into place, so a
   failed run never leaves a tree a stage would trust; a finished target is skipped.

Adding a dataset is one declarative entry in :data:`DATASETS` (then ``data/download.py KEY``
installs it; a reader check can go into that script's ``READER_CHECKS``). For example (the
shape of an entry; take the real URLs, hashes and layout from the dataset's page)::

    DatasetSpec(key="oxford5k", folder="Oxford5k", description="Oxford Buildings (1.8 GB)",
                files=(RemoteFile("oxbuild_images.tgz", "md5:<hex>", into="jpg"),  # pooch's "alg:hex"
                       RemoteFile("gt_files_170407.tgz", into="gt")),            # no hash: sha256 recorded
                mirrors=("https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/",),
                top="jpg",                   # what the dataset's top folder holds (found <= 2 levels down)
                required=("jpg", "gt"),      # paths that must exist under it
                id_lists=(("gt/all_souls_1_good.txt", "jpg"),))  # each line's first field: a file in jpg/

Archive kinds: the suffixes of ``archives.EXTRACTORS`` (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .zip).
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core import provenance
from ..core.errors import DataError
from ..core.io import sha256_file, write_text
from . import archives as archive_kinds

MARKER = provenance.META_NAME  # meta.json, written last into the tree before it is renamed into place
CACHE_DIR = "downloads"
USER_AGENT = "texttopicnet/0.1 dataset downloader (pooch, requests)"


@dataclass(frozen=True)
class RemoteFile:
    name: str                       # file name on every mirror and in the cache folder
    known_hash: str | None = None   # pooch's "md5:<hex>" / "sha256:<hex>"; None: record our own sha256
    into: str = ""                  # sub-folder of the extracted tree that this archive is unpacked into


@dataclass(frozen=True)
class DatasetSpec:
    """One installable dataset. ``id_lists`` pairs a list file with a folder: the first field of
    every line must be the stem of a file in that folder; the lists present are checked, and at
    least one of them must be present."""

    key: str                                    # command-line name, e.g. "voc2007"
    folder: str                                 # target folder under the data root
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]                    # base URLs, tried in order
    top: str                                    # a path the dataset's top folder holds (found 0-2 levels down)
    required: tuple[str, ...] = ()              # paths, relative to the top folder, that must exist
    id_lists: tuple[tuple[str, str], ...] = ()  # (list file, folder), relative to the top folder
    description: str = ""

    @property
    def env_var(self) -> str:
        return f"TEXTTOPICNET_{self.key.upper()}_MIRRORS"


VOC = "VOCdevkit/VOC2007/"
WIKI_LISTS = ("trainset_txt_img_cat.list", "testset_txt_img_cat.list")

DATASETS: dict[str, DatasetSpec] = {spec.key: spec for spec in (
    DatasetSpec(
        key="voc2007", folder="VOC2007", description="PASCAL VOC2007 trainval + test (about 900 MB)",
        files=(RemoteFile("VOCtrainval_06-Nov-2007.tar", "md5:c52e279531787c972589f7e41ab4ae64"),
               RemoteFile("VOCtest_06-Nov-2007.tar", "md5:b6e924de25625d8de591ea690078ad9f")),
        mirrors=("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/", "https://pjreddie.com/media/files/"),
        top=VOC, required=(VOC + "JPEGImages", VOC + "Annotations", VOC + "ImageSets/Main"),
        id_lists=tuple((VOC + f"ImageSets/Main/{s}.txt", VOC + "JPEGImages") for s in ("trainval", "test"))),
    DatasetSpec(
        key="wikipedia", folder="Wikipedia",
        description="Rasiwasia et al. 2010 Wikipedia cross-modal dataset (2,866 pairs)",
        files=(RemoteFile("wiki_top10cats.tar.gz"),),  # no checksum published: sha256 recorded on first fetch
        mirrors=("http://www.svcl.ucsd.edu/projects/crossmodal/",),
        top=WIKI_LISTS[0], required=(*WIKI_LISTS, "texts", "images"),
        id_lists=tuple((lst, "texts") for lst in WIKI_LISTS)),
)}


def mirrors_for(spec: DatasetSpec, override: Sequence[str] | None = None) -> list[str]:
    """Base URLs to try: ``override`` (``--mirror``), else the environment variable, else the defaults."""
    bases = list(override or os.environ.get(spec.env_var, "").split() or spec.mirrors)
    return [b if b.endswith("/") else b + "/" for b in bases]


# ---------------------------------------------------------------- layout

def layout_problems(spec: DatasetSpec, target: Path) -> list[str]:
    """What is wrong with a dataset folder: missing ``required`` paths, listed ids without their file."""
    problems = [f"{target / rel} missing" for rel in spec.required if not (target / rel).exists()]
    lists = [(target / lst, target / folder) for lst, folder in spec.id_lists if (target / lst).is_file()]
    if spec.id_lists and not lists and not problems:
        problems.append(f"{target} has none of " + ", ".join(lst for lst, _ in spec.id_lists))
    if problems:
        return problems
    for lst, folder in lists:
        ids = [line.split()[0] for line in lst.read_text(encoding="utf-8", errors="replace").splitlines()
               if line.strip()]
        stems = {p.stem for p in folder.rglob("*")} if folder.is_dir() else set()
        missing = [i for i in ids if i not in stems]
        if missing:
            problems.append(f"{len(missing)} of the {len(ids)} ids in {lst.name} have no file in "
                            f"{folder.name}/ (first: {missing[0]})")
    return problems


def locate(spec: DatasetSpec, tree: Path) -> Path:
    """The folder of the extracted ``tree`` that holds ``spec.top``: the tree itself or one or two levels down."""
    for folder in [tree, *sorted(tree.glob("*")), *sorted(tree.glob("*/*"))]:
        if (folder / spec.top).exists():
            return folder
    names = sorted(p.name for p in tree.iterdir())
    found = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "nothing"
    raise DataError(f"the {spec.key} archives hold no {spec.top} (found: {found})")


# ---------------------------------------------------------------- download + verify

class ResumingDownloader:
    """A pooch downloader that resumes: the bytes stay in ``<file>.part`` between attempts and runs.

    pooch's HTTPDownloader (1.9) starts every attempt at byte 0. This one asks for the rest
    of ``.part`` (``Range``) only with ``If-Range`` set to the ETag/Last-Modified of the first
    response (kept in ``.part.validator``), so a changed file is sent whole, never spliced.
    """

    def __init__(self, final: Path, timeout: float = 60.0, quiet: bool = False):
        self.part = final.with_name(final.name + ".part")
        self.validator = final.with_name(final.name + ".part.validator")
        self.timeout, self.quiet = timeout, quiet

    def __call__(self, url: str, output_file: str, pooch=None, check_only: bool = False):
        import requests

        # A dead host (the official VOC server is often down) fails fast so the next mirror gets its turn.
        timeout = (min(15.0, self.timeout), self.timeout)
        if check_only:
            return requests.head(url, timeout=timeout, allow_redirects=True).status_code == 200
        start = self.part.stat().st_size if self.part.is_file() else 0
        validator = self.validator.read_text(encoding="utf-8").strip() if start and self.validator.is_file() else ""
        headers = {"User-Agent": USER_AGENT}
        if validator:
            headers.update({"Range": f"bytes={start}-", "If-Range": validator})
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            if resp.status_code == 416 and validator:  # the part is already whole (or longer): start over
                self.part.unlink()
                return self(url, output_file, pooch)
            resp.raise_for_status()
            resumed = resp.status_code == 206  # else 200: the whole file (changed, or no Range support)
            # A weak ETag (W/...) never matches in If-Range (RFC 9110), so Last-Modified stands in for it.
            tags = (resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
            write_text(self.validator, next((t for t in tags if t and not t.startswith("W/")), ""))
            done = start if resumed else 0
            total = done + int(resp.headers.get("Content-Length", 0)) or None
            with open(self.part, "ab" if resumed else "wb") as fh, \
                    tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=self.part.stem,
                         disable=self.quiet) as bar:
                for chunk in resp.iter_content(1 << 16):
                    fh.write(chunk)
                    bar.update(len(chunk))
        _reject_web_page(self.part, self.validator)
        os.replace(self.part, output_file)
        self.validator.unlink(missing_ok=True)


class DriveDownloader:
    """A pooch downloader for a Google Drive file id, through gdown (confirmation pages, resume)."""

    def __init__(self, drive_id: str, final: Path, timeout: float = 60.0, quiet: bool = False):
        # A fixed output name: gdown resumes its "<output>*.part" file only for the same name.
        self.drive_id, self.output = drive_id, final.with_name(final.name + ".drive")
        self.timeout, self.quiet = timeout, quiet

    def __call__(self, url: str, output_file: str, pooch=None, check_only: bool = False):
        import gdown

        kwargs = {"id": self.drive_id, "output": str(self.output), "quiet": self.quiet, "resume": True}
        if "timeout" in inspect.signature(gdown.download).parameters:  # newer gdown: a dead link fails, not hangs
            kwargs["timeout"] = (min(15.0, self.timeout), self.timeout)
        if gdown.download(**kwargs) is None or not self.output.is_file():
            raise DataError(f"gdown gave no file for Drive id {self.drive_id}")
        _reject_web_page(self.output)
        os.replace(self.output, output_file)


def _reject_web_page(path: Path, *also: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        for p in (path, *also):
            p.unlink(missing_ok=True)
        raise DataError("the server sent a web page instead of the file (quota exceeded or a login page?)")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_hash(path: Path) -> str | None:
    """``sha256:<hex>`` from the sidecar written when ``path`` was first fetched (None without one)."""
    words = _sidecar(path).read_text(encoding="utf-8").split() if _sidecar(path).is_file() else []
    return f"sha256:{words[0]}" if words else None


def fetch(remote: RemoteFile, cache: Path, bases: Sequence[str] = (), *, drive_id: str | None = None,
          retries: int = 3, timeout: float = 60.0, quiet: bool = False, force: bool = False, log=print) -> Path:
    """Download ``remote`` into ``cache`` (from each base URL in turn, or a Drive id) with pooch; return its path.

    A file already there is reused when it matches its hash (the published one, else the
    recorded ``.sha256``); ``force`` fetches again but puts back the old file when that
    fails. Raises :class:`DataError` naming every failed source.
    """
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING" if quiet else "INFO")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / remote.name
    recorded = None if force else _recorded_hash(dest)
    known = remote.known_hash or recorded
    if drive_id:
        sources = [(f"https://drive.google.com/uc?id={drive_id}", DriveDownloader(drive_id, dest, timeout, quiet))]
    else:
        sources = [(base + remote.name, ResumingDownloader(dest, timeout, quiet)) for base in bases]
    if not sources:
        raise DataError(f"no mirror to download {remote.name} from")
    aside = dest.with_name(dest.name + ".previous")
    if force and dest.is_file():
        os.replace(dest, aside)
    failures = []
    try:
        for url, downloader in sources:
            store = pooch.Pooch(path=cache, base_url="", registry={remote.name: known}, urls={remote.name: url},
                                retry_if_failed=retries)
            try:
                _, action = store.fetch(remote.name, downloader=downloader, processor=lambda f, act, _: (f, act))
            except requests.RequestException as exc:
                parts = sorted(cache.glob(f"{remote.name}*.part"))
                kept = (f" ({parts[0].stat().st_size:,} bytes kept in {parts[0].name}; rerun to resume)"
                        if parts else "")
                failures.append(f"{url}: {type(exc).__name__}: {_short(exc)}{kept}")
            except ValueError as exc:  # pooch: the hash did not match (it deleted the file)
                got = re.search(r"expected (\S+) but got (\w+)", str(exc))  # pooch's wording; else all of it
                what = f"{got[2]} arrived, expected {got[1]}; the file was deleted" if got else _short(exc)
                if known == recorded:
                    what += f" (the hash was recorded in {_sidecar(dest).name}: delete it to accept the new file)"
                failures.append(f"{url}: checksum mismatch: {what}")
            except DataError as exc:
                failures.append(f"{url}: {exc}")
            except Exception as exc:  # gdown raises its own types; all mean "this source failed"
                failures.append(f"{url}: {type(exc).__name__}: {_short(exc)}")
            else:
                if remote.known_hash is None and (action != "fetch" or known is None):
                    write_text(_sidecar(dest), f"{sha256_file(dest)}  {dest.name}\n")
                how = f"checked against {known}" if known else f"sha256 recorded in {_sidecar(dest).name}"
                log(f"{dest}: {'already downloaded, ' if action == 'fetch' else ''}{how}")
                return dest
    finally:
        if aside.is_file():  # --force: keep the new file, or put the old one back
            if dest.is_file():
                aside.unlink()
            else:
                os.replace(aside, dest)
    raise DataError(f"could not download {remote.name}: " + " | ".join(failures))


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- the whole job

@dataclass
class InstallResult:
    target: Path
    skipped: bool
    archives: list[Path] = field(default_factory=list)
    members: int = 0
    refused: dict[str, int] = field(default_factory=dict)


def stage_name(spec: DatasetSpec) -> str:
    return f"download_{spec.key}"


def marker_ok(spec: DatasetSpec, target: Path) -> bool:
    return provenance.stage_is_done(target, stage_name(spec)) and not layout_problems(spec, target)


def install(spec: DatasetSpec, root: Path, *, mirrors: Sequence[str] | None = None, force: bool = False,
            remove_archives: bool = False, retries: int = 3, timeout: float = 60.0, quiet: bool = False,
            args=None, log=print) -> InstallResult:
    """Download, verify, extract and check ``spec`` into ``root/spec.folder`` (see the module docstring)."""
    if not archive_kinds.HAS_TAR_FILTERS:  # before downloading 900 MB that could not be unpacked
        raise DataError(archive_kinds.NEED_FILTERS)
    root = Path(root)
    target = root / spec.folder
    for stale in root.glob(f".{spec.folder}.partial-*") if root.is_dir() else ():
        log(f"removing {stale}: left by an interrupted extraction")
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists() and not force:
        if marker_ok(spec, target):
            log(f"already done: {target} was downloaded, verified and extracted (--force redoes it)")
            return InstallResult(target, skipped=True)
        problems = layout_problems(spec, target)
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
    tmp.chmod(0o755)  # mkdtemp's 0700 would become the dataset folder's mode
    old = None
    refused: Counter = Counter()
    try:
        members = 0
        for remote, archive in zip(spec.files, archives):
            try:
                members += archive_kinds.extract(archive, tmp / remote.into, refused, quiet=quiet)
            except DataError as exc:
                # A verified-but-unreadable archive would fail the same way on every rerun: drop it.
                archive.unlink(missing_ok=True)
                _sidecar(archive).unlink(missing_ok=True)
                raise DataError(f"{exc}; deleted it, rerun to download it again") from None
        if refused:
            log(f"refused {sum(refused.values()):,} archive member(s) that would leave {target} or are not "
                "plain files: " + ", ".join(f"{k} {v:,}" for k, v in sorted(refused.items())))
        found = locate(spec, tmp)
        problems = layout_problems(spec, found)
        if problems:
            raise DataError(f"the extracted {spec.key} data is incomplete: {'; '.join(problems[:3])}")
        provenance.write_meta(found, stage_name(spec), args, inputs=archives, extra={
            "dataset": spec.key, "known_hashes": {f.name: f.known_hash for f in spec.files},
            "mirrors": bases, "members": members, "refused": dict(refused)})
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
        for archive in archives:
            archive.unlink(missing_ok=True)
            _sidecar(archive).unlink(missing_ok=True)
        log(f"removed the archives from {cache}")
    return InstallResult(target, skipped=False, archives=archives, members=members, refused=dict(refused))

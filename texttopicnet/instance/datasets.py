"""Instance-search datasets: download entries (Oxford5k, Paris6k, revisited ground truth, Flickr 100k)
and the registry the experiment scripts load datasets by name from.

Download entries
    :data:`DATASETS` are :class:`texttopicnet.data.downloads.DatasetSpec` archives (installed by
    ``downloads.install``: hash-checked, resumable, safe extraction, layout check). No checksum is
    published for these files, so each one's sha256 is recorded beside it on first download
    and checked on reuse. :data:`FILES` are plain files that are not archives (the revisited
    ``gnd_*.pkl``) or archives the standard library cannot open (the Flickr 100k distractors
    ship as a 40-part RAR set); :func:`install_files` fetches them with the same
    ``downloads.fetch`` (pooch, mirrors, resume, recorded sha256), copies the plain files into
    their folder atomically and writes ``meta.json``; RAR parts stay in ``downloads/`` with the
    command that unpacks them.

Registry (:func:`load`), relative to a data root:
    ``oxford5k`` -> ``Oxford5k/{jpg,gt}``; ``paris6k`` -> ``Paris6k/{jpg,gt}``; ``roxford5k`` ->
    ``ROxford5k/gnd_roxford5k.pkl`` + ``Oxford5k/jpg``; ``rparis6k`` likewise; ``synth_a`` /
    ``synth_b`` -> the synthetic sets (``experiments/instance_search/01_make_synthetic.py``), whose
    revisited-style ``gnd_<name>.pkl`` is evaluated on the same rankings. Any other name is a
    folder in the Oxford layout. :data:`PARTNERS` names the dataset each one's PCA is fitted on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core import provenance
from ..core.errors import DataError
from ..core.paths import inside
from ..data.downloads import CACHE_DIR, DatasetSpec, RemoteFile, fetch
from .protocols import InstanceDataset, load_oxford_layout
from .revisited import load_revisited

OXFORD_URL = "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/"
PARIS_URL = "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/"
REVISITED_URL = "http://cmp.felk.cvut.cz/revisitop/data/datasets/"

DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec(key="oxford5k", folder="Oxford5k", description="Oxford Buildings: 5,063 images, 55 queries (1.8 GB)",
                files=(RemoteFile("oxbuild_images-v1.tgz", into="jpg"), RemoteFile("gt_files_170407.tgz", into="gt")),
                mirrors=(OXFORD_URL,), top="gt", required=("jpg", "gt"),
                id_lists=(("gt/all_souls_1_good.txt", "jpg"),)),
    DatasetSpec(key="paris6k", folder="Paris6k", description="Paris Buildings: 6,412 images (20 corrupt), 55 queries",
                files=(RemoteFile("paris_1-v1.tgz", into="jpg"), RemoteFile("paris_2-v1.tgz", into="jpg"),
                       RemoteFile("paris_120310.tgz", into="gt")),
                mirrors=(PARIS_URL,), top="gt", required=("jpg", "gt"),
                id_lists=(("gt/defense_1_good.txt", "jpg"),)),
)


@dataclass(frozen=True)
class FileSetSpec:
    """Files that are copied as they are (``copy``) or left in ``downloads/`` to be unpacked by hand."""

    key: str
    folder: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    description: str = ""
    copy: bool = True
    manual_step: str = ""

    @property
    def env_var(self) -> str:
        return f"TEXTTOPICNET_{self.key.upper()}_MIRRORS"


FILES: tuple[FileSetSpec, ...] = (
    FileSetSpec("roxford5k_gnd", "ROxford5k", (RemoteFile("gnd_roxford5k.pkl"),), (REVISITED_URL + "roxford5k/",),
                "revisited Oxford ground truth (70 queries, Easy/Medium/Hard); images from Oxford5k/jpg"),
    FileSetSpec("rparis6k_gnd", "RParis6k", (RemoteFile("gnd_rparis6k.pkl"),), (REVISITED_URL + "rparis6k/",),
                "revisited Paris ground truth (70 queries, Easy/Medium/Hard); images from Paris6k/jpg"),
    FileSetSpec("flickr100k", "Flickr100k", tuple(RemoteFile(f"oxc1_100k.part{i:02d}.rar") for i in range(1, 41)),
                (OXFORD_URL + "ox100k/",), "the 100,071 Flickr distractors of Oxford105k / Paris106k (40 RAR parts)",
                copy=False, manual_step="unrar x {cache}/oxc1_100k.part01.rar {target}/  (RAR: not unpacked here)"),
)
ALL_KEYS = tuple(s.key for s in DATASETS) + tuple(s.key for s in FILES)


def file_spec(key: str) -> FileSetSpec:
    for spec in FILES:
        if spec.key == key:
            return spec
    raise DataError(f"unknown file set {key!r}; choose from {[s.key for s in FILES]}")


def install_files(spec: FileSetSpec, root: str | Path, *, mirrors: Sequence[str] | None = None, force: bool = False,
                  retries: int = 3, timeout: float = 60.0, quiet: bool = False, args=None, log=print) -> Path:
    """Fetch ``spec``'s files (pooch: mirrors, resume, sha256 recorded) and put them in ``root/spec.folder``."""
    root = Path(root)
    target = root / spec.folder
    stage = f"download_{spec.key}"
    if not force and provenance.stage_is_done(target, stage):
        log(f"already done: {target} ({spec.description})")
        return target
    bases = list(mirrors or os.environ.get(spec.env_var, "").split() or spec.mirrors)
    bases = [b if b.endswith("/") else b + "/" for b in bases]
    cache = root / CACHE_DIR
    got = [fetch(f, cache, bases, retries=retries, timeout=timeout, quiet=quiet, log=log) for f in spec.files]
    if not spec.copy:
        log(f"{spec.key}: the files are in {cache}; unpack them with: "
            + spec.manual_step.format(cache=cache, target=target))
        return cache
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.partial-", dir=root))
    try:
        # Merge with what the folder already holds (e.g. ROxford5k/ may hold other files).
        if target.is_dir():
            shutil.copytree(target, tmp, dirs_exist_ok=True)
        for path in got:
            shutil.copy2(path, tmp / path.name)
        provenance.write_meta(tmp, stage, args, inputs=got, outputs=[tmp / p.name for p in got],
                              extra={"dataset": spec.key, "mirrors": bases})
        old = None
        if target.exists():
            old = root / f".{spec.folder}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{target}: ready ({', '.join(p.name for p in got)})")
    return target


# --------------------------------------------------------------------------------- registry

PARTNERS = {"oxford5k": "paris6k", "paris6k": "oxford5k", "roxford5k": "rparis6k", "rparis6k": "roxford5k",
            "synth_a": "synth_b", "synth_b": "synth_a"}


def _folder(root: Path, rel: str) -> Path:
    path = inside(root, rel)
    if path is None:
        raise DataError(f"{rel!r} leaves the data root {root}")
    return path


def load(name: str, data_root: str | Path) -> tuple[InstanceDataset, InstanceDataset | None]:
    """(dataset, revisited view on the same database or None) for a registry name or an Oxford-layout folder."""
    root = Path(data_root)
    if name in ("oxford5k", "paris6k"):
        return load_oxford_layout(_folder(root, {"oxford5k": "Oxford5k", "paris6k": "Paris6k"}[name]), name=name), None
    if name in ("roxford5k", "rparis6k"):
        base = {"roxford5k": ("ROxford5k", "Oxford5k"), "rparis6k": ("RParis6k", "Paris6k")}[name]
        return load_revisited(_folder(root, f"{base[0]}/gnd_{name}.pkl"), _folder(root, f"{base[1]}/jpg"), name), None
    folder = _folder(root, name)
    if not (folder / "gt").is_dir():
        raise DataError(f"{folder}: not a dataset in the Oxford layout (jpg/, gt/); known names: "
                        f"{sorted(PARTNERS)} (see data/README.md)")
    ds = load_oxford_layout(folder, name=name)
    gnd = folder / f"gnd_{name}.pkl"
    return ds, (load_revisited(gnd, folder / "jpg", name) if gnd.is_file() else None)

"""Shared test fixtures: loading numbered stage scripts, the real sample data, tiny corpora."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_script(relpath: str):
    """Import a stage script such as ``lda/02_learn_lda.py`` as a module (names start with digits)."""
    path = ROOT / relpath
    name = "script_" + relpath.replace("/", "_").replace(".py", "")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keep_first_voc_ids(main_dir: Path, split: str, n: int) -> None:
    """Cut ``<split>.txt`` and every ``<class>_<split>.txt`` in ImageSets/Main to their first n ids
    (keeps CPU tests of the VOC experiments short)."""
    ids = (main_dir / f"{split}.txt").read_text().split()[:n]
    (main_dir / f"{split}.txt").write_text("\n".join(ids) + "\n")
    for f in main_dir.glob(f"*_{split}.txt"):
        rows = [line for line in f.read_text().splitlines() if line.split() and line.split()[0] in ids]
        f.write_text("\n".join(rows) + "\n")


@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread for the test (tiny tensors: fastest, and far faster on a busy machine);
    use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real dataset samples in ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present in the project workspace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """A small demo corpus generated once per test session (all three dataset layouts)."""
    from texttopicnet.data.synthetic import generate

    out = tmp_path_factory.mktemp("demo_corpus")
    generate(out, seed=0, scale=0.25)
    return out

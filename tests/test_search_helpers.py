"""Small real components for the search tests: a text space, images, an index (built once per session).

Imported by the other ``test_search_*.py`` files (pytest puts ``tests/`` on ``sys.path``).
Everything is real: gensim LDA / word2vec fitted on generated texts (the ``simple``
tokenizer, so no WordNet load), a random-init CaffeNet (seeded) embedding generated PNGs.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

SUBJECTS = {
    "ocean": "sea wave fish whale coral beach ship harbour sailor island".split(),
    "forest": "tree leaf oak pine moss deer owl fern acorn trail".split(),
    "city": "street tower bridge traffic subway mayor plaza avenue tram office".split(),
}
CATEGORIES = tuple(SUBJECTS)


def texts(n: int = 60, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        subject = CATEGORIES[i % len(CATEGORIES)]
        out.append(" ".join(rng.choice(SUBJECTS[subject], 12)) + " " + subject)  # the category name is a word too
    return out


@functools.lru_cache(maxsize=None)
def lda_space(num_topics: int = 3):
    import texttopicnet

    return texttopicnet.fit_text_space("lda", texts(), seed=0, num_topics=num_topics, no_below=1, no_above=0.9,
                                       passes=20, reproducible=True, tokenizer="simple")


@functools.lru_cache(maxsize=None)
def word2vec_space():
    import texttopicnet

    return texttopicnet.fit_text_space("word2vec", texts(), seed=0, dim=8, min_count=1, epochs=5,
                                       tokenizer="simple")


def write_images(folder: Path, n: int = 8, seed: int = 0) -> list[Path]:
    """``n`` small PNGs in category folders (colour blocks, each image different)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        (folder / cat).mkdir(parents=True, exist_ok=True)
        a = np.zeros((48, 64, 3), dtype=np.uint8)
        a[:] = rng.integers(0, 256, 3)
        a[rng.integers(0, 24):, : rng.integers(8, 64)] = rng.integers(0, 256, 3)
        p = folder / cat / f"img{i:02d}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


def _tmpdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="ttn-search-test-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.lru_cache(maxsize=None)
def random_embedder(num_outputs: int = 3, kind: str = "distribution"):
    from texttopicnet.search.embedding import ImageEmbedder
    from texttopicnet.weights.loading import load_network

    net, info = load_network("random", num_outputs=num_outputs, seed=0)
    return ImageEmbedder(net, kind), info


def build_tiny_index(out: Path, images: Path, part_images: int = 1024, **kw) -> dict:
    """An index of ``images`` (folder, categories from folders) with the random CaffeNet and the LDA space."""
    from texttopicnet.search.index import build_index, space_checksum
    from texttopicnet.search.sources import open_source

    space = lda_space()
    space_dir = out.parent / "space"
    if not (space_dir / "manifest.json").is_file():
        space.save(space_dir)
    embedder, info = random_embedder(space.dim)
    rec = {"path": str(space_dir), "name": space.name, "kind": space.kind, "similarity": space.similarity,
           "dim": space.dim, "sha256": space_checksum(space_dir), "target": "distribution"}
    coll = open_source(f"folder:{images}", categories_from_folders=True)
    return build_index(out, coll, embedder, network=info, space=rec, batch_size=4, workers=1,
                       part_images=part_images, progress=False, **kw)


@functools.lru_cache(maxsize=None)
def tiny_index() -> Path:
    """A session-wide index folder of 8 images (+ one corrupt file that is skipped)."""
    base = _tmpdir()
    images = base / "images"
    write_images(images, 8)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    build_tiny_index(base / "index", images)
    return base / "index"

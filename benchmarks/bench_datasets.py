"""Dataset-reader and demo-corpus benchmarks.

1. Listing an ImageCLEF-layout collection (metadata parsing, English article lookup):
   ours (``imageclef.list_imageclef`` with the default ``release`` keep rule: one
   ``os.scandir`` per folder, metadata existence from a set, one in-memory XML parse per
   image, article paths checked to stay inside the collection once per folder) against
   the original script's structure (``os.walk``, ``name.split('.')[1]``, an
   ``os.path.isfile`` per image, ``ET.parse`` from the path, language found by comparing
   attribute dicts), on the same synthetic collection of N metadata files (tiny
   placeholder images: neither side decodes them). Both must find the same articles.
2. Demo corpus generation at the pipeline's scale: ours with a process pool against one
   process (same bytes; the tree digests are compared).

    python benchmarks/bench_datasets.py            # full size (100k images), prints JSON rows
    python benchmarks/bench_datasets.py --quick    # 10k images, scale 0.25
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from common import median_time, row  # noqa: E402

LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def make_collection(root: Path, n: int) -> Path:
    """``n`` images in 1,000-image sub-folders; 5% without English, 1% without metadata."""
    coll = root / "ImageCLEF_Wikipedia"
    if (coll / "done").is_file():
        return coll
    for i in range(n):
        sub = str(i // 1000)
        img = coll / "images" / sub / f"{i}.jpg"
        if i % 1000 == 0:
            img.parent.mkdir(parents=True, exist_ok=True)
            (coll / "metadata" / sub).mkdir(parents=True, exist_ok=True)
        img.write_bytes(b"\xff\xd8\xff")
        if i % 100 == 7:
            continue
        en = "" if i % 20 == 3 else (f'<text xml:lang="en"><description/><comment/>'
                                     f'<caption article="text/en/{i // 5000}/{i // 3}">a caption</caption></text>')
        (coll / "metadata" / sub / f"{i}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<image id="{i}" file="images/{sub}/{i}.jpg"><name>x.jpg</name>'
            f'{en}<text xml:lang="de"><caption article="text/de/1/{i}">b</caption></text>'
            f'<text xml:lang="fr"><caption article="text/fr/1/{i}">c</caption></text><license>GFDL</license></image>')
    (coll / "done").write_text("ok")
    return coll


def naive_listing(coll: Path) -> dict[str, str]:
    """The original generate_train_dict.py structure, without its image decoding."""
    img_dir, xml_dir = str(coll / "images") + "/", str(coll / "metadata") + "/"
    found = {}
    for root, _dirs, files in os.walk(img_dir):
        for name in files:
            parts = name.split(".")
            if len(parts) < 2 or parts[1] not in ("jpg", "jpeg"):
                continue
            meta = xml_dir + os.path.basename(root) + "/" + parts[0] + ".xml"
            if not os.path.isfile(meta):
                continue
            article = ""
            for child in ET.parse(meta).getroot():
                if child.attrib == {LANG: "en"}:
                    for c2 in child:
                        if c2.tag == "caption":
                            article = c2.attrib.get("article", "")
                            break
            if article:
                found[os.path.join(root, name)] = article
    return found


def bench_listing(workdir: Path, quick: bool) -> list[dict]:
    from texttopicnet.data.readers import imageclef

    n = 10_000 if quick else 100_000
    coll = make_collection(workdir / f"coll{n}", n)
    ours_result = {}

    def ours():
        items = imageclef.list_imageclef(coll, rule="release")
        ours_result["n"] = len(items)
        ours_result["articles"] = {str(it.image_path): os.path.relpath(it.article_path, coll)
                                   for it in items if it.problem is None}

    naive_result = {}

    def naive():
        naive_result["articles"] = naive_listing(coll)

    repeat = 3 if quick else 2
    t_ours = median_time(ours, repeat=repeat, warmup=1)
    t_naive = median_time(naive, repeat=repeat, warmup=0)
    assert ours_result["n"] == n
    assert ours_result["articles"] == naive_result["articles"], "the two listings disagree"
    return [row("datasets", f"ImageCLEF listing ({n:,} images): list_imageclef vs original os.walk structure",
                t_ours, t_naive, items=n, unit="images",
                notes=f"{len(ours_result['articles']):,} English articles found by both; warm file cache; "
                      "placeholder images (neither side decodes)")]


def _digest(summary: dict) -> str:
    return summary["tree_sha256"]


def bench_generation(workdir: Path, quick: bool) -> list[dict]:
    from texttopicnet.core.cli import default_workers
    from texttopicnet.data.synthetic import generate

    scale = 0.25 if quick else 1.0
    workers = min(4, default_workers())
    out_pool, out_one = workdir / "gen_pool", workdir / "gen_one"
    results = {}

    cpu = {}

    def cpu_now() -> float:
        # Wall time on a shared machine swings with other load; CPU seconds (this process
        # plus finished workers) say what the work itself costs.
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def timed(name, n_workers, out):
        def fn():
            start = cpu_now()
            results[name] = generate(out, seed=0, scale=scale, workers=n_workers)
            cpu[name] = cpu_now() - start
        return fn

    t_pool = median_time(timed("pool", workers, out_pool), repeat=1)
    t_one = median_time(timed("one", 1, out_one), repeat=1)
    assert _digest(results["pool"]) == _digest(results["one"]), "worker count changed the bytes"
    n = results["pool"]["images"]
    shutil.rmtree(out_pool, ignore_errors=True)
    shutil.rmtree(out_one, ignore_errors=True)
    return [row("datasets", f"demo corpus generation, scale {scale:g}: {workers} workers vs 1 process", t_pool, t_one,
                items=n, unit="images", target="< 30 s at scale 1 (ours)",
                notes=f"{results['pool']['files']} files; byte-identical trees; single runs; CPU seconds "
                      f"(all processes): {workers} workers {cpu['pool']:.1f}, 1 process {cpu['one']:.1f}")]


def run(workdir: Path, quick: bool) -> list[dict]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return bench_listing(workdir, quick) + bench_generation(workdir, quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="bench_datasets_") as tmp:
        print(json.dumps(run(Path(tmp), quick), indent=2))

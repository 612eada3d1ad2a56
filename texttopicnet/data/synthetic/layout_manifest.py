"""Plan the demo's captioned-image corpus in the manifest format (``texttopicnet.data.readers.manifest``).

Files (relative to ``Captions/``)::

    manifest.jsonl                  one JSON object per image: image, text or text_file, id,
                                    tags, categories (the subjects drawn), split (train/test)
    images/<n // 100>/<n>.jpg|.png  the pictures
    captions/<n>.txt                the captions of the lines that use text_file

Like captioned web images: captions are a few words (hashtag-style tags for some), many
images share a caption word, and the images are small (64 to 200 px on a side); some are
PNG with an alpha channel (transparent background) or with a palette. Also, each at least
once: a line that is not JSON, a line whose image path leaves the folder (refused as
``outside_collection``), a corrupt image and a caption file that is not UTF-8 (stage 1 counts it, never guesses).
``python lda/01_build_train_dict.py --corpus manifest:RUN/data/Captions/manifest.jsonl``
reads it; ``run_pipeline.py --corpus manifest:...`` trains on it.
"""

from __future__ import annotations

import json

import numpy as np

from .plan import Plan, jitter, mix, new_seed, primaries, scaled
from .render import ImageSpec
from .vocab import TextMaker

ROOT = "Captions"


def _caption(tm: TextMaker, weights: dict[str, float], rng: np.random.Generator) -> str:
    """A few content words, sometimes as hashtags (InstaCities-like), sometimes a short sentence."""
    words = [tm.word(weights, p_stop=0.0, p_background=0.05)[0] for _ in range(int(rng.integers(3, 9)))]
    if rng.random() < 0.3:
        return " ".join("#" + w for w in words)
    return tm.sentence(weights, markup=False) if rng.random() < 0.3 else " ".join(words)


def plan_manifest(plan: Plan, rng: np.random.Generator, scale: float) -> None:
    tm = TextMaker(rng)
    n = scaled(400, scale, 40)
    lines: list[str] = []
    edge: dict[str, list[str]] = {k: [] for k in ("rgba_png", "palette_png", "not_json", "outside", "corrupt",
                                                  "non_utf8_caption", "text_file")}
    for i, primary in enumerate(primaries(rng, n)):
        weights = mix(rng, primary, p_two=0.3)
        kind = ("rgba_png" if i % 10 == 1 else "palette_png" if i % 10 == 2 else "jpg")
        ext = "png" if kind != "jpg" else "jpg"
        rel = f"images/{i // 100}/{i}.{ext}"
        side = int(rng.integers(64, 201))
        w, h = side, max(64, int(side * rng.uniform(0.75, 1.33)))  # >= 64: stage 1's --min-side for manifests
        mode = {"rgba_png": "RGBA", "palette_png": "P"}.get(kind, "RGB")
        damage = "garbage" if i == 7 else None
        plan.image(f"{ROOT}/{rel}", ImageSpec(seed=new_seed(rng), width=w, height=h, weights=jitter(rng, weights),
                                              fmt="PNG" if ext == "png" else "JPEG", mode=mode), damage)
        if kind != "jpg":
            edge[kind].append(f"{ROOT}/{rel}")
        if damage:
            edge["corrupt"].append(f"{ROOT}/{rel}")
        caption = _caption(tm, weights, rng)
        record = {"id": f"c{i}", "image": rel, "tags": sorted({w.lstrip("#") for w in caption.split()[:3]}),
                  "categories": sorted(weights), "split": "test" if i % 5 == 0 else "train"}
        if i % 6 == 3:  # captions in files, as a folder-of-captions corpus has them
            cap_rel = f"captions/{i}.txt"
            if i == 9:  # Latin-1 bytes: refused and counted by stage 1 (caption_not_utf8)
                plan.text(f"{ROOT}/{cap_rel}", caption + " caf\u00e9", encoding="latin-1")
                edge["non_utf8_caption"].append(f"{ROOT}/{cap_rel}")
            else:
                plan.text(f"{ROOT}/{cap_rel}", caption)
            edge["text_file"].append(f"{ROOT}/{cap_rel}")
            record["text_file"] = cap_rel
        else:
            record["text"] = caption
        lines.append(json.dumps(record, ensure_ascii=False))
    lines.insert(5, '{"image": "images/0/5.jpg", "text": unquoted words}')
    edge["not_json"].append("line 6")
    lines.insert(11, json.dumps({"id": "escape", "image": "../ImageCLEF_Wikipedia/images/0/1.jpg",
                                 "text": "a path leaving the corpus folder"}))
    edge["outside"].append("line 12")
    plan.text(f"{ROOT}/manifest.jsonl", "\n".join(lines) + "\n")
    plan.summary["manifest"] = {"lines": len(lines), "images": n, "train_images": n - len(range(0, n, 5)),
                                "edge_cases": edge,
                                "manifest": f"{ROOT}/manifest.jsonl"}

"""Plan the demo VOC2007-style classification set: classes = the subjects' motifs present in a picture.

A class is a subject's motif (:mod:`texttopicnet.data.synthetic.motifs`): the very shapes,
textures and layouts the network learns from the ImageCLEF layout, where they illustrate
articles about that subject; that shared visual vocabulary is what transfers.

Files (relative to ``VOC2007/VOCdevkit/VOC2007/``): ``JPEGImages/<id>.jpg``,
``Annotations/<id>.xml`` (minimal VOC annotation: size and one object per present
subject; boxes are the whole picture, not object outlines), ``ImageSets/Main/{train,
val,trainval,test}.txt`` and ``<class>_<split>.txt`` with labels 1 (motif painted),
-1 (absent) and 0 ("difficult": one small, low-contrast element of the motif only).
Every class is the main subject of at least one picture in each of train, val and test.
Classes co-occur as scenes do (:data:`COOCCUR`: a skyline with a stadium's balls, dunes
under stars), not uniformly.
"""

from __future__ import annotations

import numpy as np

from .plan import Plan, new_seed, primaries, scaled
from .render import ImageSpec
from .vocab import SUBJECTS

ROOT = "VOC2007/VOCdevkit/VOC2007"
# Which motifs share a picture (a second class comes from this list 3 times in 4, else from any).
COOCCUR: dict[str, tuple[str, ...]] = {
    "ocean": ("desert", "space", "sport"), "forest": ("warfare", "food", "space"),
    "desert": ("ocean", "warfare", "space"), "city": ("music", "food", "art", "sport"),
    "music": ("art", "city", "food"), "sport": ("city", "ocean", "food"),
    "warfare": ("forest", "desert", "city"), "art": ("music", "city", "food"),
    "space": ("desert", "ocean", "forest"), "food": ("city", "music", "art"),
}
P_SECOND, P_THIRD = 0.35, 0.08


def _partner(rng: np.random.Generator, present: list[str]) -> str | None:
    """A class that goes with the first one present (not already in the picture)."""
    usual = [s for s in COOCCUR[present[0]] if s not in present]
    if usual and rng.random() < 0.75:
        return usual[int(rng.integers(len(usual)))]
    rest = [s for s in SUBJECTS if s not in present]
    return rest[int(rng.integers(len(rest)))]


def _annotation(image_id: str, w: int, h: int, present: list[str], faint: list[str]) -> str:
    objects = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{int(difficult)}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>1</xmin>\n\t\t\t<ymin>1</ymin>\n"
        f"\t\t\t<xmax>{w}</xmax>\n\t\t\t<ymax>{h}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for name, difficult in [(p, False) for p in present] + [(f, True) for f in faint])
    return (f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
            f"\t<source>\n\t\t<database>TextTopicNet demo corpus</database>\n\t</source>\n"
            f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objects}</annotation>\n")


def plan_voc(plan: Plan, rng: np.random.Generator, scale: float) -> None:
    n_train = scaled(125, scale, len(SUBJECTS))
    n_val = scaled(125, scale, len(SUBJECTS))
    n_test = scaled(250, scale, len(SUBJECTS))
    total = n_train + n_val + n_test
    # VOC interleaves ids across splits: draw the split of each consecutive id at random.
    order = rng.permutation(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    ids = {s: [f"{i + 1:06d}" for i in range(total) if order[i] == s] for s in ("train", "val", "test")}
    labels: dict[str, dict[str, int]] = {}
    for split, split_ids in ids.items():
        for image_id, primary in zip(split_ids, primaries(rng, len(split_ids))):
            present = [primary]
            if rng.random() < P_SECOND:
                present.append(_partner(rng, present))
                if rng.random() < P_THIRD / P_SECOND:
                    present.append(_partner(rng, present))
            faint = []
            if rng.random() < 0.25:
                faint.append([s for s in SUBJECTS if s not in present][int(rng.integers(len(SUBJECTS) - len(present)))])
            # Each present motif gets a sizeable share of the picture (0.25 .. 0.75 of it).
            share = np.clip(rng.dirichlet([4.0] * len(present)), 0.25, 0.75) if len(present) > 1 else np.ones(1)
            weights = tuple((p, round(float(a), 4)) for p, a in zip(present, share / share.sum()))
            w, h = int(rng.integers(256, 361)), int(rng.integers(256, 321))
            plan.image(f"{ROOT}/JPEGImages/{image_id}.jpg",
                       ImageSpec(seed=new_seed(rng), width=w, height=h, weights=weights, faint=tuple(faint)))
            plan.text(f"{ROOT}/Annotations/{image_id}.xml", _annotation(image_id, w, h, present, faint))
            labels[image_id] = {s: (1 if s in present else 0 if s in faint else -1) for s in SUBJECTS}
    splits = {"train": ids["train"], "val": ids["val"], "trainval": sorted(ids["train"] + ids["val"]),
              "test": ids["test"]}
    main = f"{ROOT}/ImageSets/Main"
    summary = {"classes": list(SUBJECTS), "splits": {}}
    for split, split_ids in splits.items():
        plan.text(f"{main}/{split}.txt", "".join(f"{i}\n" for i in split_ids))
        for cls in SUBJECTS:
            # The official files pad the label to two characters: '000005 -1', '000007  1'.
            plan.text(f"{main}/{cls}_{split}.txt", "".join(f"{i} {labels[i][cls]:2d}\n" for i in split_ids))
        summary["splits"][split] = {
            "images": len(split_ids),
            "positives": {c: sum(labels[i][c] == 1 for i in split_ids) for c in SUBJECTS},
            "difficult": {c: sum(labels[i][c] == 0 for i in split_ids) for c in SUBJECTS},
        }
    plan.summary["voc"] = summary

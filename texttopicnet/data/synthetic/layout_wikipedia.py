"""Plan the demo Wikipedia cross-modal set (Rasiwasia et al. 2010 layout): categories = subjects.

Files (relative to ``Wikipedia/``): ``texts/<text_id>.xml`` (``<document id name cat>
<text>...</text><imageset><image id=.../></imageset></document>``; about one in ten is
not well-formed XML, with a stray ``&``, ``<`` and an undefined entity, like 31% of the
real files), ``images/<category>/<image_id>.jpg``, ``trainset_txt_img_cat.list`` /
``testset_txt_img_cat.list`` (``text_id<TAB>image_id<TAB>category``) and
``categories.list``. Every category appears in both splits.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .plan import Plan, image_size, jitter, mix, new_seed, primaries, scaled
from .render import ImageSpec
from .vocab import SUBJECTS, TextMaker

ROOT = "Wikipedia"


def _hex(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def plan_wikipedia(plan: Plan, rng: np.random.Generator, scale: float, seed: int) -> None:
    tm = TextMaker(rng)
    sizes = {"train": scaled(220, scale, 2 * len(SUBJECTS)), "test": scaled(80, scale, len(SUBJECTS))}
    plan.text(f"{ROOT}/categories.list", "".join(f"{c}\n" for c in SUBJECTS))
    summary = {"categories": list(SUBJECTS), "malformed_texts": 0}
    k = 0
    for split, n in sizes.items():
        lines, counts = [], {c: 0 for c in SUBJECTS}
        for primary in primaries(rng, n):
            weights = mix(rng, primary, p_two=0.3)
            article = _hex("article", seed, k // 3)  # sections of one article share its hash, as in the real ids
            text_id = f"{article}-{k % 3 + 1}" + (f".{int(rng.integers(1, 6))}" if rng.random() < 0.3 else "")
            image_id = _hex("image", seed, k)
            title = tm.title(weights).replace(" ", "_")
            body = tm.plain_text(weights, int(rng.integers(90, 260)))
            if k % 10 == 3:
                # Not well-formed, like the real data: bare '&', '<' and an undefined entity.
                body = body.replace(". ", ". Prices rose by <5% & more&nbsp;than before. ", 1)
                summary["malformed_texts"] += 1
            else:
                body = body.replace("&", "&amp;").replace("<", "&lt;")
            cat_id = SUBJECTS.index(primary) + 1
            plan.text(f"{ROOT}/texts/{text_id}.xml",
                      f'<document id="{text_id}" name="{title}" cat="{int(rng.integers(1, 30))}">\n<text>\n{body}\n'
                      f'</text>\n<imageset>\n<image id="{image_id}" name="{title}" sectnum="{k % 3 + 1}#1">'
                      f"../img/{image_id}.jpg</image>\n</imageset>\n</document>\n")
            w, h = image_size(rng)
            plan.image(f"{ROOT}/images/{primary}/{image_id}.jpg",
                       ImageSpec(seed=new_seed(rng), width=w, height=h, weights=jitter(rng, weights)))
            lines.append(f"{text_id}\t{image_id}\t{cat_id}\n")
            counts[primary] += 1
            k += 1
        plan.text(f"{ROOT}/{split}set_txt_img_cat.list", "".join(lines))
        summary[split] = {"pairs": n, "per_category": counts}
    plan.summary["wikipedia"] = summary

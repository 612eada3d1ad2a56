"""Plan the demo ImageCLEF Wikipedia collection: articles, images, metadata and the edge cases.

Files (relative to ``ImageCLEF_Wikipedia/``)::

    images/<id // 100>/<id>.jpg|.png          the pictures
    metadata/<id // 100>/<id>.xml             <image id file><name/><text xml:lang="en|de|fr">
                                              <description/><comment/><caption article="..."/></text>...
    text/en/<article_id // 1000>/<article_id>.xml   English articles: wiki markup inside <article><text>
    text/en/<article_id // 1000>/<article_id>.txt   a few articles as bare wiki markup (no wrapper)

Edge cases (each at least once at any scale; paths listed in synthetic.json):
PNG files (one palette PNG, one PNG saved as .jpg), images under 256 px, a grayscale
and a CMYK JPEG, a truncated JPEG that still decodes, a corrupt file, an image with no
metadata, a malformed metadata file, metadata with only German/French entries, a
caption naming a missing article, an article that is empty after preprocessing and
an article with non-UTF-8 (Latin-1) bytes.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .plan import Plan, image_size, jitter, mix, new_seed, primaries, scaled
from .render import ImageSpec
from .vocab import DE_WORDS, FR_WORDS, TextMaker, empty_after_preprocessing

ROOT = "ImageCLEF_Wikipedia"
LICENSES = ("GFDL", "CC-BY-SA-3.0", "PD-self", "CC-BY-2.5")


def _image_rel(image_id: int, ext: str) -> tuple[str, str]:
    sub = str(image_id // 100)
    return f"images/{sub}/{image_id}.{ext}", f"metadata/{sub}/{image_id}.xml"


def _lang_block(lang: str, article: str | None, caption: str, description: str = "") -> str:
    desc = f"<description>{escape(description)}</description>" if description else "<description/>"
    cap = (f"<caption article={quoteattr(article)}>{escape(caption)}</caption>" if article is not None
           else f"<caption>{escape(caption)}</caption>")
    return f'  <text xml:lang="{lang}">\n    {desc}\n    <comment/>\n    {cap}\n  </text>\n'


def _metadata(image_id: int, file_rel: str, name: str, blocks: list[str], rng: np.random.Generator) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<image id="{image_id}" file={quoteattr(file_rel)}>\n'
            f"  <name>{escape(name)}</name>\n" + "".join(blocks)
            + f"  <comment>({{{{Information |Description={escape(name)} |Source=own work}}}})</comment>\n"
            f"  <license>{LICENSES[int(rng.integers(len(LICENSES)))]}</license>\n</image>\n")


def _wrapped(article_id: int, title: str, wikitext: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<article id="{article_id}" title={quoteattr(title)} lang="en">\n'
            f"<text>\n{escape(wikitext)}</text>\n</article>\n")


def plan_imageclef(plan: Plan, rng: np.random.Generator, scale: float) -> None:
    tm = TextMaker(rng)
    n_articles = scaled(250, scale, 16)
    edge: dict[str, list[str]] = {k: [] for k in (
        "png", "png_as_jpg", "small", "grayscale", "cmyk", "truncated", "corrupt", "no_metadata",
        "bad_metadata", "no_english", "missing_article", "empty_article", "non_utf8_article")}
    # Flags per image, so the summary counts follow from what was written (not from constants).
    flags: list[dict] = []
    next_image = [1]

    def add_image(article_rel: str | None, weights: dict[str, float], title: str, *, ext: str = "jpg",
                  fmt: str = "JPEG", mode: str = "RGB", size: tuple[int, int] | None = None,
                  damage: str | None = None, meta: str = "ok") -> str:
        image_id = next_image[0]
        next_image[0] += 1
        rel, meta_rel = _image_rel(image_id, ext)
        w, h = size or image_size(rng)
        plan.image(f"{ROOT}/{rel}", ImageSpec(seed=new_seed(rng), width=w, height=h,
                                              weights=jitter(rng, weights), fmt=fmt, mode=mode), damage)
        caption = tm.sentence(weights, markup=False)
        blocks = []
        if meta in ("ok", "bad") and article_rel is not None:
            blocks.append(_lang_block("en", article_rel, caption, description=title))
        if meta == "missing_article":
            blocks.append(_lang_block("en", "text/en/99/9999999.xml", caption))
        blocks.append(_lang_block("de", f"text/de/{image_id // 1000}/{700000 + image_id}.xml", tm.foreign(DE_WORDS)))
        blocks.append(_lang_block("fr", f"text/fr/{image_id // 1000}/{800000 + image_id}.xml", tm.foreign(FR_WORDS)))
        xml = _metadata(image_id, rel, f"{title.replace(' ', '_')}_{image_id}.{ext}", blocks, rng)
        if meta == "bad":
            # A truncated, not well-formed file: unclosed elements and a bare '&'.
            xml = xml[: len(xml) // 2] + " & broken <caption"
        if meta != "none":
            plan.text(f"{ROOT}/{meta_rel}", xml)
        flags.append({"path": f"{ROOT}/{rel}", "jpeg": fmt == "JPEG" and damage != "garbage",
                      "release_name": ext in ("jpg", "jpeg"),  # the release keeps by file name
                      "big": min(w, h) >= 256,
                      "english": (meta == "ok" and article_rel is not None) or meta == "missing_article",
                      "article_exists": meta == "ok" and article_rel is not None, "decodes": damage != "garbage"})
        return f"{ROOT}/{rel}"

    articles = []
    for a, primary in enumerate(primaries(rng, n_articles)):
        weights = mix(rng, primary)
        title = f"{tm.title(weights)} {a}"
        article_id = 10000 + 37 * a
        text = tm.article(weights, title, int(rng.integers(150, 320)))
        bare = a % 12 == 5  # a few articles are bare wiki markup, as in a plain text dump
        ext = "txt" if bare else "xml"
        rel = f"text/en/{article_id // 1000}/{article_id}.{ext}"
        plan.text(f"{ROOT}/{rel}", text if bare else _wrapped(article_id, title, text))
        articles.append((rel, weights, title))
        for _ in range(int(rng.integers(1, 5))):
            add_image(rel, weights, title)

    # The special articles: one empty after preprocessing, one with Latin-1 bytes.
    empty_rel = "text/en/9/9000001.xml"
    plan.text(f"{ROOT}/{empty_rel}", _wrapped(9000001, "Stub", empty_after_preprocessing()))
    edge["empty_article"].append(add_image(empty_rel, {"art": 1.0}, "Stub"))
    latin_rel = "text/en/9/9000002.txt"
    latin_weights = {"food": 0.7, "city": 0.3}
    latin_text = (tm.article(latin_weights, "Caf\u00e9 culture", 200)
                  + "\nThe caf\u00e9s of Z\u00fcrich serve cr\u00e8me br\u00fbl\u00e9e and na\u00efve desserts.\n")
    plan.text(f"{ROOT}/{latin_rel}", latin_text, encoding="latin-1")
    for _ in range(2):
        edge["non_utf8_article"].append(add_image(latin_rel, latin_weights, "Cafe culture"))

    def host() -> tuple[str, dict[str, float], str]:
        return articles[int(rng.integers(len(articles)))]

    for mode in ("RGB", "P"):
        edge["png"].append(add_image(*host(), ext="png", fmt="PNG", mode=mode))
    edge["png_as_jpg"].append(add_image(*host(), fmt="PNG"))
    edge["small"].append(add_image(*host(), size=(200, 300)))
    edge["small"].append(add_image(*host(), size=(320, 180)))
    edge["grayscale"].append(add_image(*host(), mode="L"))
    edge["cmyk"].append(add_image(*host(), mode="CMYK"))
    edge["truncated"].append(add_image(*host(), damage="truncate"))
    edge["corrupt"].append(add_image(*host(), damage="garbage"))
    edge["no_metadata"].append(add_image(*host(), meta="none"))
    edge["bad_metadata"].append(add_image(*host(), meta="bad"))
    for _ in range(2):
        edge["no_english"].append(add_image(None, host()[1], "Nur deutsch", meta="foreign"))
    edge["missing_article"].append(add_image(None, host()[1], "Lost", meta="missing_article"))

    passes_filter = [f for f in flags if f["jpeg"] and f["big"] and f["english"] and f["decodes"]]
    plan.summary["imageclef"] = {
        "articles": n_articles + 2,
        "images": len(flags),
        "paper_filter_kept": len(passes_filter),  # JPEG bytes, >= 256 px, English caption@article
        "kept_with_existing_article": sum(f["article_exists"] for f in passes_filter),
        # The release's rule (the default keep rule): a .jpg/.jpeg name instead of JPEG bytes.
        "release_kept_with_existing_article": sum(
            f["release_name"] and f["big"] and f["english"] and f["decodes"] and f["article_exists"] for f in flags),
        "edge_cases": edge,
    }

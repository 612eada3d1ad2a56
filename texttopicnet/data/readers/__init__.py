"""Dataset readers: plain records from the three datasets' on-disk layouts.

- :mod:`.imageclef`: ImageCLEF Wikipedia Retrieval 2010 (training images + articles), read
  with a named keep rule (:data:`~.imageclef.KEEP_RULES`: ``release`` by default, ``ours``).
- :mod:`.wikipedia`: Rasiwasia et al. 2010 Wikipedia cross-modal retrieval dataset.
- :mod:`.voc`: PASCAL VOC2007 image-level classification labels.

Each reader raises :class:`texttopicnet.core.errors.DataError` (path, what is wrong, how
to get the data) for a missing or malformed folder. Paths built from data (a caption's
article, a list file's ids) that would resolve outside the dataset folder are refused and
counted under ``outside_collection`` (:func:`texttopicnet.core.paths.inside`).
data/README.md describes the expected layouts; ``python data/make_synthetic.py --out data``
writes a small demo corpus in all three.
"""

from .imageclef import KEEP_RULES, ImageCLEFItem, KeepRule, find_collection_root, list_imageclef, read_article
from .voc import VOC_CLASSES, VOCSplit, find_voc_root, load_voc_split, voc_classes
from .wikipedia import WikiPair, categories, find_wikipedia_root, load_wikipedia, read_wiki_text

__all__ = [
    "KEEP_RULES", "ImageCLEFItem", "KeepRule", "find_collection_root", "list_imageclef", "read_article",
    "VOC_CLASSES", "VOCSplit", "find_voc_root", "load_voc_split", "voc_classes",
    "WikiPair", "categories", "find_wikipedia_root", "load_wikipedia", "read_wiki_text",
]

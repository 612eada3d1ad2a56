"""TextTopicNet: self-supervised visual features from LDA topic spaces (Gomez et al., CVPR 2017).

A Python 3 / PyTorch reimplementation. Reusable code lives in this package; the
numbered stage scripts in ``lda/``, ``cnn/`` and ``experiments/`` are thin wrappers.

Top-level API (imported on first use, so ``import texttopicnet`` stays light)::

    texttopicnet.fit_text_space(kind, texts, seed=0, **options)   # lda, lsi, word2vec, doc2vec, fasttext, glove
    texttopicnet.load_text_space(path)
    texttopicnet.oxford_average_precision(ranked_ids, positive_ids, junk_ids) -> float   # Oxford/Paris AP
    texttopicnet.parse_query("2*park-[img:17]") -> [(2.0, "word", "park"), (-1.0, "image", "17")]
    texttopicnet.query_vector(space, text, images=None) -> np.ndarray       # the combined query
    texttopicnet.saliency_scores(saliency_map, fixation_map, other_fixations=None) -> dict
"""

__version__ = "0.1.0"

_LAZY = {"fit_text_space": "texttopicnet.text.spaces", "load_text_space": "texttopicnet.text.spaces",
         "oxford_average_precision": "texttopicnet.instance.protocols",
         "parse_query": "texttopicnet.search.query", "query_vector": "texttopicnet.search.query",
         "saliency_scores": "texttopicnet.vlm.metrics"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'texttopicnet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))

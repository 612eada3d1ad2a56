"""Multimodal semantic search: images found by words, images and their arithmetic, in a text space.

A trained network embeds a collection of images into its text space (``index``); a query
mixes words and images with ``+``, ``-`` and weights (``query``: the language, and how the
terms are combined for distributions and for vectors; ``words``: how a word becomes a
vector in each space); ``backends`` rank the index (exact chunked matrix products, or
faiss); ``engine`` ties them together, ``server`` serves it over HTTP with a one-file page
(``static/index.html``); ``evaluation`` holds the MIRFlickr-25K and InstaCities1M
text->image protocols.

Scripts: ``search/01_build_index.py``, ``search/02_serve.py``, ``search/03_evaluate.py``.

Use::

    import texttopicnet
    texttopicnet.parse_query("2*park-[img:17]")   # [(2.0, "word", "park"), (-1.0, "image", "17")]
    q = texttopicnet.query_vector(space, "beach - sunrise", images={"17": row})
"""

from .query import MAX_QUERY_CHARS, MAX_TERMS, QueryError, combine, format_terms, parse_query, query_vector

__all__ = ["MAX_QUERY_CHARS", "MAX_TERMS", "QueryError", "combine", "format_terms", "parse_query", "query_vector"]

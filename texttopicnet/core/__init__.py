"""Shared plumbing every stage uses: command lines (``cli``), atomic files (``io``), ``meta.json``
provenance (``provenance``), user-facing errors (``errors``) and the one distributed helper (``dist``)."""

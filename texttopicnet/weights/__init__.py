"""Network weights: loading any weights file the experiments accept (``loading``), the Caffe
importer (``caffe_proto``, ``caffe_import``) and the authors' published files (``published``)."""

from .loading import load_network  # noqa: F401  (the one entry point most callers need)

"""TextTopicNet: self-supervised visual features from LDA topic spaces (Gomez et al., CVPR 2017).

A Python 3 / PyTorch reimplementation. Reusable code lives in this package; the
numbered stage scripts in ``lda/``, ``cnn/`` and ``experiments/`` are thin wrappers.
"""

__version__ = "0.1.0"

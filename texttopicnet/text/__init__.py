"""Text: preprocessing (``preprocess``), the LDA topic space (``topics``, ``lda_train``) and the
per-image training labels (``labels``)."""

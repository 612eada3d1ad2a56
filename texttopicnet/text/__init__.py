"""Text: preprocessing (``preprocess``), the LDA topic space (``topics``, ``lda_train``), the other text spaces
(``spaces``, fit on the stage's tokens by ``space_train``) and the per-image training labels (``labels``)."""

"""Training on packed images: presets, data feeding, the loop, losses, logs and export.

Any backbone of :mod:`texttopicnet.networks.backbones` (CaffeNet, the paper's, by default) with any
loss of :mod:`texttopicnet.training.losses` (sigmoid cross-entropy, the paper's, by default).
``cnn/02_train.py`` is the command-line front end; :func:`texttopicnet.training.loop.train`
does the work and can be called directly (tests do).
"""

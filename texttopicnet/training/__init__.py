"""CaffeNet training on packed images: presets, data feeding, the loop, logs and export.

``cnn/02_train.py`` is the command-line front end; :func:`texttopicnet.training.loop.train`
does the work and can be called directly (tests do).
"""

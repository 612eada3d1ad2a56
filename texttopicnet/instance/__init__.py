"""Instance search with topic-weighted convolutional features (Jimenez et al., BMVC 2017, with topics as classes).

Modules: ``protocols`` (Oxford/Paris readers, official AP, revisited E/M/H metrics), ``revisited``
(the revisited ground-truth pickle, read safely),
``cams`` (CAM heads and CAM networks), ``cam_training`` (training a CAM head over a frozen
backbone), ``descriptors`` (CroW, class vectors, PCA whitening, aggregation), ``extraction``
and ``queries`` (stores of database and query descriptors), ``search`` (ranking, query
expansion, CAM-box re-ranking), ``experiment`` (the paper's table), ``synthetic`` (the offline
benchmark), ``datasets`` (download entries and the dataset registry), ``stages`` (shared options
and folders of the stage scripts).
Stage scripts: ``experiments/instance_search/0*.py``.
"""

"""CNN-VLM (Kato & Harada 2015): language models over CNN feature maps.

How predictable a network's feature map is as the eye scans it: four 2-layer LSTMs per
layer read it top-down, bottom-up, left-right and right-left and predict the next feature
vector; where prediction fails the image is "unnatural". Modules:

- ``features``: pre-ReLU taps of any backbone, standardisation, PCA as a 1x1 convolution;
- ``model``: the four-direction language models, the ramp-weighted loss, unnaturalness maps;
- ``naturalness``: network + projections + language models as one object, ``vlm.pt`` files;
- ``train``: statistics and the training loop (resumable); ``sources``: image folders/packs;
- ``saliency``: the release's map post-processing; ``metrics``: MIT benchmark saliency metrics;
- ``reconstruct``: feature inversion with the VLM prior; ``paste``: the pasted-region check;
- ``datasets``: MIT1003 and Toronto readers and download entries; ``figures``: report figures.

Stage scripts: ``experiments/vlm/01_train_vlm.py`` .. ``05_reconstruct.py``.
"""

"""Data: dataset readers (``readers``), the embedded demo corpus (``synthetic``), image decoding
(``images``), training pairs (``pairs``), the packed uint8 image store (``packing``) and downloads."""

"""cnnpipe: a reproducible image-classification pipeline for the classic CNNs."""

__version__ = "0.1.0"

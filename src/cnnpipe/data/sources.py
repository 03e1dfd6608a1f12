"""Data sources: each yields the prepared format's uint8 images (N, H, W, C) a chunk at a time.

  digits         scikit-learn's 1,797 handwritten 8x8 digits (ship with the package)
  imagefolder    data.root/<class name>/**/<image>, the layout of flower_photos
  mnist, fashion_mnist, cifar10, cifar100
                 torchvision's copies: read from data.root when there, else downloaded
                 into it (or into the user's cache directory when data.root is null)

The torchvision sets are small enough to read whole; an image folder is decoded a
chunk at a time, so its size is bounded by the disk, not by RAM.
"""

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnpipe.config import DataConfig
from cnnpipe.download import socket_timeout
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import resolve_path
from cnnpipe.images import ImageError, read_picture, to_pixels

CHUNK_BYTES = 16 * 2**20  # decoded pixels held at a time, whatever the image size
TORCHVISION = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}


@dataclass
class Source:
    classes: list[str]
    total: int  # images to expect, before unusable files are dropped
    chunks: Iterator[tuple[np.ndarray, np.ndarray]]
    bad_files: list[dict] = field(default_factory=list)  # {"path", "reason"}, filled as read


def check_source(cfg: DataConfig) -> None:
    """What can be known about the source without reading it: an image folder exists."""
    if cfg.source == "imagefolder":
        root = resolve_path(cfg.root)
        if not root.is_dir():
            raise CnnpipeError(f"data.root {root}: no such folder")


def open_source(cfg: DataConfig) -> Source:
    if cfg.source == "digits":
        return _from_arrays(*_digits(), cfg)
    if cfg.source == "imagefolder":
        return _image_folder(resolve_path(cfg.root), cfg)
    return _from_arrays(*_torchvision(cfg), cfg)


def read_source(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The whole source in memory, for small sets (tests, benchmarks)."""
    source = open_source(cfg)
    chunks = list(source.chunks)
    images = np.concatenate([x for x, _ in chunks])
    return images, np.concatenate([y for _, y in chunks]), source.classes


# Sources held as arrays: digits and torchvision's sets.


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are ink counts 0..16.
    return bunch.images[..., None] / 16.0, bunch.target, [str(n) for n in bunch.target_names]


def _torchvision(cfg: DataConfig):
    import torchvision.datasets

    kind = getattr(torchvision.datasets, TORCHVISION[cfg.source])
    root = resolve_path(cfg.root) if cfg.root else _cache_dir() / cfg.source
    parts = [_open_torchvision(kind, cfg, root, train) for train in (True, False)]
    # Train and test sets are pooled: the split stage draws its own stratified split.
    images = np.concatenate([np.asarray(p.data) for p in parts])
    labels = np.concatenate([np.asarray(p.targets) for p in parts])
    if images.ndim == 3:
        images = images[..., None]
    return images, labels, list(parts[0].classes)


def _open_torchvision(kind, cfg: DataConfig, root: Path, train: bool):
    try:
        with socket_timeout():
            return kind(str(root), train=train, download=cfg.download)
    except (RuntimeError, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]
        if not cfg.download:
            raise CnnpipeError(
                f"{cfg.source} is not in {root} ({reason}); copy torchvision's files there "
                "or set data.download: true"
            ) from None
        raise CnnpipeError(
            f"cannot download {cfg.source} into {root} ({reason}); without internet, copy "
            "torchvision's files there and set data.root to it"
        ) from None


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnpipe"


def _from_arrays(images: np.ndarray, labels: np.ndarray, classes: list[str], cfg: DataConfig):
    """Images (N, H, W, C), uint8 or float in 0..1 -> resized chunks in the prepared format."""

    def chunks():
        step = _chunk(cfg)
        for start in range(0, len(images), step):
            yield (
                _resize(images[start : start + step], cfg),
                np.asarray(labels[start : start + step], dtype=np.int64),
            )

    return Source(classes, len(images), chunks())


def _chunk(cfg: DataConfig) -> int:
    """Images per chunk: as many as fit in CHUNK_BYTES once decoded."""
    return max(1, CHUNK_BYTES // (cfg.prepared_size**2 * cfg.channels))


def _resize(images: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """uint8 or 0..1 float images (N, H, W, C) -> uint8 (N, S, S, channels) at the prepared
    size S, each converted and resized by Pillow exactly as a file from an image folder is."""
    from PIL import Image

    if images.dtype != np.uint8:
        images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    size = cfg.prepared_size
    out = np.empty((len(images), size, size, cfg.channels), dtype=np.uint8)
    for i, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
        out[i] = to_pixels(picture, cfg.channels, size, cfg.resize)
    return out


# Image folders.


def _image_folder(root: Path, cfg: DataConfig) -> Source:
    check_source(cfg)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CnnpipeError(
            f"data.root {root}: no class folders in it; put each class's images in a "
            "subfolder named after the class"
        )
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        files += found
        labels += [label] * len(found)
    classes = [folder.name for folder in folders]
    present = set(labels)
    empty = [name for i, name in enumerate(classes) if i not in present]
    if empty:
        raise CnnpipeError(f"data.root {root}: class folder(s) with no files: {', '.join(empty)}")
    bad = []  # filled by the decoder as it meets unusable files
    chunks = _decode(root, files, np.asarray(labels), classes, cfg, bad)
    return Source(classes, len(files), chunks, bad)


def _decode(root, files: list[Path], labels: np.ndarray, classes, cfg: DataConfig, bad: list):
    def read(path):
        try:
            return read_picture(path, cfg.channels, cfg.prepared_size, cfg.resize)
        except ImageError as exc:
            return str(exc).removeprefix(f"{path}: ")

    usable = np.zeros(len(classes), dtype=np.int64)
    chunk = _chunk(cfg)
    # Pillow releases the GIL while it decodes and resizes, so threads use every core.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        for start in range(0, len(files), chunk):
            batch = files[start : start + chunk]
            images, keep = [], []
            for i, result in enumerate(pool.map(read, batch), start=start):
                if isinstance(result, str):
                    bad.append({"path": str(files[i].relative_to(root)), "reason": result})
                else:
                    images.append(result)
                    keep.append(i)
                    usable[labels[i]] += 1
            if images:
                yield np.stack(images), labels[keep]
    empty = [name for name, n in zip(classes, usable, strict=True) if n == 0]
    if empty:
        raise CnnpipeError(
            f"data.root {root}: no usable image in class folder(s) {', '.join(empty)}"
        )

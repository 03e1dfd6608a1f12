"""The prepared format every data source writes and every later stage reads.

A directory holding:
  images.npy    uint8, shape (N, H, W, C): one image per row, channels last
  labels.npy    int64, shape (N,): class index per image
  classes.json  list of class names; position = class index

Plain .npy files open memory-mapped, so a stage can slice a data set larger than RAM.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_dir, read_json, write_json


@dataclass
class Prepared:
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    @property
    def image_size(self) -> int:
        return self.images.shape[1]


def save_prepared(path: str | Path, images: np.ndarray, labels: np.ndarray, classes: list[str]):
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    with atomic_dir(path) as tmp:
        np.save(tmp / "images.npy", images)
        np.save(tmp / "labels.npy", labels.astype(np.int64))
        write_json(tmp / "classes.json", list(classes))


def load_prepared(path: str | Path) -> Prepared:
    path = Path(path)
    missing = [n for n in ("images.npy", "labels.npy", "classes.json") if not (path / n).exists()]
    if missing:
        raise CnnpipeError(f"{path}: not a prepared data set (missing {', '.join(missing)})")
    return Prepared(
        images=np.load(path / "images.npy", mmap_mode="r"),
        labels=np.load(path / "labels.npy"),
        classes=read_json(path / "classes.json"),
    )

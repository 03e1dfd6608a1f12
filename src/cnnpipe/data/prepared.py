"""The prepared format every data source writes and every later stage reads.

A directory holding:
  images.npy    uint8, shape (N, H, W, C): one image per row, channels last
  labels.npy    int64, shape (N,): class index per image
  classes.json  list of class names; position = class index

  report.json   what prepare found: images per class, and the files it skipped and why

Plain .npy files open memory-mapped, so a stage can slice a data set larger than RAM;
`prepared_writer` writes them a chunk at a time, so neither does prepare need to hold one.
"""

import contextlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnpipe.crops import centre_crop
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_dir, read_json, write_json


@dataclass
class Prepared:
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    report: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def inputs(self, index, size: int) -> np.ndarray:
        """The rows `index` as a network of input `size` receives them at evaluation: the
        centre crop of each (the whole image when it was prepared at `size`)."""
        return np.ascontiguousarray(centre_crop(self.images[index], size))


class _ImageFile:
    """images.npy grown a chunk at a time; its header is written last, once N is known."""

    HEADER = 128  # bytes reserved for the .npy header: room for any (N, H, W, C)

    def __init__(self, path: Path):
        self.file = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self.file.write(b"\0" * self.HEADER)
        self.shape = None
        self.count = 0

    def append(self, images: np.ndarray) -> None:
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}"
            )
        if self.shape is None:
            self.shape = images.shape[1:]
        elif images.shape[1:] != self.shape:
            raise ValueError(f"image shape {images.shape[1:]} differs from {self.shape}")
        self.file.write(np.ascontiguousarray(images).data)  # no copy
        self.count += len(images)

    def finish(self) -> None:
        # Format 1.0: magic, version, header length, a dict literal padded with spaces.
        shape = (self.count, *(self.shape or (0, 0, 0)))
        text = repr({"descr": "|u1", "fortran_order": False, "shape": shape}).encode()
        text = text.ljust(self.HEADER - 11) + b"\n"
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text)
        self.file.close()


class PreparedWriter:
    def __init__(self, folder: Path, classes: list[str]):
        self.folder, self.classes = folder, list(classes)
        self.images = _ImageFile(folder / "images.npy")
        self.labels: list[np.ndarray] = []
        self.report: dict = {}  # saved as report.json

    def append(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images.append(images)
        self.labels.append(np.asarray(labels, dtype=np.int64))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(np.concatenate(self.labels), minlength=len(self.classes))
        return dict(zip(self.classes, counts.tolist(), strict=True))

    def finish(self) -> None:
        self.images.finish()
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        np.save(self.folder / "labels.npy", labels)
        write_json(self.folder / "classes.json", self.classes)
        write_json(self.folder / "report.json", self.report)


@contextlib.contextmanager
def prepared_writer(path: str | Path, classes: list[str]):
    """Yield a writer to append (images, labels) chunks to; the prepared set appears at
    `path` only when the block succeeds, and an earlier one stays until then."""
    with atomic_dir(path) as tmp:
        writer = PreparedWriter(tmp, classes)
        try:
            yield writer
        except BaseException:
            writer.images.file.close()
            raise
        writer.finish()


def save_prepared(path, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    with prepared_writer(path, classes) as out:
        out.append(images, labels)


def load_prepared(path: str | Path) -> Prepared:
    path = Path(path)
    missing = [n for n in ("images.npy", "labels.npy", "classes.json") if not (path / n).exists()]
    if missing:
        raise CnnpipeError(f"{path}: not a prepared data set (missing {', '.join(missing)})")
    return Prepared(
        images=np.load(path / "images.npy", mmap_mode="r"),
        labels=np.load(path / "labels.npy"),
        classes=read_json(path / "classes.json"),
        report=read_json(path / "report.json") if (path / "report.json").exists() else {},
    )

"""Batches for training and evaluation, normalised on the device.

DeviceData copies a whole uint8 split to the device once; each batch is an index into it,
converted to float and normalised there. With small images this beats a per-sample
DataLoader by a wide margin and keeps a 2-core CPU out of the way. HostData is for splits
that do not fit on the GPU: DataLoader workers slice batches out of the (memory-mapped)
arrays into pinned memory, and each batch is copied to the device without blocking.
Either way a training batch is augmented on the device, as one tensor (augment.py).
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cnnpipe.crops import centre_chw
from cnnpipe.pixels import Normalize


def channel_stats(images: np.ndarray, index=None, chunk: int = 4096):
    """Per-channel (mean, std) in 0..1 of uint8 images (N, H, W, C), or of the rows `index`.

    Rows are read a chunk at a time, so a memory-mapped set is never loaded whole.
    """
    index = np.arange(len(images)) if index is None else np.asarray(index)
    total = np.zeros(images.shape[3])
    total_sq = np.zeros(images.shape[3])
    count = 0
    for start in range(0, len(index), chunk):
        x = np.asarray(images[index[start : start + chunk]], dtype=np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        total_sq += (x * x).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel would divide by zero
    return mean.tolist(), std.tolist()


def epoch_order(n: int, shuffle: bool, generator, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's share of one epoch's image order.

    Every rank draws the same permutation from the same seeded generator and takes every
    world-th image; the tail is dropped so all ranks take the same number of steps.
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if world > 1:
        order = order[: n - n % world][rank::world]
    return order


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> a tensor (N, C, H, W) with NCHW's own strides.

    With one channel the permuted array already counts as contiguous, but its strides are
    those of channels-last; batches cut from it, and the convolution gradients computed
    from them, would keep that layout, while the weights are laid out as NCHW: DDP then
    warns at every step that the gradients' strides do not match its buckets.
    """
    nchw = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return nchw.clone(memory_format=torch.contiguous_format)


def network_batch(images, labels, normalize, size, augment=None, generator=None):
    """A uint8 batch (B, C, H, W) and its labels as the network receives them: augmented
    (training), cut to `size`, normalised, then erased and mixed (training; the labels may
    become class probabilities)."""
    if augment:
        images = augment(images, generator)
    images = normalize.batch(centre_chw(images, size))
    if augment:
        images, labels = augment.mix(images, labels, generator)
    return images, labels


class DeviceData:
    """One split as a uint8 tensor (N, C, H, W) on `device`, served as normalised batches
    of `size` pixels (None: the images' own size).

    With `augment`, shuffled (training) batches are augmented (and cut to `size`) before
    they are normalised, and erased and mixed after (their labels may then be class
    probabilities); other batches are the images' centre crops.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, mean, std, device, augment=None, size=None
    ):
        self.images = to_nchw(images).to(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.normalize = Normalize(mean, std).to(device)
        self.augment, self.size = augment or None, size

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, shuffle=False, generator=None, rank=0, world=1):
        order = epoch_order(len(self), shuffle, generator, rank, world).to(self.images.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            augment = self.augment if shuffle else None
            yield network_batch(
                self.images[idx], self.labels[idx], self.normalize, self.size, augment, generator
            )


class _Slices(Dataset):
    """Item i of the sampler is an array of image indices; the item is that whole batch."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return to_nchw(self.images[idx]), torch.from_numpy(self.labels[idx])


class _Chunks:
    """A sampler whose chunks are set anew each epoch, so the workers can persist."""

    def __init__(self):
        self.chunks = []

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self):
        return len(self.chunks)


class HostData:
    """A split left in host memory (or on disk, memory-mapped), batched by DataLoader workers.

    `index` selects the split's rows from the full arrays, which are never copied whole.
    """

    def __init__(
        self, images, labels, mean, std, device, workers=2, index=None, augment=None, size=None
    ):
        self.index = np.arange(len(labels)) if index is None else np.asarray(index)
        self.labels_np = np.asarray(labels, dtype=np.int64)[self.index]
        self.labels = torch.from_numpy(self.labels_np)
        self.device = torch.device(device)
        self.normalize = Normalize(mean, std).to(device)
        self.augment, self.size = augment or None, size
        self._sampler = _Chunks()
        self._loader = DataLoader(
            _Slices(images, np.asarray(labels, dtype=np.int64)),
            batch_size=None,
            sampler=self._sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self.labels_np)

    def batches(self, batch_size: int, shuffle=False, generator=None, rank=0, world=1):
        order = self.index[epoch_order(len(self), shuffle, generator, rank, world).numpy()]
        self._sampler.chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for images, labels in self._loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            augment = self.augment if shuffle else None
            yield network_batch(images, labels, self.normalize, self.size, augment, generator)


def place(data, index, mean, std, device, placement="auto", workers=2, augment=None, size=None):
    """The rows `index` of a prepared data set as batches of `size` pixels, served from the
    device when they fit there (or are asked to), else from host memory through DataLoader
    workers. On the CPU the device is host memory."""
    images, labels = data.images, data.labels
    device = torch.device(device)
    on_device = device.type != "cuda" or placement == "device"
    if device.type == "cuda" and placement == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        # uint8 images take a quarter of their float32 size; leave room for activations.
        on_device = len(index) * np.prod(images.shape[1:]) < free // 4
    if on_device:
        return DeviceData(
            images[index], np.asarray(labels)[index], mean, std, device, augment, size
        )
    return HostData(images, labels, mean, std, device, workers, index, augment, size)

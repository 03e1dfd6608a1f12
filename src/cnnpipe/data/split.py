"""Stratified train/val/test splits, stored as index arrays into the prepared data."""

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_dir

SPLITS = ("train", "val", "test")


def stratified_split(labels: np.ndarray, val: float, test: float, seed: int, fraction=1.0):
    """Every class keeps its share in each split; the same seed gives the same split.

    fraction < 1 first keeps that share of every class, for quick runs on less data.
    """
    index = np.arange(len(labels))
    try:
        if fraction < 1:
            index, _ = train_test_split(
                index, train_size=fraction, stratify=labels, random_state=seed
            )
        rest, test_idx = train_test_split(
            index, test_size=test, stratify=labels[index], random_state=seed
        )
        train_idx, val_idx = train_test_split(
            rest, test_size=val / (1 - test), stratify=labels[rest], random_state=seed
        )
    except ValueError as exc:
        counts = np.bincount(labels[index])
        raise CnnpipeError(
            f"cannot split {len(index)} images into train/val/test with val={val}, "
            f"test={test}: {exc} (smallest class has {counts[counts > 0].min()} images)"
        ) from None
    return {"train": np.sort(train_idx), "val": np.sort(val_idx), "test": np.sort(test_idx)}


def save_split(path: str | Path, split: dict[str, np.ndarray]) -> None:
    with atomic_dir(path) as tmp:
        for name in SPLITS:
            np.save(tmp / f"{name}.npy", split[name].astype(np.int64))


def load_split(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    missing = [n for n in SPLITS if not (path / f"{n}.npy").exists()]
    if missing:
        raise CnnpipeError(f"{path}: no split found for {', '.join(missing)}; run the split stage")
    return {name: np.load(path / f"{name}.npy") for name in SPLITS}

"""Stratified train/val/test splits, stored as index arrays into the prepared data."""

from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_dir

SPLITS = ("train", "val", "test")


def stratified_split(
    labels: np.ndarray, val: float, test: float, seed: int, fraction=1.0, classes=None
):
    """Every class keeps its share in each split; the same seed gives the same split.

    fraction < 1 first keeps that share of every class, for quick runs on less data.
    """
    _check_class_sizes(labels, val, test, fraction, classes)
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


def _check_class_sizes(labels, val, test, fraction, classes) -> None:
    """Each class needs an image in every split: name the first one that cannot have it."""
    need = max(3, int(np.ceil(1 / min(val, test, 1 - val - test) / fraction)))
    counts = np.bincount(labels, minlength=len(classes) if classes else 0)
    for i, n in enumerate(counts):
        if n < need:
            name = classes[i] if classes else str(i)
            raise CnnpipeError(
                f"class '{name}' has {n} image(s), but split val={val}, test={test}, "
                f"fraction={fraction} needs at least {need} per class; add images or "
                "change the split"
            )


def k_folds(labels: np.ndarray, split: dict, folds: int, seed: int) -> np.ndarray:
    """Stratified fold numbers 0..folds-1 for the train and val images; -1 for the others."""
    pool = np.sort(np.concatenate([split["train"], split["val"]]))
    present = np.bincount(labels[pool])
    smallest = present[present > 0].min()
    if smallest < folds:
        raise CnnpipeError(
            f"split.folds is {folds}, but a class has only {smallest} train+val image(s); "
            "each class needs at least one image per fold"
        )
    assignment = np.full(len(labels), -1, dtype=np.int64)
    kfold = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(kfold.split(pool, labels[pool])):
        assignment[pool[held_out]] = fold
    return assignment


def fold_indices(assignment: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) image indices of one cross-validation fold."""
    train = np.flatnonzero((assignment >= 0) & (assignment != fold))
    return train, np.flatnonzero(assignment == fold)


def save_split(path: str | Path, split: dict[str, np.ndarray]) -> None:
    with atomic_dir(path) as tmp:
        for name in SPLITS:
            np.save(tmp / f"{name}.npy", split[name].astype(np.int64))


def save_folds(path: str | Path, assignment: np.ndarray) -> None:
    """Fold numbers apart from the split, so that changing split.folds retrains nothing
    but the cross-validation."""
    with atomic_dir(path) as tmp:
        np.save(tmp / "folds.npy", assignment.astype(np.int64))


def load_folds(path: str | Path) -> np.ndarray:
    path = Path(path) / "folds.npy"
    if not path.exists():
        raise CnnpipeError(f"{path}: not found; run the split stage")
    return np.load(path)


def load_split(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    missing = [n for n in SPLITS if not (path / f"{n}.npy").exists()]
    if missing:
        raise CnnpipeError(f"{path}: no split found for {', '.join(missing)}; run the split stage")
    return {name: np.load(path / f"{name}.npy") for name in SPLITS}

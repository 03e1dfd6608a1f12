"""Stratified train/val/test splits and cross-validation folds, stored as index arrays
into the prepared data.

Written with NumPy rather than scikit-learn's train_test_split and StratifiedKFold:
importing sklearn.model_selection takes about 2 s, longer than the whole split stage.
"""

from pathlib import Path

import numpy as np

from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_dir

SPLITS = ("train", "val", "test")


def stratified_split(
    labels: np.ndarray, val: float, test: float, seed: int, fraction=1.0, classes=None
):
    """Every class keeps its share in each split; the same seed gives the same split.

    Each class's images are shuffled, then its first round(test * n) go to test, the next
    round(val * n) to val, the rest to train. fraction < 1 first keeps that share of every
    class, for quick runs on less data.
    """
    _check_class_sizes(labels, val, test, fraction, classes)
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if fraction < 1:
            members = members[: max(3, _share(fraction, len(members)))]
        n_test, n_val = _share(test, len(members)), _share(val, len(members))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: np.sort(np.concatenate(index)) for name, index in parts.items()}


def _share(fraction: float, n: int) -> int:
    """fraction of n images, rounded half up, and at least one."""
    return max(1, int(fraction * n + 0.5))


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
    """Stratified fold numbers 0..folds-1 for the train and val images; -1 for the others.

    Each class's images, shuffled, are dealt to the folds in turn, continuing where the
    previous class stopped, so folds differ in size by one image at most.
    """
    pool = np.sort(np.concatenate([split["train"], split["val"]]))
    present = np.bincount(labels[pool])
    smallest = present[present > 0].min()
    if smallest < folds:
        raise CnnpipeError(
            f"split.folds is {folds}, but a class has only {smallest} train+val image(s); "
            "each class needs at least one image per fold"
        )
    rng = np.random.default_rng(seed)
    dealt = np.concatenate(
        [rng.permutation(pool[labels[pool] == label]) for label in np.unique(labels[pool])]
    )
    assignment = np.full(len(labels), -1, dtype=np.int64)
    assignment[dealt] = np.arange(len(dealt)) % folds
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

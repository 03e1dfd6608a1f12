"""Stage 2: a stratified train/val/test split, saved as index files under data/split/, and
with `split.folds: k`, k stratified cross-validation folds over train + val in data/folds/
(without folds, every image's fold is -1)."""

import numpy as np

from cnnpipe import paths
from cnnpipe.config import load_params
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import k_folds, save_folds, save_split, stratified_split
from cnnpipe.errors import exit_on_error


@exit_on_error
def main():
    params = load_params()
    data = load_prepared(paths.PREPARED)
    cfg = params.split
    split = stratified_split(
        data.labels, cfg.val, cfg.test, params.seed, cfg.fraction, classes=data.classes
    )
    folds = np.full(len(data.labels), -1)
    if cfg.folds > 1:
        folds = k_folds(data.labels, split, cfg.folds, params.seed)
    save_split(paths.SPLIT, split)
    save_folds(paths.FOLDS, folds)
    print(", ".join(f"{name}: {len(split[name])}" for name in ("train", "val", "test")), end="")
    print(f"; {cfg.folds} folds over train + val" if cfg.folds > 1 else "")


if __name__ == "__main__":
    main()

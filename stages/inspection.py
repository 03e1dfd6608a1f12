"""Stage 6, inspect: look inside the trained network. Draws its first layer's kernels, the
feature maps after each stage for one test image per class, and Grad-CAM over test images
it got right and wrong (which ones, evaluate's confusion.csv says).

(Not named inspect.py: as the script's folder comes first on sys.path, that name would
hide the standard library's inspect module.)"""

import csv

import numpy as np

from cnnpipe import paths
from cnnpipe.checkpoint import load_model
from cnnpipe.classifier import shipped
from cnnpipe.config import load_params
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.device import resolve_device
from cnnpipe.errors import exit_on_error
from cnnpipe.inspection import Shown, write_views
from cnnpipe.tracking.run import continue_run

FOLDER = paths.INSPECT


def one_per_class(labels: np.ndarray, limit: int) -> list[int]:
    """Positions of the first image of each class, for up to `limit` classes."""
    first = {}
    for position, label in enumerate(labels):
        first.setdefault(int(label), position)
    return [first[c] for c in sorted(first)][:limit]


def right_and_wrong(true: np.ndarray, pred: np.ndarray, limit: int) -> list[int]:
    """Up to `limit` positions: half misclassified (as many as there are), then correct."""
    wrong = np.flatnonzero(true != pred)[: limit // 2]
    right = np.flatnonzero(true == pred)[: limit - len(wrong)]
    return [*wrong, *right]


@exit_on_error
def main():
    params = load_params()
    cfg = params.inspect
    device = resolve_device(params.train.device)
    network, spec = load_model(paths.BEST_WEIGHTS, paths.MODEL_SPEC, device)
    model = shipped(network, spec)

    data, test_idx = load_prepared(paths.PREPARED), load_split(paths.SPLIT)["test"]
    images = data.inputs(test_idx, spec.image_size)
    with open(paths.CONFUSION, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))  # evaluate's prediction for each test image, in order
    index = {name: i for i, name in enumerate(spec.classes)}
    true = np.array([index[r["actual"]] for r in rows])
    pred = np.array([index[r["predicted"]] for r in rows])

    maps = one_per_class(true, cfg.images)
    cam = right_and_wrong(true, pred, cfg.images)
    views = write_views(
        model,
        Shown(images[maps], [spec.classes[true[i]] for i in maps]),
        Shown(
            images[cam],
            [f"true {spec.classes[true[i]]}\npred {spec.classes[pred[i]]}" for i in cam],
        ),
        targets=pred[cam],
        folder=FOLDER,
        layer=cfg.layer,
    )

    with continue_run(params) as run:
        run.log_files(*views, folder="inspect")
    print(f"drew {', '.join(map(str, views))}")


if __name__ == "__main__":
    main()

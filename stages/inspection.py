"""Stage 6, inspect: look inside the trained network. Draws its first layer's kernels, the
feature maps after each stage for one test image per class, and Grad-CAM over test images
it got right and wrong (which ones, evaluate's confusion.csv says); and the first training
batch as the network received it, augmented.

(Not named inspect.py: as the script's folder comes first on sys.path, that name would
hide the standard library's inspect module.)"""

import csv

import numpy as np
import torch

from cnnpipe import paths
from cnnpipe.checkpoint import load_model
from cnnpipe.classifier import shipped
from cnnpipe.config import load_params
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import epoch_order, network_batch, to_nchw
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.device import resolve_device
from cnnpipe.errors import exit_on_error
from cnnpipe.inspection import Shown, write_views
from cnnpipe.pixels import Normalize
from cnnpipe.plots.inspection import augmented_png
from cnnpipe.tracking.run import continue_run

FOLDER = paths.INSPECT
AUGMENTED = paths.AUGMENTED_PNG


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


def first_training_batch(params, data, train_idx, spec, count: int):
    """The first `count` images of training's first batch, drawn as the train stage draws
    it (one process): (prepared uint8 images, what the network received as uint8 images,
    their targets as titles)."""
    generator = torch.Generator().manual_seed(params.seed)
    order = epoch_order(len(train_idx), True, generator)[: params.batch_size]
    rows = np.asarray(train_idx)[order.numpy()]
    augment = Augment.from_params(params, len(spec.classes), data.image_size)
    normalize = Normalize(spec.mean, spec.std)
    labels = torch.from_numpy(np.asarray(data.labels[rows], dtype=np.int64))
    seen, targets = network_batch(
        to_nchw(data.images[rows]), labels, normalize, spec.image_size, augment, generator
    )
    pixels = (seen * normalize.std + normalize.mean).mul(255).round().clamp(0, 255)
    pixels = pixels.to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return (
        data.images[rows[:count]],
        pixels[:count],
        [target_title(t, spec.classes) for t in targets[:count]],
    )


def target_title(target: torch.Tensor, classes: list[str]) -> str:
    """A class name, or a mixed image's classes with their shares, the larger first."""
    if target.ndim == 0:
        return classes[int(target)]
    shares = sorted(
        ((float(p), classes[i]) for i, p in enumerate(target) if p >= 0.005), reverse=True
    )
    return "\n".join(f"{name} {share:.2f}" for share, name in shares[:2])


@exit_on_error
def main():
    params = load_params()
    cfg = params.inspect
    device = resolve_device(params.train.device)
    network, spec = load_model(paths.BEST_WEIGHTS, paths.MODEL_SPEC, device)
    model = shipped(network, spec)

    data, split = load_prepared(paths.PREPARED), load_split(paths.SPLIT)
    images = data.inputs(split["test"], spec.image_size)
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
    augmented_png(*first_training_batch(params, data, split["train"], spec, 8), AUGMENTED)
    views.append(AUGMENTED)

    with continue_run(params) as run:
        run.log_files(*views, folder="inspect")
    print(f"drew {', '.join(map(str, views))}")


if __name__ == "__main__":
    main()

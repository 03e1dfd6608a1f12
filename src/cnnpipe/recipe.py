"""What one training run is made of, from params and a prepared data set: the batches,
the model's spec, the network (pretrained and frozen as asked) and the engine around it.

The train stage uses it once, the cross-validation stage once per fold.
"""

import sys

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import channel_stats, place
from cnnpipe.engine import make_engine
from cnnpipe.transfer import freeze_backbone, load_pretrained, pretrained_stats
from cnnpipe.zoo import resolve_variant


def training(params, data, train_index, val_index, device, world=1, verbose=True):
    """(train, val, spec, engine): all that `fit` needs to train on the rows `train_index`
    and pick the best epoch on `val_index`, with `world` processes sharing each step."""
    train, val, mean, std = batches(params, data, train_index, val_index, device)
    spec = model_spec(params, data, mean, std)
    model, frozen = network(spec, params, device, verbose)
    steps_per_epoch = -(-len(train) // world // params.batch_size)
    engine = make_engine(model, params, device, steps_per_epoch, frozen)
    return train, val, spec, engine


def batches(params, data, train_index, val_index, device):
    """(train, val, mean, std): both splits normalised with the mean and std the pretrained
    weights learnt with, else the training split's; the training batches augmented as
    params ask."""
    cfg, size = params.train, params.data.image_size
    known = None
    if params.net.pretrained:
        known = pretrained_stats(params.net.pretrained, params.model, data.channels)
    mean, std = known or channel_stats(data.images, train_index)
    augment = Augment.from_params(params, len(data.classes), data.image_size)
    where = (device, cfg.data_placement, cfg.workers)
    train = place(data, train_index, mean, std, *where, augment=augment, size=size)
    val = place(data, val_index, mean, std, *where, size=size)
    return train, val, mean, std


def model_spec(params, data, mean, std) -> ModelSpec:
    return ModelSpec(
        model=params.model,
        num_classes=len(data.classes),
        in_channels=data.channels,
        image_size=params.data.image_size,
        resize=params.data.resize,
        resize_size=data.image_size,
        mean=mean,
        std=std,
        classes=data.classes,
        variant=resolve_variant(params.net.variant, params.data.image_size),
        dropout=params.net.dropout,
        lrn=params.net.lrn,
    )


def network(spec: ModelSpec, params, device, verbose: bool = True):
    """(model on `device`, layers to keep in eval mode): built from the spec, started from
    `net.pretrained` when set, its backbone frozen with `net.freeze: backbone`."""
    model = spec.build(init=params.net.init)
    frozen, found = [], {"loaded": []}
    if params.net.pretrained:
        found = load_pretrained(model, params.net.pretrained, spec.model)
        if verbose:
            print(
                f"started from {params.net.pretrained}: {len(found['loaded'])} tensors copied, "
                f"{len(found['skipped'])} left new ({', '.join(found['skipped'][:4])}"
                f"{', ...' if len(found['skipped']) > 4 else ''})",
                file=sys.stderr,
            )
    if params.net.freeze == "backbone":
        frozen = freeze_backbone(model, found["loaded"])
    return model.to(device), frozen

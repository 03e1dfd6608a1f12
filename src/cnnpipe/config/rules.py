"""Checks across keys, after each value is valid on its own: a model's options, the
split's shares, settings that need one another."""

from cnnpipe import zoo
from cnnpipe.config.schema import Params
from cnnpipe.config.validate import ConfigError
from cnnpipe.errors import CnnpipeError


def check_consistency(params: Params, source: str) -> None:
    names = zoo.registered_names()
    if params.model not in names:
        raise ConfigError(
            f"{source}: model is '{params.model}', which is not registered; "
            f"allowed: {', '.join(names)}"
        )
    for key, value in (("dropout", params.net.dropout), ("lrn", params.net.lrn)):
        try:
            zoo.check_options(params.model, **{key: value})
        except CnnpipeError as exc:
            raise ConfigError(f"{source}: net.{key} is {value}, but {exc}") from None
    if params.split.val + params.split.test >= 1:
        raise ConfigError(
            f"{source}: split.val + split.test must be < 1 to leave images for training, "
            f"got {params.split.val} + {params.split.test}"
        )
    if params.train.nesterov and (params.optimizer != "sgd" or params.train.momentum == 0):
        raise ConfigError(
            f"{source}: train.nesterov needs optimizer sgd with train.momentum > 0, "
            f"got optimizer {params.optimizer} with momentum {params.train.momentum}"
        )
    data = params.data
    if data.resize_size is not None and data.resize_size < data.image_size:
        raise ConfigError(
            f"{source}: data.resize_size ({data.resize_size}) must be at least "
            f"data.image_size ({data.image_size}): the network's input is cut from it"
        )
    if params.data.source == "imagefolder" and not params.data.root:
        raise ConfigError(
            f"{source}: data.source is imagefolder, so data.root must name the folder "
            "whose subfolders are the classes"
        )
    if params.net.freeze == "backbone" and not params.net.pretrained:
        raise ConfigError(
            f"{source}: net.freeze is backbone, but net.pretrained is null: a frozen "
            "random backbone learns nothing; name the weights to start from"
        )
    _check_nodes(params.train, source)
    device = params.train.device
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError(f"{source}: train.device is '{device}'; allowed: auto, cpu, cuda, cuda:N")


def _check_nodes(train, source: str) -> None:
    if train.node_rank >= train.nnodes:
        raise ConfigError(
            f"{source}: train.node_rank is {train.node_rank}, but the nodes are numbered "
            f"0 to {train.nnodes - 1} (train.nnodes: {train.nnodes})"
        )
    if train.nnodes == 1:
        return
    host, _, port = (train.master or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{source}: train.nnodes is {train.nnodes}, so train.master must be node 0's "
            f"HOST:PORT (e.g. 10.0.0.1:29500), got {train.master!r}"
        )

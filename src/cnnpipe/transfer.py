"""Transfer learning: a network started from trained weights, with a new classifier head.

The weights come from torchvision (a weights name such as IMAGENET1K_V1, downloaded into
torch.hub's cache) or from a local state_dict such as an earlier run's models/best.pth.
Every tensor whose name and shape fit is copied; the head (the last Linear layer) always
starts afresh, sized for this data set's classes. With `freeze: backbone` only the head
trains, and the backbone's BatchNorm layers keep their running statistics. The weights
bring the normalisation they learnt with (`pretrained_stats`): torchvision's from the
weights' own transforms, an earlier run's from the model.json beside its state_dict.
"""

from pathlib import Path

import torch
from torch import nn

from cnnpipe import paths
from cnnpipe.download import socket_timeout
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import read_json, resolve_path


def head_name(model: nn.Module) -> str:
    """The classifier head: the last Linear layer the network registers."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise CnnpipeError(f"{type(model).__name__} has no Linear classifier head")
    return names[-1]


def load_pretrained(model: nn.Module, source: str, model_name: str) -> dict:
    """Copy the weights of `source` that fit into `model`; returns what was copied and not.

    A colour network's first convolution feeds a grey one summed over its RGB kernels,
    which gives the same response to a grey image.
    """
    state = _state_dict(source, model_name)
    own = model.state_dict()
    head = head_name(model) + "."
    loaded, skipped = [], []
    for key, value in state.items():
        target = own.get(key)
        if key.startswith(head) or target is None:
            skipped.append(key)
            continue
        grey_stem = (value.shape[0], 1, *value.shape[2:]) if value.ndim == 4 else None
        if value.shape[1:2] == (3,) and grey_stem == tuple(target.shape):
            value = value.sum(dim=1, keepdim=True)
        if value.shape != target.shape:
            skipped.append(key)
            continue
        own[key] = value.to(target.dtype)
        loaded.append(key)
    if not loaded:
        raise CnnpipeError(
            f"net.pretrained {source}: none of its {len(state)} tensors fit {model_name}; "
            "was it trained as another network?"
        )
    model.load_state_dict(own)
    return {"loaded": loaded, "skipped": skipped}


def pretrained_stats(source: str, model_name: str, channels: int):
    """(mean, std) per channel that the weights of `source` were trained with, or None when
    that is not known (a state_dict without a model.json beside it)."""
    if _is_file_source(source):
        spec = _spec_beside(resolve_path(source))
        if spec is None:
            return None
        recorded = read_json(spec)
        mean, std = recorded["mean"], recorded["std"]
    else:
        preset = _torchvision_entry(source, model_name).transforms()
        mean, std = list(preset.mean), list(preset.std)
    if len(mean) == channels:
        return list(mean), list(std)
    if channels == 1:
        # A grey picture meets a colour network through its stem's kernels summed over
        # the colours (load_pretrained): one channel standing for all three.
        return [sum(mean) / len(mean)], [sum(std) / len(std)]
    return list(mean) * channels, list(std) * channels  # a grey network's, for each colour


def _spec_beside(weights: Path) -> Path | None:
    """The model spec saved with a state_dict: NAME.json beside NAME.pth, or the model.json
    that train writes beside best.pth, but never the pipeline's own (train replaces it)."""
    for spec in (weights.with_suffix(".json"), weights.with_name("model.json")):
        if spec.is_file() and spec.resolve() != resolve_path(paths.MODEL_SPEC).resolve():
            return spec
    return None


def _is_file_source(source: str) -> bool:
    path = resolve_path(source)
    return path.suffix in (".pth", ".pt") or path.exists()


def _state_dict(source: str, model_name: str) -> dict:
    path = resolve_path(source)
    if _is_file_source(source):
        if not path.is_file():
            raise CnnpipeError(f"net.pretrained {source}: no such file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CnnpipeError(f"net.pretrained {source}: not a state_dict ({exc})") from None
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise CnnpipeError(f"net.pretrained {source}: not a state_dict of tensors")
        return state
    return _torchvision_weights(source, model_name)


def _torchvision_entry(name: str, model_name: str):
    """torchvision's weights enum entry `name` for `model_name`, or a clear error."""
    from torchvision.models import get_model_weights

    try:
        available = get_model_weights(model_name)
    except ValueError:
        raise CnnpipeError(
            f"net.pretrained {name}: torchvision has no weights for {model_name}, and no "
            "such file exists; give the path of a .pth state_dict"
        ) from None
    if name not in available.__members__:
        raise CnnpipeError(
            f"net.pretrained {name}: not a file, nor torchvision weights for {model_name} "
            f"(those are: {', '.join(available.__members__)})"
        )
    return available[name]


def _torchvision_weights(name: str, model_name: str) -> dict:
    weights = _torchvision_entry(name, model_name)
    try:
        with socket_timeout():
            return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise CnnpipeError(
            f"cannot download {model_name} {name} from {weights.url} ({reason}); without "
            f"internet, put that file in {cache} or give a local .pth as net.pretrained"
        ) from None


def freeze_backbone(model: nn.Module, pretrained: list[str]) -> list[nn.Module]:
    """Stop gradients in the layers that got `pretrained` weights, except the head; a layer
    left new (a stem reshaped for small images, say) must still learn. Returns the
    normalisation layers that stay in eval mode, so their running statistics stay too."""
    head = head_name(model) + "."
    loaded = set(pretrained)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(head) or name not in loaded)
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not any(p.requires_grad for p in m.parameters())
    ]


def param_groups(model: nn.Module, lr: float, head_lr: float | None) -> list[dict]:
    """The trainable parameters, with the head's at `head_lr` (when set)."""
    head = head_name(model) + "."
    backbone, top = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (top if name.startswith(head) else backbone).append(parameter)
    groups = [{"params": backbone, "lr": lr}] if backbone else []
    return [*groups, {"params": top, "lr": head_lr or lr}]

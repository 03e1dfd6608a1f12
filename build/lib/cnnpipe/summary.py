"""A layer-by-layer table of a network: output shape, parameters, receptive field, multiply-adds.

The receptive field is how many input pixels (per side) one output unit can see. Along a
chain of layers it follows the recurrence of the notes:

    r_out = r_in + (k - 1) * d * j_in      j_out = j_in * s

for kernel k, dilation d and stride s, where j is the distance in input pixels between
neighbouring units. Where branches meet (a residual add, an Inception concat) a unit sees
the union of what its inputs see, so the largest field is kept. To follow branches and
functional ops that are not modules, every tensor's (r, j) is carried through every torch
call by a TorchFunctionMode; the conv and pool modules update it.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass
class Row:
    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    rf: int
    macs: int


@dataclass
class Summary:
    rows: list[Row]
    params: int
    trainable: int
    macs: int
    input_shape: tuple[int, ...]


def _pair(v) -> int:
    return v[0] if isinstance(v, tuple) else v


class _Fields(TorchFunctionMode):
    """Carries (receptive field, jump) from the inputs of every torch call to its outputs."""

    def __init__(self):
        super().__init__()
        self.of: dict[int, tuple[int, int]] = {}
        self._alive = []  # hold tensors so their ids are not reused mid-summary

    def get(self, t: torch.Tensor) -> tuple[int, int]:
        return self.of.get(id(t), (1, 1))

    def set(self, t: torch.Tensor, field: tuple[int, int]) -> None:
        self.of[id(t)] = field
        self._alive.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in _tensors((args, kwargs)) if id(t) in self.of]
        if inputs:
            r = max(self.get(t)[0] for t in inputs)
            j = max(self.get(t)[1] for t in inputs)
            images = [t for t in inputs if t.dim() == 4]
            for o in _tensors(out):
                if images and o.dim() < 3:
                    # Flattening a feature map: every later unit sees the whole map.
                    side = max(images[0].shape[-2:])
                    self.set(o, (r + (side - 1) * j, j * side))
                else:
                    self.set(o, (r, j))
        return out


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def summarize(model: nn.Module, in_channels: int, image_size: int) -> Summary:
    model = model.eval()
    fields = _Fields()
    rows: list[Row] = []
    seen: set[int] = set()

    def hook(module, args, output):
        x = args[0]
        out = next(_tensors(output))
        r, j = fields.get(x)
        if isinstance(module, _WINDOWED):
            k = _pair(module.kernel_size)
            d = _pair(getattr(module, "dilation", 1))
            fields.set(out, (r + (k - 1) * d * j, j * _pair(module.stride)))
        elif isinstance(module, _ADAPTIVE):
            size_in, size_out = x.shape[-1], out.shape[-1]
            k = -(-size_in // size_out)
            fields.set(out, (r + (k - 1) * j, j * max(1, size_in // size_out)))
        if next(module.children(), None) is None:  # leaf modules make the rows
            first = id(module) not in seen
            seen.add(id(module))
            rows.append(
                Row(
                    name=names[id(module)],
                    kind=type(module).__name__,
                    shape=tuple(out.shape[1:]),
                    params=sum(p.numel() for p in module.parameters(recurse=False)) if first else 0,
                    rf=fields.get(out)[0],
                    macs=_macs(module, out),
                )
            )

    names = {id(m): name for name, m in model.named_modules()}
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        device = next(model.parameters()).device
        x = torch.zeros(1, in_channels, image_size, image_size, device=device)
        with torch.no_grad(), fields:
            fields.set(x, (1, 1))
            model(x)
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Summary(rows, params, trainable, sum(r.macs for r in rows), tuple(x.shape[1:]))


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds per image of the conv and linear layers (the bulk of the compute)."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0]
        return out[0].numel() * per_output * module.kernel_size[1]
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def format_table(summary: Summary, title: str) -> str:
    header = ("layer", "type", "output", "params", "RF", "mult-adds")
    body = [
        (
            r.name,
            r.kind,
            "x".join(map(str, r.shape)),
            f"{r.params:,}",
            f"{r.rf}x{r.rf}",
            f"{r.macs:,}",
        )
        for r in summary.rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [title, ""]
    for row in [header, *body]:
        cells = [
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if row is header:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        f"input: {'x'.join(map(str, summary.input_shape))}",
        f"parameters: {summary.params:,} ({summary.trainable:,} trainable)",
        f"multiply-adds per image: {summary.macs:,} ({summary.macs / 1e6:.2f} M)",
    ]
    return "\n".join(lines) + "\n"


def layer_rows(summary: Summary) -> list[dict]:
    """One dict per layer, for a CSV that DVC plots as a bar chart of parameters."""
    return [
        {
            "layer": r.name,
            "type": r.kind,
            "output": "x".join(map(str, r.shape)),
            "params": r.params,
            "receptive_field": r.rf,
            "mult_adds": r.macs,
        }
        for r in summary.rows
    ]


def title(name: str, variant: str, in_channels: int, image_size: int) -> str:
    """Which network and variant was built, for what input."""
    from cnnpipe import models

    if models.has_variants(name):
        built = {
            "small": "small-input variant (3x3 stride-1 stem, no early down-sampling)",
            "imagenet": "ImageNet variant (the published layout)",
        }[variant]
    else:
        built = "one layout for every input size"
    return f"{name}: {built}, input {in_channels}x{image_size}x{image_size}"


def report(model: nn.Module, name: str, variant: str, in_channels: int, image_size: int) -> str:
    """The summary table under its title."""
    summary = summarize(model, in_channels, image_size)
    return format_table(summary, title(name, variant, in_channels, image_size))

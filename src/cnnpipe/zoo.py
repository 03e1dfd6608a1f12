"""The networks cnnpipe can build, as plain data: their names, families and options.

Validating params.yaml, listing the networks or naming a model's variant needs only
this table, so none of it imports torch or the family modules (cnnpipe.models builds).

Networks designed for 224x224 ImageNet images shrink a 32x32 image to almost nothing
before their first real layer. Each family therefore has a small-input variant (a 3x3
stride-1 stem and no early max-pool, as CIFAR implementations use) that `variant: auto`
picks for images of SMALL_INPUT_MAX pixels or less.
"""

from dataclasses import dataclass

from cnnpipe.errors import CnnpipeError

SMALL_INPUT_MAX = 64
VARIANTS = ("auto", "small", "imagenet")
INITS = ("default", "kaiming", "xavier")


@dataclass(frozen=True)
class Entry:
    family: str  # the module of cnnpipe.models that builds it
    dropout: bool = False  # whether the family has dropout layers to configure
    lrn: bool = False  # whether the original paper's LocalResponseNorm can be switched on
    variants: bool = True  # whether small and ImageNet-sized inputs get different layouts


# In the order of the notes.
REGISTRY: dict[str, Entry] = {
    "lenet": Entry("lenet", variants=False),
    "alexnet": Entry("alexnet", dropout=True, lrn=True),
    **{f"vgg{d}{bn}": Entry("vgg", dropout=True) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": Entry("googlenet", dropout=True, lrn=True),
    **{
        name: Entry("resnet")
        for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    },
    "resnext50_32x4d": Entry("resnet"),
    **{
        name: Entry("mobilenet", dropout=True)
        for name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
    },
}


def registered_names() -> list[str]:
    return list(REGISTRY)


def family(name: str) -> str:
    return lookup(name).family


def has_variants(name: str) -> bool:
    return lookup(name).variants


def resolve_variant(variant: str, image_size: int) -> str:
    """'auto' -> 'small' or 'imagenet' by image size."""
    if variant not in VARIANTS:
        raise CnnpipeError(f"variant '{variant}' is unknown; allowed: {', '.join(VARIANTS)}")
    if variant == "auto":
        return "small" if image_size <= SMALL_INPUT_MAX else "imagenet"
    return variant


def check_options(name: str, dropout: float | None = None, lrn: bool = False) -> None:
    entry = lookup(name)
    if dropout is not None and not entry.dropout:
        with_dropout = [n for n, e in REGISTRY.items() if e.dropout]
        raise CnnpipeError(
            f"{name} has no dropout to set; models with dropout: {', '.join(with_dropout)}"
        )
    if lrn and not entry.lrn:
        with_lrn = [n for n, e in REGISTRY.items() if e.lrn]
        raise CnnpipeError(f"{name} has no LRN option; models with one: {', '.join(with_lrn)}")


def lookup(name: str) -> Entry:
    if name not in REGISTRY:
        raise CnnpipeError(
            f"model '{name}' is not registered; allowed: {', '.join(registered_names())}"
        )
    return REGISTRY[name]

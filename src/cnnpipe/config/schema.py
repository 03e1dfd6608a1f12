"""What params.yaml may hold: one frozen dataclass per section, each field with its
type (a Literal lists the choices) and, in its metadata, the interval a number must lie in.
The defaults are the ones params.yaml documents."""

from dataclasses import dataclass, field
from typing import Literal


def _bound(lo=None, hi=None, lo_open=False, hi_open=False):
    """Field metadata describing the allowed interval of a number."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}


def _positive():
    return _bound(lo=0, lo_open=True)


SOURCES = ("digits", "imagefolder", "mnist", "fashion_mnist", "cifar10", "cifar100")


@dataclass(frozen=True)
class DataConfig:
    source: Literal[SOURCES] = "digits"
    root: str | None = None
    download: bool = True
    image_size: int = field(default=32, metadata=_bound(lo=8, hi=1024))
    resize: Literal["crop", "pad", "stretch"] = "crop"
    resize_size: int | None = field(default=None, metadata=_bound(lo=8, hi=1024))
    channels: Literal[1, 3] = 1
    on_bad_file: Literal["skip", "fail"] = "skip"

    @property
    def prepared_size(self) -> int:
        """The side of the squares prepare stores; the network sees `image_size` of it."""
        return self.resize_size or self.image_size


@dataclass(frozen=True)
class SplitConfig:
    val: float = field(default=0.15, metadata=_bound(lo=0, hi=1, lo_open=True, hi_open=True))
    test: float = field(default=0.15, metadata=_bound(lo=0, hi=1, lo_open=True, hi_open=True))
    fraction: float = field(default=1.0, metadata=_bound(lo=0, hi=1, lo_open=True))
    folds: int = field(default=1, metadata=_bound(lo=1, hi=100))


@dataclass(frozen=True)
class AugmentConfig:
    crop_padding: int = field(default=2, metadata=_bound(lo=0, hi=64))
    hflip: bool = False
    random_resized_crop: bool = False
    crop_scale: float = field(default=0.08, metadata=_bound(lo=0, hi=1, lo_open=True))
    crop_ratio: float = field(default=4 / 3, metadata=_bound(lo=1))
    color_jitter: float = field(default=0.0, metadata=_bound(lo=0))
    hue: float = field(default=0.0, metadata=_bound(lo=0, hi=0.5))
    policy: Literal["none", "trivial_augment", "rand_augment", "auto_augment"] = "none"
    policy_magnitude: int = field(default=9, metadata=_bound(lo=0, hi=30))
    random_erasing: float = field(default=0.0, metadata=_bound(lo=0, hi=1))
    mixup_alpha: float = field(default=0.0, metadata=_bound(lo=0))
    cutmix_alpha: float = field(default=0.0, metadata=_bound(lo=0))


@dataclass(frozen=True)
class NetConfig:
    variant: Literal["auto", "small", "imagenet"] = "auto"
    init: Literal["default", "kaiming", "xavier"] = "default"
    dropout: float | None = field(default=None, metadata=_bound(lo=0, hi=1, hi_open=True))
    lrn: bool = False
    pretrained: str | None = None
    freeze: Literal["none", "backbone"] = "none"
    head_lr: float | None = field(default=None, metadata=_positive())


@dataclass(frozen=True)
class TrainConfig:
    momentum: float = field(default=0.9, metadata=_bound(lo=0, hi=1, hi_open=True))
    nesterov: bool = False
    beta1: float = field(default=0.9, metadata=_bound(lo=0, hi=1, hi_open=True))
    beta2: float = field(default=0.999, metadata=_bound(lo=0, hi=1, hi_open=True))
    eps: float = field(default=1e-8, metadata=_positive())
    weight_decay: float = field(default=5e-4, metadata=_bound(lo=0))
    schedule: Literal["constant", "step", "cosine", "onecycle"] = "cosine"
    warmup_epochs: int = field(default=0, metadata=_bound(lo=0))
    step_size: int = field(default=10, metadata=_bound(lo=1))
    gamma: float = field(default=0.1, metadata=_bound(lo=0, hi=1, lo_open=True))
    loss: Literal["cross_entropy", "nll", "l1", "mse", "smooth_l1"] = "cross_entropy"
    label_smoothing: float = field(default=0.1, metadata=_bound(lo=0, hi=1, hi_open=True))
    smooth_l1_beta: float = field(default=1.0, metadata=_positive())
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    compile: bool = False
    data_placement: Literal["auto", "device", "host"] = "auto"
    workers: int = field(default=2, metadata=_bound(lo=0))
    patience: int = field(default=0, metadata=_bound(lo=0))
    grad_accum_steps: int = field(default=1, metadata=_bound(lo=1, hi=1024))
    clip_grad_norm: float | None = field(default=None, metadata=_positive())
    ema_decay: float | None = field(
        default=None, metadata=_bound(lo=0, hi=1, lo_open=True, hi_open=True)
    )
    nproc: int = field(default=1, metadata=_bound(lo=1))
    nnodes: int = field(default=1, metadata=_bound(lo=1))
    node_rank: int = field(default=0, metadata=_bound(lo=0))
    master: str | None = None
    resume: bool = True
    device: str = "auto"
    deterministic: bool = True


@dataclass(frozen=True)
class ExportConfig:
    opset: int = field(default=20, metadata=_bound(lo=18, hi=23))
    atol: float = field(default=1e-4, metadata=_bound(lo=0))
    rtol: float = field(default=1e-4, metadata=_bound(lo=0))
    min_top1_agreement: float = field(default=1.0, metadata=_bound(lo=0, hi=1))
    full_pickle: bool = False


@dataclass(frozen=True)
class EvaluateConfig:
    tta: Literal["none", "flip"] = "none"


@dataclass(frozen=True)
class InspectConfig:
    images: int = field(default=10, metadata=_bound(lo=1, hi=32))
    layer: str = "auto"


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    required: bool = True
    experiment: str = "cnnpipe"
    register: bool = False
    model_name: str = "cnnpipe"
    system_metrics: bool = True
    study: str | None = None


@dataclass(frozen=True)
class TuneConfig:
    storage: str | None = None  # an SQLAlchemy URL; None: optuna.db beside mlflow.db


@dataclass(frozen=True)
class Params:
    model: str = "lenet"
    lr: float = field(default=0.05, metadata=_positive())
    batch_size: int = field(default=64, metadata=_bound(lo=1))
    epochs: int = field(default=30, metadata=_bound(lo=1))
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    seed: int = field(default=42, metadata=_bound(lo=0))
    net: NetConfig = NetConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    inspect: InspectConfig = InspectConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig = TuneConfig()

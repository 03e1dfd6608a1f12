"""The training engine: optimisers, schedules and losses of the notes, mixed precision,
checkpoints to resume from, and the epoch loop."""

import hashlib
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnpipe import distributed
from cnnpipe.config import flatten
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_path, resolve_path
from cnnpipe.metrics import AverageMeter
from cnnpipe.progress import quiet
from cnnpipe.transfer import param_groups

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as weighted in the paper


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed every generator; with `deterministic`, also pick only kernels that give the
    same result every time, so a run can be repeated bit for bit on the same device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when it starts (the first CUDA matmul): a fixed workspace
        # fixes its reduction order.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic CUDA kernel warns, naming itself, instead
    # of stopping the run (see deterministic_pooling for the one the zoo needs).
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    # Autotuning times candidate kernels and keeps the fastest, which may differ by run.
    torch.backends.cudnn.benchmark = not deterministic


class _GlobalAvgPool(nn.Module):
    """AdaptiveAvgPool2d(1) as a mean over height and width: the same numbers, with a
    deterministic backward pass on CUDA (PyTorch's adaptive pooling backward has none)."""

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=True)


def deterministic_pooling(model: nn.Module) -> nn.Module:
    """Swap every global AdaptiveAvgPool2d for _GlobalAvgPool (no weights change)."""
    for name, child in model.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
            setattr(model, name, _GlobalAvgPool())
        else:
            deterministic_pooling(child)
    return model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnpipeError(f"train.device is '{name}' but no CUDA device is available")
    return torch.device(name)


def make_optimizer(name: str, parameters, lr: float, cfg):
    """sgd (momentum, nesterov), adam or adamw; `cfg` is the params' train section."""
    if name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return kind(
        parameters, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def make_schedule(optimizer, cfg, lr: float, epochs: int, steps_per_epoch: int):
    """A per-step learning-rate schedule with an optional linear warmup."""
    total = epochs * steps_per_epoch
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)
    if cfg.schedule == "onecycle":
        # OneCycle warms up by itself: its rising phase lasts the warmup, else 30%.
        start = warmup / total if warmup else 0.3
        peaks = [group["lr"] for group in optimizer.param_groups]  # the head's may differ
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total, pct_start=start
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "step":
            return cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)
        if cfg.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_loss(cfg):
    """loss(logits, labels). The regression losses of the notes (L1, L2, smooth L1) compare
    the softmax probabilities with one-hot targets."""
    if cfg.loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.loss == "nll":
        return lambda logits, labels: F.nll_loss(F.log_softmax(logits, dim=1), labels)
    regression = {
        "l1": F.l1_loss,
        "mse": F.mse_loss,
        "smooth_l1": lambda p, t: F.smooth_l1_loss(p, t, beta=cfg.smooth_l1_beta),
    }[cfg.loss]

    def loss(logits, labels):
        probs = F.softmax(logits.float(), dim=1)
        return regression(probs, F.one_hot(labels, probs.shape[1]).float())

    return loss


def amp_dtype(amp: str, device: torch.device):
    """The autocast dtype: bf16 by default on CUDA; full precision on the CPU."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def forward_loss(output, labels, loss_fn):
    """(logits, loss) of one training forward pass.

    A network with auxiliary classifiers returns (logits, aux, ...) in training; their
    losses join the main one with AUX_LOSS_WEIGHT.
    """
    if isinstance(output, tuple):
        logits, *aux = output
        loss = loss_fn(logits, labels)
        for extra in aux:
            loss = loss + AUX_LOSS_WEIGHT * loss_fn(extra, labels)
        return logits, loss
    return output, loss_fn(output, labels)


def make_engine(model: nn.Module, params, device: torch.device, steps_per_epoch: int, frozen=()):
    """The optimiser, schedule, loss and precision that params ask for, around `model`.

    Only parameters that require gradients are optimised; `frozen` lists the layers that
    stay in eval mode while the rest trains (see transfer.freeze_backbone).
    """
    cfg = params.train
    channels_last = cfg.channels_last and device.type == "cuda"
    if cfg.deterministic and device.type == "cuda":
        model = deterministic_pooling(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = distributed.wrap(model, device)
    if cfg.compile:
        runner = torch.compile(runner)
    groups = param_groups(model, params.lr, params.net.head_lr)
    optimizer = make_optimizer(params.optimizer, groups, params.lr, cfg)
    dtype = amp_dtype(cfg.amp, device)
    return Engine(
        model=runner,
        module=model,
        optimizer=optimizer,
        schedule=make_schedule(optimizer, cfg, params.lr, params.epochs, steps_per_epoch),
        loss_fn=make_loss(cfg),
        device=device,
        amp=dtype,
        channels_last=channels_last,
        # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
        scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
        frozen=list(frozen),
    )


@dataclass
class Engine:
    """Everything one optimisation step needs."""

    model: nn.Module  # what runs the steps: the network, maybe compiled or wrapped in DDP
    module: nn.Module  # the plain network, whose state_dict is saved
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    loss_fn: object
    device: torch.device
    amp: torch.dtype | None = None
    channels_last: bool = False
    scaler: torch.amp.GradScaler | None = None
    frozen: list[nn.Module] = field(default_factory=list)

    def _prepare(self, images):
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def train_epoch(self, data, batch_size, generator, epoch, rank=0, world=1):
        """One pass over this rank's share of the training split: (mean loss, accuracy)."""
        self.model.train()
        for layer in self.frozen:
            layer.eval()
        loss_meter = AverageMeter()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        # The first non-finite step, found on the device: reading the loss every step
        # would make the GPU wait for the CPU.
        step = torch.zeros((), device=self.device, dtype=torch.long)
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        lrs = []
        batches = data.batches(batch_size, True, generator, rank, world)
        steps = -(-len(data) // world // batch_size)
        progress = tqdm(
            batches, total=steps, desc=f"epoch {epoch}", leave=False, disable=quiet() or rank != 0
        )
        for images, labels in progress:
            lrs.append(self.optimizer.param_groups[0]["lr"])
            self.optimizer.zero_grad(set_to_none=True)  # gradients accumulate unless cleared
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                logits, loss = forward_loss(self.model(self._prepare(images)), labels, self.loss_fn)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.schedule.step()
            loss = loss.detach().float()
            first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), step, first_bad)
            step += 1
            loss_meter.update(loss, len(labels))  # a device tensor: summed without a sync
            correct += (logits.argmax(1) == labels).sum()
        bad = int(first_bad)
        if bad >= 0:
            raise CnnpipeError(
                f"the training loss became non-finite in epoch {epoch}, step {bad + 1} "
                f"(lr {lrs[bad]:.3g}); lower the learning rate or add warmup"
            )
        return float(loss_meter.avg), correct.item() / loss_meter.count


@torch.no_grad()
def predict(model, data, batch_size: int, amp=None) -> torch.Tensor:
    """Logits for every image of `data`, in order, on the CPU, in float32."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for images, _ in data.batches(batch_size):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.append(model(images).float().cpu())
    return torch.cat(out)


def evaluate(model, data, batch_size: int, amp=None) -> tuple[float, float]:
    """(cross-entropy, accuracy) of `model` on `data`."""
    logits = predict(model, data, batch_size, amp)
    labels = data.labels.cpu()
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


# Resuming: the state of training after each epoch, enough to continue bit for bit.


def fingerprint(params, labels: np.ndarray, split: dict, image_shape, world: int) -> str:
    """A hash of what decides a training run: the params (all but tracking and export),
    the labels and split, the image shape and the number of processes. A checkpoint from
    any other run is never resumed."""
    decisive = {
        key: value
        for key, value in flatten(params).items()
        if key.split(".")[0] not in ("tracking", "export") and key != "train.resume"
    }
    digest = hashlib.sha256(repr((decisive, tuple(image_shape), world)).encode())
    digest.update(labels.tobytes())
    for name in ("train", "val"):
        digest.update(split[name].tobytes())
    pretrained = params.net.pretrained and resolve_path(params.net.pretrained)
    if pretrained and pretrained.is_file():  # the same path may hold other weights now
        digest.update(pretrained.read_bytes())
    return digest.hexdigest()


def save_resume(path, engine: Engine, state: dict, generator: torch.Generator) -> None:
    np_state = np.random.get_state()
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
        "batches": generator.get_state(),
    }
    payload = {
        **state,
        "model": engine.module.state_dict(),
        "optimizer": engine.optimizer.state_dict(),
        "schedule": engine.schedule.state_dict(),
        "scaler": engine.scaler.state_dict() if engine.scaler else {},
        "rng": rng,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_resume(path, expected_fingerprint: str, device) -> dict | None:
    """The saved state if it belongs to this run, else None."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        return None
    return state


def _restore(engine: Engine, state: dict, generator: torch.Generator) -> None:
    engine.module.load_state_dict(state["model"])
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.schedule.load_state_dict(state["schedule"])
    if engine.scaler and state["scaler"]:
        engine.scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(rng["python"])
    generator.set_state(rng["batches"].cpu())


def fit(
    engine,
    train,
    val,
    epochs,
    batch_size,
    seed,
    *,
    patience=0,
    resume=None,
    checkpoint=None,
    on_epoch=None,
    rank=0,
    world=1,
):
    """Train up to `epochs`; return the per-epoch history and the weights of the best epoch.

    The best epoch has the highest validation accuracy (the earliest on ties). With
    `patience`, training stops after that many epochs without improvement. `checkpoint`
    (path, extra state) saves the state after every epoch; `resume` continues from one.
    """
    generator = torch.Generator().manual_seed(seed)
    history, best_acc, best_state, since_best = [], -1.0, None, 0
    if resume:
        _restore(engine, resume, generator)
        history, best_acc, since_best = resume["history"], resume["best_acc"], resume["since_best"]
        best_state = resume["best_state"]
    for epoch in range(len(history) + 1, epochs + 1):
        if patience and since_best >= patience:
            break
        train_loss, train_acc = engine.train_epoch(train, batch_size, generator, epoch, rank, world)
        val_loss, val_acc = evaluate(engine.module, val, batch_size, engine.amp)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
        }
        history.append(row)
        if val_acc > best_acc:
            best_acc, since_best = val_acc, 0
            best_state = {
                k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()
            }
        else:
            since_best += 1
        if checkpoint:
            path, extra = checkpoint
            state = {
                "history": history,
                "best_acc": best_acc,
                "since_best": since_best,
                "best_state": best_state,
                **extra,
            }
            save_resume(path, engine, state, generator)
        if on_epoch:
            on_epoch(row)
    return history, best_state

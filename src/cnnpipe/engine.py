"""The training engine: the network wrapped with its optimiser, schedule, loss and
precision, the epoch loop, and `fit`, which trains and keeps the best epoch."""

import contextlib
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from cnnpipe import distributed
from cnnpipe.device import amp_dtype, deterministic_pooling
from cnnpipe.errors import CnnpipeError
from cnnpipe.losses import forward_loss, hard_labels, make_loss
from cnnpipe.metrics import AverageMeter
from cnnpipe.optim import make_optimizer, make_schedule
from cnnpipe.progress import quiet, say
from cnnpipe.resume import restore, save_resume
from cnnpipe.scoring import loss_and_accuracy
from cnnpipe.transfer import param_groups


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
    # The schedule moves once per optimiser step: one every grad_accum_steps batches, and
    # one for the batches left over at the end of an epoch.
    steps = -(-steps_per_epoch // cfg.grad_accum_steps)
    return Engine(
        model=runner,
        module=model,
        optimizer=optimizer,
        schedule=make_schedule(optimizer, cfg, params.lr, params.epochs, steps),
        loss_fn=make_loss(cfg),
        device=device,
        amp=dtype,
        channels_last=channels_last,
        # fp16 needs loss scaling to keep small gradients from underflowing; bf16 does not.
        scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
        frozen=list(frozen),
        accum_steps=cfg.grad_accum_steps,
        clip_grad_norm=cfg.clip_grad_norm,
        ema=_moving_average(model, cfg.ema_decay),
    )


def _moving_average(model: nn.Module, decay: float | None):
    """An exponential moving average of the weights, updated after every optimiser step;
    BatchNorm's running statistics are averaged too, as torchvision's reference does."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


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
    accum_steps: int = 1  # batches whose gradients add up to one optimiser step
    clip_grad_norm: float | None = None  # the gradients' largest total norm at a step
    ema: nn.Module | None = None  # the weights' moving average (AveragedModel), if kept

    @property
    def scored(self) -> nn.Module:
        """The network that is validated, kept as the best and shipped: the moving average
        of the weights when there is one, else the network itself."""
        return self.ema.module if self.ema is not None else self.module

    def _prepare(self, images):
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def _sync(self, update: bool):
        """Under DDP, the gradients are averaged over the ranks only for the batch that
        completes a step; the batches before it add theirs up locally (no_sync)."""
        if update or not hasattr(self.model, "no_sync"):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _step(self) -> None:
        if self.clip_grad_norm is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled
            trainable = [p for p in self.module.parameters() if p.requires_grad]
            nn.utils.clip_grad_norm_(trainable, self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update_parameters(self.module)

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
        accum = self.accum_steps
        for i, (images, labels) in enumerate(progress):
            lrs.append(self.optimizer.param_groups[0]["lr"])
            if i % accum == 0:
                self.optimizer.zero_grad(set_to_none=True)  # gradients add up unless cleared
            update = (i + 1) % accum == 0 or i + 1 == steps
            with self._sync(update):
                with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                    logits, loss = forward_loss(
                        self.model(self._prepare(images)), labels, self.loss_fn
                    )
                # Each batch's mean loss, averaged over the step's batches.
                part = loss / accum if accum > 1 else loss
                (self.scaler.scale(part) if self.scaler is not None else part).backward()
            if update:
                self._step()
            loss = loss.detach().float()
            first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), step, first_bad)
            step += 1
            loss_meter.update(loss, len(labels))  # a device tensor: summed without a sync
            correct += (logits.argmax(1) == hard_labels(labels)).sum()
        bad = int(first_bad)
        if bad >= 0:
            raise CnnpipeError(
                f"the training loss became non-finite in epoch {epoch}, step {bad + 1} "
                f"(lr {lrs[bad]:.3g}); lower the learning rate or add warmup"
            )
        # The epoch's figures over every rank's batches, not this rank's shard alone.
        totals = torch.stack(
            [
                torch.as_tensor(loss_meter.sum, device=self.device, dtype=torch.float64),
                torch.as_tensor(loss_meter.count, device=self.device, dtype=torch.float64),
                correct.to(torch.float64),
            ]
        )
        loss_sum, count, right = distributed.sum_over_ranks(totals).tolist()
        return loss_sum / count, right / count


@dataclass
class Fitted:
    """What one training run gives: every epoch's scores, the best one, and its weights."""

    history: list[dict]
    best: dict  # the history row of the best epoch
    state: dict  # the network's weights after that epoch, on the CPU


def fit(
    engine: Engine,
    train,
    val,
    params,
    *,
    resume=None,
    state_file=None,
    on_epoch=None,
    stop=None,
    rank=0,
    world=1,
) -> Fitted:
    """Train for params.epochs (the train stage, and each cross-validation fold).

    The best epoch has the highest validation accuracy (the earliest on ties). With
    train.patience, training stops after that many epochs without improvement.
    `state_file` (path, extra state) saves the training state (the resume file) after
    every epoch but the last; `resume` continues from one. "Checkpoint" is the trained
    weights alone. `on_epoch(row)` hears of each epoch, then `stop(row)` may end training
    there (a search's pruned trial).
    """
    batch_size, patience = params.batch_size, params.train.patience
    generator = torch.Generator().manual_seed(params.seed)
    history, best_acc, best_state, since_best = [], -1.0, None, 0
    if resume:
        restore(engine, resume, generator)
        history, best_acc, since_best = resume["history"], resume["best_acc"], resume["since_best"]
        best_state = resume["best_state"]
    for epoch in range(len(history) + 1, params.epochs + 1):
        if patience and since_best >= patience:
            break
        start = time.perf_counter()
        train_loss, train_acc = engine.train_epoch(train, batch_size, generator, epoch, rank, world)
        seconds = time.perf_counter() - start  # train_epoch read the loss: the GPU is done
        val_loss, val_acc = loss_and_accuracy(engine.scored, val, batch_size, engine.amp)
        if rank == 0:
            # One plain line an epoch, also where no progress bar is drawn (dvc queue
            # logs, CI): the bar shows the steps, this line what they achieved.
            say(
                f"epoch {epoch}/{params.epochs}: train loss {train_loss:.4f} acc "
                f"{train_acc:.4f}, val loss {val_loss:.4f} acc {val_acc:.4f}, {seconds:.1f} s, "
                f"{len(train) / seconds:,.0f} images/s"
            )
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
                k: v.detach().cpu().clone() for k, v in engine.scored.state_dict().items()
            }
        else:
            since_best += 1
        # After the last epoch only the saving of the results is left: no resume file
        # (for AlexNet with Adam it holds about 900 MB).
        if state_file and epoch < params.epochs:
            path, extra = state_file
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
        if stop and stop(row):
            break
    best = max(history, key=lambda row: row["val_acc"])  # max keeps the earliest of ties
    return Fitted(history, best, best_state)

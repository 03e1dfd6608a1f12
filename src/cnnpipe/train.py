"""The training loop: one epoch of SGD steps, evaluation, and the pieces they need."""

import random

import numpy as np
import torch
from tqdm import tqdm

from cnnpipe.data.batches import DeviceData
from cnnpipe.errors import CnnpipeError
from cnnpipe.metrics import AverageMeter
from cnnpipe.progress import quiet


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnpipeError(f"train.device is '{name}' but no CUDA device is available")
    return torch.device(name)


def make_optimizer(name: str, parameters, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")  # config validation prevents this


AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as weighted in the paper


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


def train_one_epoch(model, data: DeviceData, optimizer, loss_fn, batch_size, generator, desc=""):
    """One pass over the training split; returns (mean loss, accuracy)."""
    model.train()
    loss_meter, correct = AverageMeter(), torch.zeros((), device=data.labels.device)
    for images, labels in tqdm(
        data.batches(batch_size, shuffle=True, generator=generator),
        total=-(-len(data) // batch_size),
        desc=desc,
        leave=False,
        disable=quiet(),
    ):
        optimizer.zero_grad(set_to_none=True)  # gradients accumulate unless cleared
        logits, loss = forward_loss(model(images), labels, loss_fn)
        loss.backward()
        optimizer.step()
        # Keep the sums on the device; reading them every step would stall a GPU.
        loss_meter.update(loss.detach(), len(labels))
        correct += (logits.argmax(1) == labels).sum()
    return float(loss_meter.avg), correct.item() / len(data)


@torch.no_grad()
def predict(model, data: DeviceData, batch_size: int) -> torch.Tensor:
    """Logits for every image of `data`, in order, on the CPU."""
    model.eval()
    return torch.cat([model(images).float().cpu() for images, _ in data.batches(batch_size)])


def evaluate(model, data: DeviceData, loss_fn, batch_size: int) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `data`."""
    logits = predict(model, data, batch_size)
    labels = data.labels.cpu()
    loss = loss_fn(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


def fit(model, train, val, optimizer, loss_fn, epochs, batch_size, seed, on_epoch=None):
    """Train for `epochs`; return the per-epoch history and the weights of the best epoch.

    The best epoch is the one with the highest validation accuracy (the earliest on ties).
    """
    generator = torch.Generator().manual_seed(seed)
    history, best_acc, best_state = [], -1.0, None
    for epoch in range(1, epochs + 1):
        train_loss, train_acc = train_one_epoch(
            model, train, optimizer, loss_fn, batch_size, generator, desc=f"epoch {epoch}"
        )
        if not np.isfinite(train_loss):
            raise CnnpipeError(
                f"training loss became {train_loss} in epoch {epoch}; lower the learning rate"
            )
        val_loss, val_acc = evaluate(model, val, loss_fn, batch_size)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
        }
        history.append(row)
        if val_acc > best_acc:
            best_acc = val_acc
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if on_epoch:
            on_epoch(row)
    return history, best_state

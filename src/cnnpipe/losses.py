"""The losses of the notes, and how a network's training output becomes one loss."""

import torch.nn.functional as F
from torch import nn

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as weighted in the paper


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

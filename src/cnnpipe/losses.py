"""The losses of the notes, and how a network's training output becomes one loss."""

import torch.nn.functional as F
from torch import nn

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as weighted in the paper


def make_loss(cfg):
    """loss(logits, labels). Labels are class indices (N,), or class probabilities
    (N, classes) for mixed images (MixUp, CutMix). The regression losses of the notes
    (L1, L2, smooth L1) compare the softmax probabilities with one-hot targets."""
    if cfg.loss == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)  # takes either
    if cfg.loss == "nll":
        return _nll
    regression = {
        "l1": F.l1_loss,
        "mse": F.mse_loss,
        "smooth_l1": lambda p, t: F.smooth_l1_loss(p, t, beta=cfg.smooth_l1_beta),
    }[cfg.loss]

    def loss(logits, labels):
        probs = F.softmax(logits.float(), dim=1)
        return regression(probs, as_probabilities(labels, probs.shape[1]))

    return loss


def _nll(logits, labels):
    log_probs = F.log_softmax(logits, dim=1)
    if labels.is_floating_point():
        return -(labels * log_probs).sum(dim=1).mean()
    return F.nll_loss(log_probs, labels)


def as_probabilities(labels, classes: int):
    """Class indices as one-hot rows; class probabilities as they are."""
    return labels.float() if labels.is_floating_point() else F.one_hot(labels, classes).float()


def hard_labels(labels):
    """The class of each image: for a mixed one, the larger part of it."""
    return labels.argmax(dim=1) if labels.is_floating_point() else labels


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

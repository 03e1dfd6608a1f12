"""Optimisers and per-step learning-rate schedules, as params.yaml names them."""

import math

import torch


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

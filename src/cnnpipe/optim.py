"""Optimisers and per-step learning-rate schedules, as params.yaml names them."""

import math

import torch

# One fused kernel per tensor instead of several passes over it: on one CPU thread an Adam
# step over AlexNet's 57 M parameters took 0.41 s unfused and 0.03 s fused (SGD with
# momentum 0.16 s and 0.025 s), as long as the rest of a 64-image step.
FUSED_DEVICES = ("cpu", "cuda")


def make_optimizer(name: str, groups: list[dict], lr: float, cfg):
    """sgd (momentum, nesterov), adam or adamw over param groups; `cfg` is the params'
    train section."""
    tensors = [p for group in groups for p in group["params"]]
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in tensors)
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
            fused=fused,
        )
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    return kind(
        groups,
        lr=lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=fused,
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

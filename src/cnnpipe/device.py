"""Where and how the computation runs: the device, the precision, the seeds, and the
switches that make a run repeatable bit for bit, and how freed CPU memory is kept."""

import ctypes
import ctypes.util
import os
import random
import sys

import numpy as np
import torch
from torch import nn

from cnnpipe.errors import CnnpipeError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnpipeError(f"train.device is '{name}' but no CUDA device is available")
    return torch.device(name)


def amp_dtype(amp: str, device: torch.device):
    """The autocast dtype: bf16 by default on CUDA; full precision on the CPU."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_deterministic(on: bool, device: torch.device) -> None:
    """With `on`, the same params and data give bit-identical weights on this device;
    call it before the first CUDA operation.

    CUDA has non-deterministic kernels (cuDNN's autotuned choices, atomics in some
    backward passes); PyTorch's global switch picks deterministic ones. On the CPU the
    kernels the zoo uses are deterministic already, and the switch would import PyTorch's
    compiler stack (about a second), so it is thrown for CUDA only.
    """
    if device.type != "cuda":
        return
    if on:
        # cuBLAS reads this when it starts (the first CUDA matmul): a fixed workspace
        # fixes its reduction order.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic CUDA kernel warns, naming itself, instead
    # of stopping the run (deterministic_pooling replaces the one the zoo needs).
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    # Autotuning times candidate kernels and keeps the fastest, which may differ by run.
    torch.backends.cudnn.benchmark = not on


# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def reuse_freed_memory(device: torch.device) -> None:
    """On the CPU under Linux's glibc: keep freed memory in the process for the next
    allocation instead of giving it back to the kernel.

    glibc serves every allocation above its mmap threshold (32 MiB at most) with fresh
    pages and unmaps them on free, so a step that allocates the same tens of megabytes
    again pays a page fault for every 4 KiB it touches: half the time of an augmented
    64 x 3 x 224 x 224 batch (bench/augment.py). PyTorch's CPU tuning guide swaps in
    jemalloc or tcmalloc for this; glibc's own switches do it here. The process keeps its
    peak memory, which training reaches in its first step anyway; numbers do not change
    (PyTorch aligns its buffers itself). On CUDA the tensors live in PyTorch's caching
    allocator already.
    """
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):  # a C library without mallopt (musl)
        return
    mallopt(M_MMAP_MAX, 0)  # large blocks from the heap, whose freed space is reused
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # and not handed back when its top is free


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

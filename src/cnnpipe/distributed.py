"""Data-parallel training across processes, as torchrun starts them.

`torchrun --nproc_per_node=N stages/train.py` sets RANK, WORLD_SIZE and LOCAL_RANK; with
`train.nproc: N` the train stage starts torchrun itself, so `dvc repro` uses it too, and
with `train.nnodes: M` on M machines, each node `train.node_rank` of them reaching node 0
at `train.master` (torchrun's static rendezvous: node 0 waits for the others). Each
process trains on its own shard of every epoch; DistributedDataParallel averages the
gradients, so all ranks hold the same weights. Rank 0 alone logs and writes outputs.
"""

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cnnpipe.device import resolve_device, reuse_freed_memory, set_deterministic


@dataclass(frozen=True)
class Process:
    """This process's place in the training: its rank among `world`, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs and writes outputs."""
        return self.rank == 0


def start(cfg, script: str) -> Process:
    """Start training per the train config: under `train.nproc` or `train.nnodes` > 1
    this process is replaced by torchrun running `script`; then the device is chosen and made
    deterministic, freed CPU memory is kept for reuse, and a process started by torchrun
    joins its group."""
    if (cfg.nproc > 1 or cfg.nnodes > 1) and not under_torchrun():
        relaunch(cfg, script)
    device = resolve_device(cfg.device)
    set_deterministic(cfg.deterministic, device)
    reuse_freed_memory(device)
    rank, world = setup(device)
    return Process(rank, world, local_device(device))


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def relaunch(cfg, script: str) -> None:
    """Replace this process with torchrun running `script` on `cfg.nproc` processes, on
    this machine alone or as node `cfg.node_rank` of `cfg.nnodes`."""
    command = [sys.executable, "-m", "torch.distributed.run"]
    if cfg.nnodes > 1:
        host, _, port = cfg.master.rpartition(":")
        command += [f"--nnodes={cfg.nnodes}", f"--node-rank={cfg.node_rank}"]
        command += [f"--master-addr={host}", f"--master-port={port}"]
    else:
        command += ["--standalone"]
    command += [f"--nproc-per-node={cfg.nproc}", script]
    where = f" on node {cfg.node_rank} of {cfg.nnodes}" if cfg.nnodes > 1 else ""
    print(f"starting {cfg.nproc} training processes{where}: {' '.join(command[1:])}", flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, command)


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group when started by torchrun; returns (rank, world size)."""
    if not under_torchrun():
        return 0, 1
    die_with_launcher()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def die_with_launcher() -> None:
    """End this process when torchrun's launcher, its parent, ends.

    torchrun starts each worker in a session of its own. A launcher stopped with Ctrl-C
    or SIGTERM stops its workers, but one killed outright (SIGKILL, or a machine's
    supervisor doing so) cannot: its workers went on training, wrote the outputs and
    deleted the resume file that the next `dvc repro` was to continue from. Linux's
    parent-death signal makes the kernel kill the worker instead (elsewhere: nothing).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() == 1:  # the launcher died before the signal was asked for
        os._exit(1)


def local_device(device: torch.device) -> torch.device:
    """Each process drives its own GPU."""
    if device.type == "cuda" and under_torchrun():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not dist.is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of `values` over every process (itself when there is one)."""
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

"""Resuming: the state of training after each epoch, enough to continue bit for bit, and
the fingerprint that tells whether a saved state belongs to this run."""

import hashlib
import random
from pathlib import Path

import numpy as np
import torch

from cnnpipe.config import flatten
from cnnpipe.files import atomic_path, resolve_path


def fingerprint(params, labels: np.ndarray, split: dict, image_shape, world: int) -> str:
    """A hash of what decides a training run: the params (all but those of tracking and
    tune, and of the later stages: evaluate, export, inspect), the labels and split, the image
    shape and the number of processes. A training state from any other run is never
    resumed."""
    decisive = {
        key: value
        for key, value in flatten(params).items()
        if key.split(".")[0] not in ("tracking", "tune", "evaluate", "export", "inspect")
        and key != "train.resume"
    }
    digest = hashlib.sha256(repr((decisive, tuple(image_shape), world)).encode())
    digest.update(labels.tobytes())
    for name in ("train", "val"):
        digest.update(split[name].tobytes())
    pretrained = params.net.pretrained and resolve_path(params.net.pretrained)
    if pretrained and pretrained.is_file():  # the same path may hold other weights now
        digest.update(pretrained.read_bytes())
    return digest.hexdigest()


def save_resume(path, engine, state: dict, generator: torch.Generator) -> None:
    """Write the training state after an epoch; `engine` is the engine.Engine training."""
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
        "ema": engine.ema.state_dict() if engine.ema is not None else {},
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


def restore(engine, state: dict, generator: torch.Generator) -> None:
    engine.module.load_state_dict(state["model"])
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.schedule.load_state_dict(state["schedule"])
    if engine.scaler and state["scaler"]:
        engine.scaler.load_state_dict(state["scaler"])
    if engine.ema is not None:
        engine.ema.load_state_dict(state["ema"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(rng["python"])
    generator.set_state(rng["batches"].cpu())

"""Test accuracy of the default recipe (params.yaml) for several seeds, on the CPU.

The seed draws the split, the initial weights and the batch order; each run is the
pipeline's train and evaluate in one process (same library calls, no DVC or MLflow):

    python bench/seeds.py               # seeds 0..4
    python bench/seeds.py --seeds 0 1 2 3 4 42
    python bench/seeds.py --set epochs=40 --set train.label_smoothing=0.1
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from cnnpipe import recipe
from cnnpipe.config import parse_params
from cnnpipe.data.batches import DeviceData
from cnnpipe.data.prepared import Prepared
from cnnpipe.data.sources import open_source
from cnnpipe.data.split import stratified_split
from cnnpipe.device import seed_everything
from cnnpipe.engine import fit
from cnnpipe.scoring import split_logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", default=[], help="key=value, as dvc's -S")
    args = parser.parse_args()

    raw = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        *path, last = key.split(".")
        section = raw
        for part in path:
            section = section[part]
        section[last] = yaml.safe_load(value)
    source = open_source(parse_params(raw).data)
    chunks = list(source.chunks)
    data = Prepared(
        np.concatenate([c[0] for c in chunks]),
        np.concatenate([c[1] for c in chunks]),
        source.classes,
    )
    device = torch.device("cpu")
    results = {}
    for seed in args.seeds:
        start = time.perf_counter()
        params = parse_params({**raw, "seed": seed})
        cfg = params.split
        split = stratified_split(data.labels, cfg.val, cfg.test, seed, cfg.fraction)
        seed_everything(seed)
        train, val, spec, engine = recipe.training(
            params, data, split["train"], split["val"], device, verbose=False
        )
        engine.module.load_state_dict(fit(engine, train, val, params).state)
        index = split["test"]
        test = DeviceData(data.images[index], data.labels[index], spec.mean, spec.std, device)
        predicted = split_logits(engine.module, test, params.batch_size).argmax(1).numpy()
        results[seed] = float((predicted == data.labels[index]).mean())
        print(
            f"seed {seed}: test accuracy {results[seed]:.4f} ({time.perf_counter() - start:.1f} s)"
        )
    print(json.dumps({"test_acc": results, "min": min(results.values())}))


if __name__ == "__main__":
    main()

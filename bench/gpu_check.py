"""GPU check: the default pipeline on CUDA, a timed epoch of one network of every family, and
bench/throughput.py's engine-versus-plain-loop ratio.

It needs PyTorch, torchvision, scikit-learn, ONNX, ONNX Runtime and Captum (a pure-Python
wheel), not DVC or MLflow: the stages run in dvc.yaml's order from a temporary copy of the
repository with tracking switched off, with the commands `dvc repro` would run. With its defaults it
finishes in under five minutes on one GPU:

    python bench/gpu_check.py                  # CUDA, one network of every family
    python bench/gpu_check.py --models all     # CUDA, every registered network
    python bench/gpu_check.py --device cpu --models lenet --epochs 1 \\
        --throughput-models lenet --throughput-images 4096
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def run_pipeline(workdir: Path, device: str) -> dict:
    for name in ("stages", "src", "params.yaml", "dvc.yaml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, workdir / name)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["train"]["device"] = device
    params["tracking"]["enabled"] = False
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = dict(os.environ, PYTHONPATH=str(workdir / "src"), CI="1")
    seconds = {}
    stages = yaml.safe_load((workdir / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():  # dvc.yaml lists them in an order that runs
        command = spec["cmd"].split()
        assert command[0] == "python", f"{stage}: {spec['cmd']}"
        start = time.perf_counter()
        subprocess.run([sys.executable, *command[1:]], cwd=workdir, env=env, check=True)
        seconds[stage] = round(time.perf_counter() - start, 2)
    metrics = {}
    for name in ("train", "evaluate", "export"):
        metrics.update(json.loads((workdir / f"metrics/{name}.json").read_text()))
    return {"stage_seconds": seconds, "total_seconds": round(sum(seconds.values()), 2), **metrics}


def time_networks(workdir: Path, names: list[str], device: str, epochs: int, batch_size: int):
    """Train each network on the prepared digits with the project's engine (bf16 and
    channels_last on CUDA); images/s of the last epoch."""
    sys.path.insert(0, str(workdir / "src"))
    import torch

    from cnnpipe import models
    from cnnpipe.config import parse_params
    from cnnpipe.data.batches import DeviceData, channel_stats
    from cnnpipe.data.prepared import load_prepared
    from cnnpipe.data.split import load_split
    from cnnpipe.device import seed_everything
    from cnnpipe.engine import make_engine
    from cnnpipe.scoring import loss_and_accuracy

    data, split = load_prepared(workdir / "data/prepared"), load_split(workdir / "data/split")
    mean, std = channel_stats(data.images, split["train"])
    train = DeviceData(data.images[split["train"]], data.labels[split["train"]], mean, std, device)
    val = DeviceData(data.images[split["val"]], data.labels[split["val"]], mean, std, device)
    results = []
    for name in names:
        params = parse_params({"model": name, "lr": 0.05, "epochs": epochs})
        seed_everything(0)
        model = models.build(name, num_classes=10, in_channels=1, image_size=data.image_size)
        engine = make_engine(
            model.to(device), params, torch.device(device), -(-len(train) // batch_size)
        )
        generator = torch.Generator().manual_seed(0)
        for epoch in range(1, epochs + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss, acc = engine.train_epoch(train, batch_size, generator, epoch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        val_loss, val_acc = loss_and_accuracy(engine.module, val, batch_size, engine.amp)
        row = {
            "model": name,
            "images_per_s": round(len(train) / seconds),
            "train_loss": round(loss, 4),
            "val_acc": round(val_acc, 4),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def throughput(workdir: Path, runs: list[tuple[str, int]], device: str) -> list[dict]:
    """bench/throughput.py for each (model, images): the engine against a plain loop."""
    env = dict(os.environ, PYTHONPATH=str(workdir / "src"))
    results = []
    for model, images in runs:
        out = subprocess.run(
            [
                sys.executable,
                str(REPO / "bench/throughput.py"),
                "--model",
                model,
                "--device",
                device,
                "--images",
                str(images),
                "--batch-size",
                "512",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--models",
        default="lenet,alexnet,vgg11_bn,googlenet,resnet18,mobilenet_v3_small",
        help="names separated by commas, or all (default: one of every family)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="per network; the last is timed")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--throughput-models", default="lenet,resnet18")
    parser.add_argument("--throughput-images", type=int, default=50000)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    import torch

    info = {"torch": torch.__version__, "python": sys.version.split()[0], "device": args.device}
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda asked for, but PyTorch sees no CUDA device")
        info["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(info), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        pipeline = run_pipeline(workdir, args.device)
        print(json.dumps({"pipeline": pipeline}), flush=True)
        sys.path.insert(0, str(workdir / "src"))
        from cnnpipe import models

        names = models.registered_names() if args.models == "all" else args.models.split(",")
        networks = time_networks(workdir, names, args.device, args.epochs, args.batch_size)
        runs = [(m, args.throughput_images) for m in args.throughput_models.split(",")]
        ratios = throughput(workdir, runs, args.device)

    result = {**info, "pipeline": pipeline, "networks": networks, "throughput": ratios}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    ok = (
        pipeline["test_acc"] >= 0.97
        and pipeline["onnx_top1_agreement"] == 1.0
        and pipeline["torchscript_top1_agreement"] == 1.0
    )
    print("gpu check:", "passed" if ok else "FAILED", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""How the pipeline's cost grows with the data: prepare -> split -> train -> evaluate on
synthetic image folders of growing size, through the stages' own scripts.

Each size is a folder of RGB 64x64 PNG files in 10 classes (each class a colour and a
stripe pattern, with noise, so there is something to learn). The stages run in a
temporary copy of this repository with ResNet-18 for `--epochs` epochs and tracking off,
twice for train and evaluate: with the split held on the device (on a CPU, host memory)
and through the host DataLoader path (`train.data_placement: host`).

    python bench/scale.py --sizes 2000,4000 --epochs 1
    python bench/scale.py --sizes 5000,20000,50000 --workers 4    # on a GPU machine
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image

# The tests' throwaway-clone helpers (tests/workspace.py needs no pytest).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from workspace import cli_env, make_clone, set_params  # noqa: E402

CLASSES = 10
SIZE = 64


def make_folder(root: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    for i in range(count):
        label = i % CLASSES
        colour = np.array([(label * 70) % 256, (label * 40 + 80) % 256, (255 - label * 25)])
        stripes = ((xs * np.cos(label) + ys * np.sin(label)) // (4 + label) % 2)[..., None]
        pixels = colour * (0.5 + 0.5 * stripes) + rng.normal(0, 40, (SIZE, SIZE, 3))
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:06d}.png")


def stage(repo: Path, name: str) -> dict:
    """Run one stage's script; its wall seconds and peak resident memory."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, f"stages/{name}.py"],
        cwd=repo,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{process.stderr.read().decode()[-3000:]}")
    return {"s": seconds, "peak_mb": usage.ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,4000", help="images per folder, comma-separated")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, host path")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnpipe-scale-") as tmp:
        repo = make_clone(Path(tmp) / "repo")
        for count in map(int, args.sizes.split(",")):
            folder = Path(tmp) / f"images-{count}"
            start = time.perf_counter()
            make_folder(folder, count)
            print(f"{count} images written in {time.perf_counter() - start:.0f} s", flush=True)
            set_params(
                repo,
                model=args.model,
                epochs=args.epochs,
                batch_size=args.batch_size,
                **{
                    "data__source": "imagefolder",
                    "data__root": str(folder),
                    "data__channels": 3,
                    "data__image_size": SIZE,
                    "tracking__enabled": False,
                    "train__device": args.device,
                    "train__workers": args.workers,
                },
            )
            prepared = stage(repo, "prepare")
            split = stage(repo, "split")
            trained = len(np.load(repo / "data/split/train.npy"))
            tested = len(np.load(repo / "data/split/test.npy"))
            for placement in ("device", "host"):
                set_params(repo, train__data_placement=placement)
                train, evaluate = stage(repo, "train"), stage(repo, "evaluate")
                row = {
                    "images": count,
                    "placement": placement,
                    "prepare_s": round(prepared["s"], 1),
                    "prepare_img_s": round(count / prepared["s"]),
                    "split_s": round(split["s"], 1),
                    "train_s": round(train["s"], 1),
                    "train_img_s": round(trained * args.epochs / train["s"], 1),
                    "evaluate_s": round(evaluate["s"], 1),
                    "evaluate_img_s": round(tested / evaluate["s"], 1),
                    "peak_mb": round(max(s["peak_mb"] for s in (prepared, split, train, evaluate))),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)

    keys = ["prepare_s", "split_s", "train_s", "evaluate_s"]
    print(
        "\n| images | placement | prepare s | split s | train s | train img/s "
        "| evaluate s | peak MB |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['images']} | {r['placement']} | {r['prepare_s']} | {r['split_s']} "
            f"| {r['train_s']} | {r['train_img_s']} | {r['evaluate_s']} | {r['peak_mb']} |"
        )
    print("\ngrowth from one size to the next (time ratio / image ratio):")
    for placement in ("device", "host"):
        same = [r for r in rows if r["placement"] == placement]
        for a, b in pairwise(same):
            grow = b["images"] / a["images"]
            ratios = ", ".join(f"{k[:-2]} {b[k] / a[k] / grow:.2f}" for k in keys if a[k])
            print(f"  {placement} {a['images']} -> {b['images']} (x{grow:g}): {ratios}")


if __name__ == "__main__":
    main()

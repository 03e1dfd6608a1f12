"""The default pipeline's job as one plain script, the yardstick for bench/pipeline_time.py.

One process does what prepare -> split -> train -> evaluate -> export do with the default
params: load scikit-learn's digits at 32x32, split them 70/15/15 by class, train LeNet-5
for 30 epochs (SGD, lr 0.05 on a cosine schedule, label smoothing 0.1, 2-px random crops),
keep the best validation epoch, score it on the test split, export it to ONNX and log
params and metrics to an MLflow store. No DVC, no checks, no reports.

    python bench/plain_pipeline.py --out /tmp/plain
"""

import argparse
import math
import time
from pathlib import Path

START = time.perf_counter()

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(42)
    rng = np.random.default_rng(42)

    digits = load_digits()
    pixels = (digits.images / 16 * 255).round().astype(np.uint8)
    images = np.stack(
        [np.asarray(Image.fromarray(p).resize((32, 32), Image.BILINEAR)) for p in pixels]
    )
    labels = digits.target
    parts = {"train": [], "val": [], "test": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = round(0.15 * len(idx))
        parts["test"].append(idx[:n])
        parts["val"].append(idx[n : 2 * n])
        parts["train"].append(idx[2 * n :])
    split = {k: np.concatenate(v) for k, v in parts.items()}
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    mean, std = x[split["train"]].mean(), x[split["train"]].std()
    x, y = (x - mean) / std, torch.from_numpy(labels)

    model = LeNet5()
    epochs, batch = 30, 64
    steps = epochs * math.ceil(len(split["train"]) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    train, val, test = (torch.from_numpy(split[k]) for k in ("train", "val", "test"))
    padded = F.pad(x, (2, 2, 2, 2), value=float(-mean / std))
    best_acc, best_state = -1.0, None
    mlflow.set_tracking_uri(f"sqlite:///{args.out / 'mlflow.db'}")
    with mlflow.start_run():
        mlflow.log_params({"model": "lenet", "lr": 0.05, "epochs": epochs, "batch_size": batch})
        for epoch in range(1, epochs + 1):
            model.train()
            for idx in train[torch.randperm(len(train))].split(batch):
                dy, dx = torch.randint(0, 5, (2,))
                xb = padded[idx, :, dy : dy + 32, dx : dx + 32]
                loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            model.eval()
            with torch.no_grad():
                val_acc = (model(x[val]).argmax(1) == y[val]).float().mean().item()
            mlflow.log_metrics({"train_loss": loss.item(), "val_acc": val_acc}, step=epoch)
            if val_acc > best_acc:
                best_acc, best_state = (
                    val_acc,
                    {k: v.clone() for k, v in model.state_dict().items()},
                )
        model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            test_acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
        mlflow.log_metrics({"best_val_acc": best_acc, "test_acc": test_acc})
        torch.onnx.export(
            model,
            (x[:2],),
            str(args.out / "model.onnx"),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
        )
    print(f"test accuracy {test_acc:.4f} in {time.perf_counter() - START:.1f} s")


if __name__ == "__main__":
    main()

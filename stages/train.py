"""Stage 3: train the configured network; keep the weights of the best validation epoch."""

from torch import nn

from cnnpipe import tracking
from cnnpipe.checkpoint import ModelSpec, save_spec, save_weights
from cnnpipe.config import load_params
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.errors import exit_on_error
from cnnpipe.files import write_csv, write_json, write_text
from cnnpipe.models import resolve_variant
from cnnpipe.summary import report
from cnnpipe.train import fit, make_optimizer, resolve_device, seed_everything


@exit_on_error
def main():
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.train.device)

    # Data: normalised with the mean and std of the training split only.
    data, split = load_prepared("data/prepared"), load_split("data/split")
    mean, std = channel_stats(data.images[split["train"]])
    train = DeviceData(data.images[split["train"]], data.labels[split["train"]], mean, std, device)
    val = DeviceData(data.images[split["val"]], data.labels[split["val"]], mean, std, device)

    # Model, optimiser, loss.
    spec = ModelSpec(
        model=params.model,
        num_classes=len(data.classes),
        in_channels=data.channels,
        image_size=data.image_size,
        mean=mean,
        std=std,
        classes=data.classes,
        variant=resolve_variant(params.net.variant, data.image_size),
        dropout=params.net.dropout,
        lrn=params.net.lrn,
    )
    model = spec.build(init=params.net.init).to(device)
    table = report(model, spec.model, spec.variant, spec.in_channels, spec.image_size)
    optimizer = make_optimizer(
        params.optimizer,
        model.parameters(),
        lr=params.lr,
        momentum=params.train.momentum,
        weight_decay=params.train.weight_decay,
    )
    loss_fn = nn.CrossEntropyLoss()

    # Epochs, tracked in MLflow as they finish.
    with tracking.start_run(params):
        history, best_state = fit(
            model,
            train,
            val,
            optimizer,
            loss_fn,
            epochs=params.epochs,
            batch_size=params.batch_size,
            seed=params.seed,
            on_epoch=tracking.log_epoch,
        )
        best = max(history, key=lambda row: row["val_acc"])
        scores = {"best_epoch": best["epoch"], "best_val_acc": best["val_acc"]}
        tracking.log_metrics(scores)

        # Save: the best weights, how to rebuild them, and the curves.
        save_weights(best_state, "models/best.pth")
        save_spec(spec, "models/model.json")
        write_csv("metrics/history.csv", history)
        write_json("metrics/train.json", scores)
        write_text("metrics/model_summary.txt", table)
        tracking.log_files("metrics/model_summary.txt", folder="model")
    print(f"best epoch {best['epoch']}: val accuracy {best['val_acc']:.4f} on {device}")


if __name__ == "__main__":
    main()

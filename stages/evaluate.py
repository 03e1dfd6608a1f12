"""Stage 4: score the best checkpoint on the test split it has never seen, and draw what
it got wrong: confusion matrices, a per-class table and the misclassified images."""

import torch.nn.functional as F

from cnnpipe import tracking
from cnnpipe.checkpoint import load_model
from cnnpipe.config import load_params
from cnnpipe.data.batches import DeviceData
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.device import resolve_device
from cnnpipe.errors import exit_on_error
from cnnpipe.files import write_csv, write_json
from cnnpipe.inference import predict
from cnnpipe.metrics import confusion, per_class_report
from cnnpipe.plots import confusion_png, misclassified_png

FIGURES = {
    "confusion": "metrics/confusion.png",
    "confusion_normalized": "metrics/confusion_normalized.png",
    "misclassified": "metrics/misclassified.png",
}


@exit_on_error
def main():
    params = load_params()
    device = resolve_device(params.train.device)
    model, spec = load_model("models/best.pth", "models/model.json", device)

    data, test_idx = load_prepared("data/prepared"), load_split("data/split")["test"]
    test = DeviceData(data.images[test_idx], data.labels[test_idx], spec.mean, spec.std, device)

    logits = predict(model, test, params.batch_size)
    y_true, y_pred = test.labels.cpu().numpy(), logits.argmax(1).numpy()
    report = per_class_report(y_true, y_pred, spec.classes)
    scores = {
        "test_loss": F.cross_entropy(logits, test.labels.cpu()).item(),
        "test_acc": float((y_true == y_pred).mean()),
        "test_macro_f1": sum(row["f1"] for row in report) / len(report),
    }

    write_json("metrics/evaluate.json", scores)
    write_csv("metrics/per_class.csv", report)
    write_csv(
        "metrics/confusion.csv",
        [
            {"actual": spec.classes[t], "predicted": spec.classes[p]}
            for t, p in zip(y_true, y_pred, strict=True)
        ],
    )
    matrix = confusion(y_true, y_pred, spec.num_classes)
    confusion_png(matrix, spec.classes, FIGURES["confusion"])
    confusion_png(matrix, spec.classes, FIGURES["confusion_normalized"], normalized=True)
    test_images = data.images[test_idx]
    misclassified_png(test_images, y_true, y_pred, spec.classes, FIGURES["misclassified"])

    with tracking.continue_run(params) as run:
        run.log_metrics(scores)
        run.log_files(
            *FIGURES.values(), "metrics/per_class.csv", "metrics/confusion.csv", folder="evaluate"
        )
    print(f"test accuracy {scores['test_acc']:.4f} on {len(test)} images")


if __name__ == "__main__":
    main()

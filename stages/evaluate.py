"""Stage 4: score the best checkpoint on the test split it has never seen, and draw what
it got wrong: confusion matrices, a per-class table and the misclassified images; and the
training curves from train's history (drawn here, so that no figure code is train's)."""

import torch.nn.functional as F

from cnnpipe import paths
from cnnpipe.checkpoint import load_model
from cnnpipe.config import load_params
from cnnpipe.data.batches import DeviceData
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.device import resolve_device
from cnnpipe.errors import exit_on_error
from cnnpipe.files import read_csv, write_csv, write_json
from cnnpipe.metrics import confusion, per_class_report
from cnnpipe.plots.evaluation import confusion_png, curves_png, misclassified_png
from cnnpipe.scoring import mirrored_mean, split_logits, topk_accuracy
from cnnpipe.tracking.run import continue_run

FIGURES = {
    "confusion": paths.CONFUSION_PNG,
    "confusion_normalized": paths.CONFUSION_NORMALIZED_PNG,
    "misclassified": paths.MISCLASSIFIED_PNG,
}
CURVES = paths.CURVES_PNG


@exit_on_error
def main():
    params = load_params()
    device = resolve_device(params.train.device)
    model, spec = load_model(paths.BEST_WEIGHTS, paths.MODEL_SPEC, device)

    data, test_idx = load_prepared(paths.PREPARED), load_split(paths.SPLIT)["test"]
    test_images = data.inputs(test_idx, spec.image_size)
    test = DeviceData(test_images, data.labels[test_idx], spec.mean, spec.std, device)

    logits, labels = split_logits(model, test, params.batch_size), test.labels.cpu()
    y_true, y_pred = labels.numpy(), logits.argmax(1).numpy()
    report = per_class_report(y_true, y_pred, spec.classes)
    scores = {
        "test_loss": F.cross_entropy(logits, labels).item(),
        "test_acc": float((y_true == y_pred).mean()),
        "test_macro_f1": sum(row["f1"] for row in report) / len(report),
    }
    top5 = spec.num_classes > 5  # with five classes or fewer it is 1 by definition
    if top5:
        scores["test_top5_acc"] = topk_accuracy(logits, labels, 5)
    if params.evaluate.tta == "flip":
        probabilities = mirrored_mean(model, test, params.batch_size, logits)
        scores["test_loss_tta"] = F.nll_loss(probabilities.log(), labels).item()
        scores["test_acc_tta"] = topk_accuracy(probabilities, labels, 1)
        if top5:
            scores["test_top5_acc_tta"] = topk_accuracy(probabilities, labels, 5)

    write_json(paths.EVALUATE_METRICS, scores)
    write_csv(paths.PER_CLASS, report)
    write_csv(
        paths.CONFUSION,
        [
            {"actual": spec.classes[t], "predicted": spec.classes[p]}
            for t, p in zip(y_true, y_pred, strict=True)
        ],
    )
    matrix = confusion(y_true, y_pred, spec.num_classes)
    confusion_png(matrix, spec.classes, FIGURES["confusion"])
    confusion_png(matrix, spec.classes, FIGURES["confusion_normalized"], normalized=True)
    misclassified_png(test_images, y_true, y_pred, spec.classes, FIGURES["misclassified"])
    history = [{k: float(v) for k, v in row.items()} for row in read_csv(paths.HISTORY)]
    curves_png(history, CURVES)

    with continue_run(params) as run:
        run.log_metrics(scores)
        run.log_files(*FIGURES.values(), paths.PER_CLASS, paths.CONFUSION, folder="evaluate")
        run.log_files(CURVES, folder="train")
    print(f"test accuracy {scores['test_acc']:.4f} on {len(test)} images")


if __name__ == "__main__":
    main()

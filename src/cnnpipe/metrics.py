"""Running means, accuracy and the per-class scores of a classifier.

The per-class scores come from the confusion matrix in a few lines of NumPy: importing
sklearn.metrics would take about 2 s of every evaluate run.
"""

import numpy as np


class AverageMeter:
    """The running mean of a value seen batch by batch, weighted by batch size."""

    def __init__(self):
        self.sum = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else 0.0


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of every class; a score with nothing to divide
    by (a class never predicted, or absent) is 0."""
    matrix = confusion(y_true, y_pred, len(classes))
    hits = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    cells = np.asarray(y_true) * num_classes + np.asarray(y_pred)
    return np.bincount(cells, minlength=num_classes**2).reshape(num_classes, num_classes)

"""Running means, accuracy and the per-class scores of a classifier."""

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


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
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
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
    return confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))

import numpy as np
import pytest

from cnnpipe.metrics import confusion, per_class_report


def test_per_class_scores_from_a_worked_example():
    # class 0: 2 right, 1 taken for 1; class 1: 1 right; class 2: never seen, predicted once
    y_true = np.array([0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 1, 1, 2])
    assert confusion(y_true, y_pred, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]
    rows = {r["class"]: r for r in per_class_report(y_true, y_pred, ["a", "b", "c"])}
    assert rows["a"] == {"class": "a", "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert rows["b"]["precision"] == 0.5 and rows["b"]["recall"] == 0.5
    assert rows["b"]["f1"] == pytest.approx(0.5)
    # Nothing to divide by: 0, not NaN.
    assert rows["c"] == {"class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}

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


def test_top5_accuracy_counts_a_class_among_the_five_highest():
    import torch

    from cnnpipe.scoring import topk_accuracy

    scores = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3], [1.0, 2, 3, 4, 5, 6, 7]])
    # Image 0 is class 4 (fifth highest), image 1 class 1 (sixth highest).
    labels = torch.tensor([4, 1])
    assert topk_accuracy(scores, labels, 5) == 0.5
    assert topk_accuracy(scores, labels, 1) == 0.0
    assert topk_accuracy(scores, labels, 6) == 1.0


def test_flip_tta_averages_each_images_and_its_mirrors_probabilities():
    import torch

    from cnnpipe.data.batches import DeviceData
    from cnnpipe.scoring import mirrored_mean, split_logits

    torch.manual_seed(0)
    # A "network" that sees left and right differently: a linear map of the flat pixels.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 4, 3))
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
    data = DeviceData(images, np.arange(6) % 3, [0.5], [0.25], "cpu")
    logits = split_logits(model, data, batch_size=4)
    mean = mirrored_mean(model, data, 4, logits)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(mean, expected, atol=1e-6)
    assert not torch.allclose(mean, logits.softmax(1), atol=1e-3)  # the mirror counted

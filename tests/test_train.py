import numpy as np
import pytest
import torch
from torch import nn

from cnnpipe.checkpoint import ModelSpec, load_model, save_spec, save_weights
from cnnpipe.config import DataConfig
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.sources import load_source
from cnnpipe.data.split import stratified_split
from cnnpipe.errors import CnnpipeError
from cnnpipe.metrics import AverageMeter
from cnnpipe.train import fit, make_optimizer, seed_everything


@pytest.fixture(scope="module")
def digits():
    images, labels, classes = load_source(DataConfig(image_size=16))
    split = stratified_split(labels, val=0.2, test=0.2, seed=0)
    mean, std = channel_stats(images[split["train"]])
    train = DeviceData(images[split["train"]], labels[split["train"]], mean, std, "cpu")
    val = DeviceData(images[split["val"]], labels[split["val"]], mean, std, "cpu")
    spec = ModelSpec("lenet", 10, 1, 16, mean, std, classes)
    return spec, train, val


def train_lenet(digits, optimizer="sgd", lr=0.05, epochs=3, seed=0):
    spec, train, val = digits
    seed_everything(seed)
    model = spec.build()
    opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    history, best = fit(model, train, val, opt, nn.CrossEntropyLoss(), epochs, 64, seed)
    return model, history, best


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.05), ("adam", 0.003)])
def test_training_lowers_the_loss_and_learns(digits, optimizer, lr):
    _, history, _ = train_lenet(digits, optimizer, lr, epochs=8)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert max(row["val_acc"] for row in history) > 0.8
    assert [row["epoch"] for row in history] == list(range(1, 9))


def test_same_seed_gives_bit_identical_metrics_and_weights(digits):
    _, first, best1 = train_lenet(digits, seed=7)
    _, second, best2 = train_lenet(digits, seed=7)
    assert first == second
    assert all(torch.equal(best1[k], best2[k]) for k in best1)
    _, third, _ = train_lenet(digits, seed=8)
    assert third != first


def test_best_weights_are_those_of_the_best_val_epoch(digits, tmp_path):
    spec, _, val = digits
    _, history, best = train_lenet(digits, epochs=3)
    save_weights(best, tmp_path / "best.pth")
    save_spec(spec, tmp_path / "model.json")
    model, loaded_spec = load_model(tmp_path / "best.pth", tmp_path / "model.json")
    assert loaded_spec == spec
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in val.batches(256)])
    acc = (logits.argmax(1) == val.labels).float().mean().item()
    assert acc == pytest.approx(max(row["val_acc"] for row in history), abs=1e-6)


def test_checkpoint_loads_with_weights_only(digits, tmp_path):
    # A file that pickles code, not tensors, must be refused rather than executed.
    spec = digits[0]
    torch.save(spec.build(), tmp_path / "whole_model.pth")
    save_spec(spec, tmp_path / "model.json")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_model(tmp_path / "whole_model.pth", tmp_path / "model.json")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CnnpipeError, match="best.pth: not found; run the train stage first"):
        load_model(tmp_path / "best.pth", tmp_path / "model.json")


def test_diverging_training_stops_with_a_clear_error(digits):
    with pytest.raises(CnnpipeError, match="training loss became nan in epoch 1"):
        train_lenet(digits, lr=1e6, epochs=2)


def test_average_meter_weights_by_batch_size():
    meter = AverageMeter()
    meter.update(1.0, n=3)
    meter.update(3.0, n=1)
    assert meter.avg == 1.5
    assert np.isclose(AverageMeter().avg, 0.0)

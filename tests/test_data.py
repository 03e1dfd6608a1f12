import numpy as np
import pytest

from cnnpipe.config import DataConfig
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.prepared import load_prepared, save_prepared
from cnnpipe.data.sources import load_source
from cnnpipe.data.split import load_split, save_split, stratified_split
from cnnpipe.errors import CnnpipeError


def test_digits_are_real_resized_uint8_images():
    images, labels, classes = load_source(DataConfig(image_size=32, channels=3))
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert classes == [str(i) for i in range(10)]
    assert np.bincount(labels).min() >= 170
    assert images.max() == 255 and images.min() == 0
    assert (images[..., 0] == images[..., 2]).all()  # grey replicated into RGB


def test_prepared_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    save_prepared(tmp_path / "p", images, np.array([0, 1, 0, 1, 1]), ["cat", "向日葵"])
    data = load_prepared(tmp_path / "p")
    assert np.array_equal(data.images, images)
    assert data.classes == ["cat", "向日葵"]
    assert (data.channels, data.image_size) == (1, 8)


def test_loading_a_missing_prepared_set_names_what_is_missing(tmp_path):
    with pytest.raises(CnnpipeError, match="missing images.npy, labels.npy, classes.json"):
        load_prepared(tmp_path)


def test_split_is_stratified_disjoint_and_seeded(tmp_path):
    labels = np.repeat(np.arange(4), [40, 60, 80, 20])
    split = stratified_split(labels, val=0.2, test=0.25, seed=3)
    together = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(together) == list(range(len(labels)))
    for name, share in (("test", 0.25), ("val", 0.2)):
        counts = np.bincount(labels[split[name]], minlength=4)
        assert np.allclose(counts / np.bincount(labels), share, atol=0.06)
    again = stratified_split(labels, val=0.2, test=0.25, seed=3)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = stratified_split(labels, val=0.2, test=0.25, seed=4)
    assert not np.array_equal(split["test"], other["test"])
    save_split(tmp_path / "s", split)
    assert all(np.array_equal(split[k], v) for k, v in load_split(tmp_path / "s").items())


def test_split_fraction_keeps_a_stratified_share():
    labels = np.repeat(np.arange(4), [40, 60, 80, 20])
    split = stratified_split(labels, val=0.2, test=0.2, seed=0, fraction=0.5)
    used = np.concatenate(list(split.values()))
    assert len(used) == 100 and len(set(used)) == 100
    assert np.array_equal(np.bincount(labels[used]), [20, 30, 40, 10])


def test_split_of_a_too_small_class_says_why():
    labels = np.array([0] * 20 + [1])
    with pytest.raises(CnnpipeError, match="smallest class has 1 images"):
        stratified_split(labels, val=0.2, test=0.2, seed=0)


def test_channel_stats_and_normalised_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 4, 4, 2), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=64)  # chunks must not change the answer
    subset = np.arange(0, 300, 3)
    assert np.allclose(channel_stats(images, subset, chunk=7)[0], channel_stats(images[subset])[0])
    x = images / 255.0
    assert np.allclose(mean, x.mean(axis=(0, 1, 2)))
    assert np.allclose(std, x.std(axis=(0, 1, 2)))
    data = DeviceData(images, np.arange(300) % 3, mean, std, "cpu")
    batches = list(data.batches(128))
    assert [len(y) for _, y in batches] == [128, 128, 44]
    first = batches[0][0]
    assert first.shape == (128, 2, 4, 4)
    normalised = np.concatenate([b.numpy() for b, _ in batches])
    assert np.allclose(normalised.mean(axis=(0, 2, 3)), 0, atol=1e-5)

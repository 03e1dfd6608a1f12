import struct
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from cnnpipe.config import DataConfig
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.prepared import load_prepared, prepared_writer, save_prepared
from cnnpipe.data.sources import open_source
from cnnpipe.data.split import fold_indices, k_folds, load_split, save_split, stratified_split
from cnnpipe.errors import CnnpipeError

from conftest import BROKEN, DIGIT_CLASSES, REPO, offline_env, run, write_digit_folder


def read_all(source):
    chunks = list(source.chunks)
    return np.concatenate([x for x, _ in chunks]), np.concatenate([y for _, y in chunks])


def test_digits_are_real_resized_uint8_images():
    source = open_source(DataConfig(image_size=32, channels=3))
    images, labels = read_all(source)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert source.classes == [str(i) for i in range(10)]
    assert np.bincount(labels).min() >= 170
    assert images.max() == 255 and images.min() == 0
    assert (images[..., 0] == images[..., 2]).all()  # grey replicated into RGB


@pytest.mark.parametrize("channels", [1, 3])
def test_an_image_folder_is_read_whole_and_its_bad_files_listed(tmp_path, channels):
    written = write_digit_folder(tmp_path, per_class=12)
    cfg = DataConfig(source="imagefolder", root=str(tmp_path), image_size=20, channels=channels)
    source = open_source(cfg)
    assert source.classes == sorted(DIGIT_CLASSES)  # folder names, spaces and 向日葵 kept
    images, labels = read_all(source)
    assert images.shape == (120, 20, 20, channels) and images.dtype == np.uint8
    names = [source.classes[i] for i in labels]
    assert sorted(names) == sorted(written.values())
    reasons = {bad["path"]: bad["reason"] for bad in source.bad_files}
    assert set(reasons) == {f"one/{name}" for name in BROKEN}  # .DS_Store is not listed
    assert reasons["one/empty.png"] == "empty file (0 bytes)"
    assert reasons["one/notes.txt"] == "not an image file Pillow can read"
    assert reasons["one/cut.jpg"].startswith("broken image")
    # The pixels are the digits': a bright stroke on a dark ground.
    assert images.mean() < 100 and images.max() > 200


def test_image_folder_mistakes_are_named(tmp_path):
    def prepare(root):
        return read_all(open_source(DataConfig(source="imagefolder", root=str(root))))

    with pytest.raises(CnnpipeError, match="no such folder"):
        prepare(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(CnnpipeError, match="no class folders in it"):
        prepare(tmp_path / "flat")
    write_digit_folder(tmp_path / "some", per_class=3, broken=False)
    (tmp_path / "some" / "empty class").mkdir()
    with pytest.raises(CnnpipeError, match="class folder\\(s\\) with no files: empty class"):
        prepare(tmp_path / "some")
    (tmp_path / "some" / "empty class" / "x.png").write_bytes(b"")
    with pytest.raises(CnnpipeError, match="no usable image in class folder\\(s\\) empty class"):
        prepare(tmp_path / "some")


def write_idx(path, array: np.ndarray) -> None:
    """The IDX format MNIST ships in: magic (dtype, ndim), big-endian sizes, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_is_read_from_a_local_copy_in_torchvisions_layout(tmp_path):
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    for part, rows in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        write_idx(raw / f"{part}-images-idx3-ubyte", images[rows])
        write_idx(raw / f"{part}-labels-idx1-ubyte", digits.target[rows])
    cfg = DataConfig(source="mnist", root=str(tmp_path), download=False, image_size=16)
    source = open_source(cfg)
    pixels, labels = read_all(source)
    assert pixels.shape == (1797, 16, 16, 1)
    assert np.array_equal(labels, digits.target)  # train then test, pooled
    assert source.classes[0] == "0 - zero"


@pytest.mark.parametrize("source", ["mnist", "cifar10"])
def test_a_torchvision_set_without_a_copy_or_network_fails_in_seconds(tmp_path, source):
    with pytest.raises(CnnpipeError, match=f"{source} is not in {tmp_path}"):
        read_all(open_source(DataConfig(source=source, root=str(tmp_path), download=False)))

    (tmp_path / "params.yaml").write_text(f"data:\n  source: {source}\n  root: cache\n")
    start = time.monotonic()
    result = run(["python", str(REPO / "stages/prepare.py")], tmp_path, False, **offline_env())
    assert time.monotonic() - start < 30
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot download {source} into {tmp_path / 'cache'} (")
    assert not (tmp_path / "data/prepared").exists()


def test_prepared_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    save_prepared(tmp_path / "p", images, np.array([0, 1, 0, 1, 1]), ["cat", "向日葵"])
    data = load_prepared(tmp_path / "p")
    assert np.array_equal(data.images, images)
    assert data.classes == ["cat", "向日葵"]
    assert (data.channels, data.image_size) == (1, 8)


def test_prepared_set_written_in_chunks_appears_only_when_complete(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8) for n in (7, 1, 300)]
    with prepared_writer(tmp_path / "p", ["a", "b"]) as out:
        for chunk in chunks:
            out.append(chunk, np.arange(len(chunk)) % 2)
    data = load_prepared(tmp_path / "p")
    assert np.array_equal(data.images, np.concatenate(chunks))
    assert isinstance(data.images, np.memmap)

    with pytest.raises(RuntimeError), prepared_writer(tmp_path / "p", ["x"]) as out:
        out.append(chunks[0], np.zeros(7))
        raise RuntimeError("source failed half-way")
    assert load_prepared(tmp_path / "p").classes == ["a", "b"]  # the old set is intact


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


def test_split_of_a_too_small_class_names_it():
    labels = np.array([0] * 20 + [1] * 4)
    with pytest.raises(CnnpipeError, match="class '向日葵' has 4 image\\(s\\), .* at least 5"):
        stratified_split(labels, val=0.2, test=0.2, seed=0, classes=["cat", "向日葵"])


def test_folds_partition_train_and_val_stratified():
    labels = np.repeat(np.arange(3), [30, 60, 90])
    split = stratified_split(labels, val=0.2, test=0.2, seed=0)
    folds = k_folds(labels, split, 3, seed=0)
    assert (folds[split["test"]] == -1).all()
    held_out = [fold_indices(folds, k)[1] for k in range(3)]
    pool = np.concatenate([split["train"], split["val"]])
    assert sorted(np.concatenate(held_out)) == sorted(pool)
    for k, val in enumerate(held_out):
        train, _ = fold_indices(folds, k)
        assert not set(train) & set(val) and len(train) + len(val) == len(pool)
        assert np.array_equal(np.bincount(labels[val]), np.bincount(labels[pool]) // 3)
    with pytest.raises(CnnpipeError, match="split.folds is 40, but a class has only 24"):
        k_folds(labels, split, 40, seed=0)


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


def test_augmentation_crops_and_flips_whole_batches_reproducibly():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (64, 8, 8, 1), dtype=np.uint8)  # no zero pixels
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

    flipped = Augment(hflip=True)(x, torch.Generator().manual_seed(0))
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and 10 < mirrored.sum() < 54

    cropped = Augment(crop_padding=2)(x, torch.Generator().manual_seed(0))
    assert cropped.shape == x.shape and cropped.dtype == torch.uint8
    for original, crop in zip(x, cropped, strict=True):
        # Each crop is the image shifted by up to 2 pixels, black where it left the frame.
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        windows = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(crop, w) for w in windows)
    again = Augment(crop_padding=2)(x, torch.Generator().manual_seed(0))
    assert torch.equal(cropped, again)

    data = DeviceData(images, np.zeros(64), [0.5], [0.5], "cpu", Augment(crop_padding=2))
    plain = torch.cat([b for b, _ in data.batches(32)])  # evaluation order: untouched
    assert torch.equal(plain, (x.float() / 255 - 0.5) / 0.5)
    shuffled = torch.cat([b for b, _ in data.batches(32, True, torch.Generator())])
    assert (shuffled == -1).any()  # black padding, normalised

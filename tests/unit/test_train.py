import inspect
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from augmentations import every_augmentation

from cnnpipe import models
from cnnpipe.checkpoint import ModelSpec, load_model, save_spec, save_weights
from cnnpipe.config import DataConfig, TrainConfig, parse_params
from cnnpipe.data.batches import DeviceData, HostData, channel_stats
from cnnpipe.data.sources import read_source
from cnnpipe.data.split import stratified_split
from cnnpipe.device import deterministic_pooling, seed_everything, set_deterministic
from cnnpipe.engine import fit, make_engine
from cnnpipe.errors import CnnpipeError
from cnnpipe.metrics import AverageMeter
from cnnpipe.optim import make_optimizer, make_schedule
from cnnpipe.resume import load_resume
from cnnpipe.scoring import loss_and_accuracy

BATCH = 64


@pytest.fixture(scope="module")
def digits():
    images, labels, classes = read_source(DataConfig(image_size=16))
    split = stratified_split(labels, val=0.2, test=0.2, seed=0)
    mean, std = channel_stats(images[split["train"]])
    train = DeviceData(images[split["train"]], labels[split["train"]], mean, std, "cpu")
    val = DeviceData(images[split["val"]], labels[split["val"]], mean, std, "cpu")
    spec = ModelSpec("lenet", 10, 1, 16, mean, std, classes)
    return spec, train, val


def params_for(epochs, seed, optimizer="sgd", lr=0.05, **train):
    return parse_params(
        {
            "lr": lr,
            "epochs": epochs,
            "seed": seed,
            "optimizer": optimizer,
            "batch_size": BATCH,
            "train": train,
        }
    )


def engine_for(digits, epochs, seed, optimizer="sgd", lr=0.05, **train):
    spec, train_data, _ = digits
    params = params_for(epochs, seed, optimizer, lr, **train)
    seed_everything(seed)
    model = spec.build()
    return make_engine(model, params, torch.device("cpu"), -(-len(train_data) // BATCH))


def train_lenet(digits, epochs=3, seed=0, optimizer="sgd", lr=0.05, **train):
    _, train_data, val = digits
    engine = engine_for(digits, epochs, seed, optimizer, lr, **train)
    fitted = fit(engine, train_data, val, params_for(epochs, seed, optimizer, lr, **train))
    return engine.module, fitted.history, fitted.state


CASES = [
    ("sgd", 0.05, {}),
    ("sgd", 0.05, {"nesterov": True}),
    ("adam", 0.003, {}),
    ("adamw", 0.003, {"weight_decay": 0.05}),
    ("sgd", 0.05, {"schedule": "step", "step_size": 3, "gamma": 0.5}),
    ("sgd", 0.05, {"schedule": "cosine", "warmup_epochs": 1}),
    ("sgd", 0.1, {"schedule": "onecycle"}),
    ("sgd", 0.05, {"loss": "cross_entropy", "label_smoothing": 0.1}),
    ("sgd", 0.05, {"loss": "nll"}),
    ("adam", 0.003, {"loss": "l1"}),
    ("adam", 0.003, {"loss": "mse"}),
    ("adam", 0.003, {"loss": "smooth_l1", "smooth_l1_beta": 0.5}),
    ("sgd", 0.05, {"amp": "bf16"}),
]


@pytest.mark.parametrize("optimizer, lr, train", CASES, ids=lambda v: str(v))
def test_every_optimiser_schedule_and_loss_lowers_the_training_loss(digits, optimizer, lr, train):
    _, history, _ = train_lenet(digits, 6, 0, optimizer, lr, **train)
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    # Above chance (0.1); the regression losses on probabilities learn slowest.
    assert max(row["val_acc"] for row in history) > 0.3


def test_schedules_follow_their_shapes():
    def lrs(**cfg):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        schedule = make_schedule(opt, TrainConfig(**cfg), 1.0, epochs=4, steps_per_epoch=10)
        out = []
        for _ in range(40):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step()
        return np.array(out)

    warm = lrs(schedule="constant", warmup_epochs=1)
    assert np.allclose(warm[:10], np.arange(1, 11) / 10) and np.allclose(warm[10:], 1.0)
    step = lrs(schedule="step", step_size=2, gamma=0.1)
    assert np.allclose(step[:20], 1.0) and np.allclose(step[20:], 0.1)
    cosine = lrs(schedule="cosine")
    assert cosine[0] == 1.0 and np.all(np.diff(cosine) < 0) and cosine[-1] < 0.01
    onecycle = lrs(schedule="onecycle", warmup_epochs=1)
    assert abs(onecycle.argmax() - 10) <= 1 and onecycle.max() == pytest.approx(
        1.0
    )  # end of warmup
    assert onecycle[0] < 0.1 and onecycle[-1] < 0.01


def test_optimisers_get_their_settings():
    weights = [{"params": [torch.zeros(1, requires_grad=True)]}]
    sgd = make_optimizer("sgd", weights, 0.1, TrainConfig(momentum=0.8, nesterov=True))
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    adamw = make_optimizer("adamw", weights, 0.1, TrainConfig(beta1=0.8, beta2=0.99, eps=1e-6))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.99)
    # CPU tensors get the fused kernels (several times faster for large networks).
    assert sgd.defaults["fused"] and adamw.defaults["fused"]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_steps_match_the_plain_update_rule(name):
    """The fused kernels compute what torch's reference loop does, within rounding."""
    torch.manual_seed(0)
    start, grads = torch.randn(1000), [torch.randn(1000) for _ in range(5)]
    cfg = TrainConfig(momentum=0.9, weight_decay=0.01)
    finals = []
    for fused in (True, False):
        weight = start.clone().requires_grad_()
        optimizer = make_optimizer(name, [{"params": [weight]}], 0.01, cfg)
        if not fused:
            kind = type(optimizer)
            accepted = inspect.signature(kind).parameters
            same = {k: v for k, v in optimizer.defaults.items() if k in accepted}
            optimizer = kind([weight], **{**same, "fused": None})
        for grad in grads:
            weight.grad = grad.clone()
            optimizer.step()
        finals.append(weight.detach())
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-5, atol=1e-6)


def test_same_seed_gives_bit_identical_metrics_and_weights(digits):
    _, first, best1 = train_lenet(digits, seed=7)
    _, second, best2 = train_lenet(digits, seed=7)
    assert first == second
    assert all(torch.equal(best1[k], best2[k]) for k in best1)
    _, third, _ = train_lenet(digits, seed=8)
    assert third != first


def smaller(digits, count=384):
    """The digits fixture's first `count` training images: enough for what resuming does."""
    spec, train_data, val = digits
    images = train_data.images[:count].permute(0, 2, 3, 1).numpy()
    labels = train_data.labels[:count].numpy()
    return spec, DeviceData(images, labels, spec.mean, spec.std, "cpu", train_data.augment), val


def augmented(digits):
    """The digits fixture with every augmentation of the photo recipe and colour jitter."""
    spec, train_data, val = digits
    augment = every_augmentation(16, 10)
    images = train_data.images.permute(0, 2, 3, 1).numpy()
    labels = train_data.labels.numpy()
    return spec, DeviceData(images, labels, spec.mean, spec.std, "cpu", augment), val


@pytest.mark.parametrize(
    "options",
    [{}, {"grad_accum_steps": 3, "clip_grad_norm": 0.5, "ema_decay": 0.9, "augment": True}],
    ids=["plain", "accum-clip-ema-augment"],
)
def test_resumed_training_ends_exactly_like_an_uninterrupted_one(digits, tmp_path, options):
    options = dict(options)
    digits = smaller(digits)
    if options.pop("augment", False):
        digits = augmented(digits)
    _, train_data, val = digits
    full_model, full, full_best = train_lenet(digits, epochs=5, seed=3, **options)

    path = tmp_path / "state.pt"
    first = engine_for(digits, 5, 3, **options)

    def killed_after_epoch_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            first,
            train_data,
            val,
            params_for(5, 3, **options),
            state_file=(path, {"fingerprint": "run"}),
            on_epoch=killed_after_epoch_2,
        )
    # A new process would start from a freshly seeded, freshly initialised network.
    second = engine_for(digits, 5, 3, **options)
    state = load_resume(path, "run", "cpu")
    assert len(state["history"]) == 2
    assert load_resume(path, "another run", "cpu") is None
    fitted = fit(second, train_data, val, params_for(5, 3, **options), resume=state)
    assert fitted.history == full
    assert all(torch.equal(fitted.state[k], full_best[k]) for k in fitted.state)
    final = second.module.state_dict()
    assert all(torch.equal(final[k], v) for k, v in full_model.state_dict().items())
    # The resume file is written after every epoch but the last.
    assert len(load_resume(path, "run", "cpu")["history"]) == 2


def test_accumulated_batches_take_the_step_of_one_batch_their_size(digits):
    """Two batches of 32 with grad_accum_steps 2 move the weights as one batch of 64 does
    (LeNet-5 has no BatchNorm, whose statistics would see the smaller batches)."""
    spec, train_data, _ = digits
    images = train_data.images[:640].permute(0, 2, 3, 1).numpy()
    data = DeviceData(images, train_data.labels[:640].numpy(), spec.mean, spec.std, "cpu")
    weights = []
    for batch, accum in ((64, 1), (32, 2)):
        params = parse_params(
            {"epochs": 2, "seed": 0, "batch_size": batch, "train": {"grad_accum_steps": accum}}
        )
        seed_everything(0)
        engine = make_engine(spec.build(), params, torch.device("cpu"), 640 // batch)
        for epoch in (1, 2):
            engine.train_epoch(data, batch, torch.Generator().manual_seed(epoch), epoch)
        assert engine.schedule.last_epoch == 20  # 10 optimiser steps an epoch either way
        weights.append(engine.module.state_dict())
    for key, value in weights[0].items():
        assert torch.allclose(weights[1][key], value, atol=1e-5), key


def test_the_moving_average_is_what_is_validated_and_kept(digits):
    """With train.ema_decay the average follows every optimiser step (the first step's
    weights, then decay x average + (1 - decay) x weights), and it is the network that is
    validated each epoch and kept as the best."""
    spec, train_data, val = digits
    images = train_data.images[:128].permute(0, 2, 3, 1).numpy()
    data = DeviceData(images, train_data.labels[:128].numpy(), spec.mean, spec.std, "cpu")
    params = parse_params({"epochs": 1, "batch_size": 64, "train": {"ema_decay": 0.75}})
    seed_everything(0)
    engine = make_engine(spec.build(), params, torch.device("cpu"), 2)
    steps = []
    engine.optimizer.register_step_post_hook(
        lambda *_: steps.append([p.detach().clone() for p in engine.module.parameters()])
    )
    fitted = fit(engine, data, val, params)
    assert len(steps) == 2
    for average, first, second in zip(engine.ema.module.parameters(), *steps, strict=True):
        assert torch.allclose(average, 0.75 * first + 0.25 * second, atol=1e-7)
        assert not torch.allclose(average, second)
    kept = engine.ema.module.state_dict()
    assert fitted.state.keys() == kept.keys()
    assert all(torch.equal(fitted.state[k], kept[k]) for k in kept)
    _, val_acc = loss_and_accuracy(engine.ema.module, val, 64)
    assert fitted.history[0]["val_acc"] == val_acc


@pytest.mark.parametrize("clip", [None, 0.01])
def test_clipping_bounds_every_steps_gradient_norm(digits, clip):
    spec, train_data, _ = digits
    images = train_data.images[:64].permute(0, 2, 3, 1).numpy()
    data = DeviceData(images, train_data.labels[:64].numpy(), spec.mean, spec.std, "cpu")
    params = parse_params(
        {
            "lr": 1.0,
            "epochs": 1,
            "batch_size": 64,
            "train": {"momentum": 0, "weight_decay": 0, "clip_grad_norm": clip},
        }
    )
    seed_everything(0)
    engine = make_engine(spec.build(), params, torch.device("cpu"), 1)
    before = [p.detach().clone() for p in engine.module.parameters()]
    engine.train_epoch(data, 64, torch.Generator().manual_seed(0), 1)
    moved = torch.stack(
        [(p.detach() - b).norm() for p, b in zip(engine.module.parameters(), before, strict=True)]
    ).norm()  # plain SGD at lr 1: the step is the gradient itself
    if clip is None:
        assert moved > 0.1
    else:
        assert moved == pytest.approx(clip, rel=1e-4)


def test_a_run_that_ends_writes_no_resume_file(digits, tmp_path):
    _, train_data, val = digits
    path = tmp_path / "state.pt"
    fit(engine_for(digits, 1, 0), train_data, val, params_for(1, 0), state_file=(path, {}))
    assert not path.exists()


def test_patience_stops_when_validation_stops_improving(digits):
    _, history, _ = train_lenet(digits, epochs=6, lr=1e-9, patience=2)
    assert len(history) == 3  # epoch 1 sets the best; 2 and 3 do not beat it


def test_host_batches_match_device_batches(digits):
    _, train_data, _ = digits
    images = train_data.images.permute(0, 2, 3, 1).numpy()
    labels = train_data.labels.numpy()
    mean, std = (
        train_data.normalize.mean.flatten().tolist(),
        train_data.normalize.std.flatten().tolist(),
    )
    for workers in (0, 2):
        host = HostData(images, labels, mean, std, "cpu", workers=workers)
        for rank in (0, 1):
            a = list(host.batches(100, True, torch.Generator().manual_seed(1), rank, 2))
            b = list(train_data.batches(100, True, torch.Generator().manual_seed(1), rank, 2))
            assert len(a) == len(b)
            for (xa, ya), (xb, yb) in zip(a, b, strict=True):
                assert torch.equal(ya, yb) and torch.allclose(xa, xb)


def test_ranks_take_disjoint_equal_shares(digits):
    _, train_data, _ = digits
    seen = [
        torch.cat(
            [y for _, y in train_data.batches(64, True, torch.Generator().manual_seed(0), r, 3)]
        )
        for r in range(3)
    ]
    assert len({len(s) for s in seen}) == 1 and sum(map(len, seen)) > len(train_data) - 3


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
    with pytest.raises(CnnpipeError, match=r"became non-finite in epoch 1, step \d+ \(lr 1e\+06\)"):
        train_lenet(digits, lr=1e6, epochs=2, schedule="constant")


def test_average_meter_weights_by_batch_size():
    meter = AverageMeter()
    meter.update(1.0, n=3)
    meter.update(3.0, n=1)
    assert meter.avg == 1.5
    assert np.isclose(AverageMeter().avg, 0.0)


def test_compiled_network_trains_and_saves_plain_weights(digits):
    model, history, best = train_lenet(digits, epochs=2, compile=True)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # The saved weights belong to the plain module: loadable without torch.compile.
    assert set(best) == set(digits[0].build().state_dict())


def test_deterministic_pooling_changes_no_number():
    torch.manual_seed(0)
    model = models.build("resnet18", num_classes=10, in_channels=1, image_size=16)
    swapped = models.build("resnet18", num_classes=10, in_channels=1, image_size=16)
    swapped.load_state_dict(model.state_dict())
    deterministic_pooling(swapped)
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in swapped.modules())
    x = torch.randn(4, 1, 16, 16)
    out, out_swapped = model.eval()(x), swapped.eval()(x)
    torch.testing.assert_close(out_swapped, out, rtol=1e-6, atol=1e-6)
    out.sum().backward()
    out_swapped.sum().backward()
    grad, grad_swapped = model.conv1.weight.grad, swapped.conv1.weight.grad
    torch.testing.assert_close(grad_swapped, grad, rtol=1e-5, atol=1e-6)


def test_deterministic_flag_switches_torch_and_cudnn_modes_for_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    try:
        set_deterministic(False, cuda)
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        set_deterministic(True, cuda)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        set_deterministic(False, cpu)  # the CPU's kernels need no switch
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        set_deterministic(False, cuda)
        torch.backends.cudnn.benchmark = False


REUSE_PROBE = """
import resource, torch
from cnnpipe.data.augment import Augment
from cnnpipe.data.batches import network_batch
from cnnpipe.device import reuse_freed_memory
from cnnpipe.pixels import Normalize

# Photo-sized batches through resized crops, erasing and MixUp: float batches of
# 38 MB, above any mmap threshold of glibc's.
generator = torch.Generator().manual_seed(0)
photos = torch.randint(0, 256, (64, 3, 256, 256), dtype=torch.uint8, generator=generator)
labels = torch.arange(64) % 10
augment = Augment(
    hflip=True, size=224, source_size=256, erasing=0.1, mixup_alpha=0.2, num_classes=10,
    resized_crop=(0.08, 4 / 3),
)
normalize = Normalize([0.5] * 3, [0.25] * 3)

def faults_per_batch():
    for _ in range(3):  # the heap settles
        network_batch(photos, labels, normalize, 224, augment, generator)
    faults = []
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        network_batch(photos, labels, normalize, 224, augment, generator)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # The median: now and then a batch's random erasing or crop needs a block no freed
    # one fits, and the heap grows by a few thousand pages once.
    return sorted(faults)[len(faults) // 2]

default = faults_per_batch()
reuse_freed_memory(torch.device("cpu"))
print(default, faults_per_batch())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_cpu_memory_is_reused_without_page_faults():
    """By default each large block comes fresh from the kernel, a page fault for every
    4 KiB touched; once the train stage's setting is made, an augmented batch reuses the
    memory of the one before. In a process of its own: the setting stays for its life."""
    out = subprocess.run(
        [sys.executable, "-c", REUSE_PROBE], capture_output=True, text=True, check=True
    ).stdout
    default, reused = (int(n) for n in out.split())
    batch_pages = 64 * 3 * 224 * 224 * 4 // 4096  # one float batch
    assert default > batch_pages, (default, batch_pages)
    assert reused < batch_pages // 10, (reused, batch_pages)


def test_every_epoch_prints_one_plain_line(digits, capsys):
    train_lenet(digits, epochs=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert re.fullmatch(
        r"epoch 2/2: train loss [\d.]+ acc [\d.]+, val loss [\d.]+ acc [\d.]+, [\d.]+ s, "
        r"[\d,]+ images/s",
        lines[1],
    )


def test_a_search_trial_reports_each_epoch_and_a_poor_one_stops(digits, tmp_path, monkeypatch):
    """Under `cnnpipe tune` the train stage finds its trial by the DVC experiment's name;
    a trial below the median of the finished ones stops after its warmup epoch."""
    import optuna

    from cnnpipe import pruning

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    settings = {"kind": "median", "startup_trials": 1, "warmup_epochs": 1}
    study.set_user_attr(pruning.PRUNER_ATTR, settings)
    done = study.ask()
    for epoch in range(1, 5):
        done.report(0.9, epoch)
    study.tell(done, 0.9)
    poor = study.ask()
    poor.set_user_attr(pruning.EXPERIMENT_ATTR, "s-1")

    monkeypatch.setenv(pruning.STORAGE_ENV, storage)
    monkeypatch.setenv(pruning.SEARCH_ENV, "s")
    monkeypatch.setenv("DVC_EXP_NAME", "s-0")  # a finished trial's name: no running trial
    assert pruning.trial_of_this_experiment() is None
    monkeypatch.setenv("DVC_EXP_NAME", "s-1")
    link = pruning.trial_of_this_experiment()
    assert link.number == 1

    _, train_data, val = digits
    params = params_for(4, 0, lr=1e-9)  # learns nothing: far below 0.9
    fitted = fit(engine_for(digits, 4, 0, lr=1e-9), train_data, val, params, stop=link.report)
    assert len(fitted.history) == 2 and link.pruned  # epoch 1 is the warmup
    reported = study.trials[1].intermediate_values
    assert reported == {row["epoch"]: row["val_acc"] for row in fitted.history}

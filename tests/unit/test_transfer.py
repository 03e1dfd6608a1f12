"""Fine-tuning: pretrained weights in, a new head, a frozen backbone that stays frozen."""

import pytest
import torch

from cnnpipe import recipe
from cnnpipe.checkpoint import ModelSpec, save_weights
from cnnpipe.config import DataConfig, parse_params
from cnnpipe.data.batches import DeviceData, channel_stats
from cnnpipe.data.sources import read_source
from cnnpipe.device import seed_everything
from cnnpipe.engine import fit, make_engine
from cnnpipe.errors import CnnpipeError
from cnnpipe.transfer import head_name

from conftest import offline_env, run


@pytest.fixture(scope="module")
def digits():
    images, labels, _ = read_source(DataConfig(image_size=16))
    return images[:256], labels[:256]


def params_for(model, pretrained=None, freeze="none", head_lr=None):
    return parse_params(
        {
            "model": model,
            "lr": 0.05,
            "epochs": 1,
            "net": {"pretrained": pretrained, "freeze": freeze, "head_lr": head_lr},
        }
    )


def spec_for(model, images, classes):
    mean, std = channel_stats(images)
    return ModelSpec(model, len(classes), 1, 16, mean, std, classes, variant="small")


@pytest.mark.parametrize("model", ["lenet", "resnet18"])
def test_fine_tuning_a_checkpoint_trains_a_new_head_and_nothing_else(tmp_path, digits, model):
    images, labels = digits
    # An "earlier run": ten classes, saved as the pipeline saves models/best.pth.
    seed_everything(0)
    earlier = spec_for(model, images, [str(i) for i in range(10)]).build()
    with torch.no_grad():
        for p in earlier.parameters():
            p.add_(0.01)  # unlike any fresh initialisation
    save_weights(earlier.state_dict(), tmp_path / "best.pth")

    # Fine-tune it on a two-class problem with the backbone frozen.
    keep = labels < 2
    spec = spec_for(model, images[keep], ["zero", "one"])
    params = params_for(model, str(tmp_path / "best.pth"), freeze="backbone")
    net, frozen = recipe.network(spec, params, "cpu", verbose=False)
    head = head_name(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    old = earlier.state_dict()
    for key, value in before.items():
        if key.startswith(head + "."):
            assert value.shape[0] == 2  # replaced to fit the new classes
        elif value.dtype.is_floating_point:
            assert torch.equal(value, old[key]), key  # copied from the checkpoint

    data = DeviceData(images[keep], labels[keep], spec.mean, spec.std, "cpu")
    engine = make_engine(net, params, torch.device("cpu"), -(-len(data) // 16), frozen)
    fit(
        engine, data, data, parse_params({"model": model, "epochs": 1, "batch_size": 16, "seed": 0})
    )

    after = net.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {f"{head}.weight", f"{head}.bias"}  # BatchNorm statistics included


def test_layers_the_weights_do_not_fit_stay_trainable(tmp_path, digits):
    images, _ = digits
    imagenet = ModelSpec("resnet18", 10, 1, 16, [0.5], [0.5], list("abcdefghij"), "imagenet")
    save_weights(imagenet.build().state_dict(), tmp_path / "imagenet.pth")
    small = spec_for("resnet18", images, ["a", "b"])  # 3x3 stem instead of 7x7
    params = params_for("resnet18", str(tmp_path / "imagenet.pth"), freeze="backbone")
    net, _ = recipe.network(small, params, "cpu", verbose=False)
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"conv1.weight", "fc.weight", "fc.bias"}


def test_head_lr_gives_the_head_its_own_learning_rate(digits):
    images, _ = digits
    spec = spec_for("lenet", images, ["a", "b", "c"])
    params = params_for("lenet", head_lr=0.5)
    net, _ = recipe.network(spec, params, "cpu", verbose=False)
    engine = make_engine(net, params, torch.device("cpu"), 10)
    groups = engine.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.05, 0.5]
    head = dict(net.named_parameters())
    name = head_name(net)
    assert {id(p) for p in groups[1]["params"]} == {
        id(head[f"{name}.weight"]),
        id(head[f"{name}.bias"]),
    }


def test_bad_pretrained_sources_are_named(tmp_path, digits):
    images, _ = digits
    spec = spec_for("resnet18", images, ["a", "b"])

    def start(source, model="resnet18"):
        recipe.network(spec_for(model, images, ["a", "b"]), params_for(model, source), "cpu")

    with pytest.raises(CnnpipeError, match="no such file"):
        start(str(tmp_path / "missing.pth"))
    (tmp_path / "notes.pth").write_text("not weights")
    with pytest.raises(CnnpipeError, match="not a state_dict"):
        start(str(tmp_path / "notes.pth"))
    with pytest.raises(
        CnnpipeError, match="torchvision weights for resnet18 .those are: IMAGENET1K_V1"
    ):
        start("IMAGENET9K")
    with pytest.raises(CnnpipeError, match="torchvision has no weights for lenet"):
        start("IMAGENET1K_V1", model="lenet")
    save_weights(spec.build().state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(CnnpipeError, match="none of its .* tensors fit lenet"):
        start(str(tmp_path / "resnet.pth"), model="lenet")

    # Offline, with an empty cache: the stage's process stops, naming the file it wanted.
    code = (
        "from cnnpipe.models import build; from cnnpipe.transfer import load_pretrained; "
        "net = build('resnet18', num_classes=2, in_channels=1, image_size=32); "
        "load_pretrained(net, 'IMAGENET1K_V1', 'resnet18')"
    )
    cache = tmp_path / "torch"
    result = run(["python", "-c", code], tmp_path, False, TORCH_HOME=str(cache), **offline_env())
    assert result.returncode == 1
    assert "cannot download resnet18 IMAGENET1K_V1 from https://download.pytorch.org/" in (
        result.stderr
    )
    assert f"put that file in {cache / 'hub/checkpoints'}" in result.stderr


def test_pretrained_weights_bring_their_normalisation(tmp_path, digits):
    """torchvision's weights normalise as their transforms say (ImageNet's statistics);
    an earlier run's state_dict as its model.json says; the batches and the model's spec,
    and so the exported files, use them instead of the data's own."""
    from cnnpipe.checkpoint import save_spec
    from cnnpipe.data.prepared import Prepared

    images, labels = digits
    data = Prepared(images, labels, [str(i) for i in range(10)])
    index = list(range(len(labels)))

    def stats(model, pretrained, channels=1):
        params = params_for(model, pretrained)
        if channels == 3:
            rgb = Prepared(images.repeat(3, axis=3), labels, data.classes)
            return recipe.batches(params, rgb, index, index, "cpu")[2:]
        return recipe.batches(params, data, index, index, "cpu")[2:]

    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    mean, std = stats("resnet18", "IMAGENET1K_V1", channels=3)
    assert mean == pytest.approx(imagenet[0]) and std == pytest.approx(imagenet[1])
    # A grey picture stands for all three colours: their mean statistics.
    mean, std = stats("resnet18", "IMAGENET1K_V1")
    assert mean == pytest.approx([sum(imagenet[0]) / 3])
    assert std == pytest.approx([sum(imagenet[1]) / 3])

    earlier = spec_for("lenet", images, data.classes)
    earlier = ModelSpec(**{**earlier.__dict__, "mean": [0.3], "std": [0.7]})
    save_weights(earlier.build().state_dict(), tmp_path / "best.pth")
    save_spec(earlier, tmp_path / "model.json")
    assert stats("lenet", str(tmp_path / "best.pth")) == ([0.3], [0.7])
    params = params_for("lenet", str(tmp_path / "best.pth"))
    _, _, spec, _ = recipe.training(params, data, index, index, torch.device("cpu"), verbose=False)
    assert (spec.mean, spec.std) == ([0.3], [0.7])  # what the exported files will carry
    (tmp_path / "model.json").rename(tmp_path / "best.json")  # NAME.json beside NAME.pth
    assert stats("lenet", str(tmp_path / "best.pth")) == ([0.3], [0.7])
    # Without a spec nobody knows: the data's own statistics, as without weights.
    (tmp_path / "best.json").unlink()
    assert stats("lenet", str(tmp_path / "best.pth")) == tuple(channel_stats(images))

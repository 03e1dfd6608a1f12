import pytest
import yaml

from cnnpipe.config import ConfigError, Params, flatten, load_params, parse_params

from conftest import REPO


def test_repo_params_load_and_cover_every_key():
    params = load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    # params.yaml documents every knob: nothing falls back to a hidden default.
    assert set(raw) == set(Params.__dataclass_fields__)
    for section in ("data", "split", "train", "export", "tracking"):
        assert set(raw[section]) == set(type(getattr(params, section)).__dataclass_fields__)


def test_params_yaml_values_are_the_code_defaults():
    # A key deleted from params.yaml must not change the run: the file and the dataclass
    # defaults are one and the same.
    in_file = flatten(load_params(REPO / "params.yaml"))
    defaults = flatten(Params())
    differ = {k: (in_file[k], defaults[k]) for k in defaults if in_file[k] != defaults[k]}
    assert not differ, f"params.yaml value vs config.py default: {differ}"


def test_flatten_of_params_yaml_lists_every_key_in_the_file():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    def keys(section, prefix=""):
        for key, value in section.items():
            if isinstance(value, dict):
                yield from keys(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    assert set(keys(raw)) == set(flatten(Params()))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"lrr": 0.1}, "unknown key 'lrr' (did you mean 'lr'?)"),
        (
            {"data": {"imagesize": 32}},
            "unknown key 'data.imagesize' (did you mean 'data.image_size'",
        ),
        ({"lr": -0.1}, "lr must be > 0, got -0.1"),
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
        ({"lr": float("nan")}, "lr must be a number, got nan"),
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"model": "lenet6"}, "model is 'lenet6', which is not registered; allowed: lenet"),
        ({"optimizer": "rmsprop"}, "optimizer is 'rmsprop'; allowed: sgd, adam"),
        ({"data": {"channels": 2}}, "data.channels is 2; allowed: 1, 3"),
        ({"split": {"val": 0.6, "test": 0.5}}, "split.val + split.test must be < 1"),
        ({"split": {"test": 1.5}}, "split.test must be > 0 and < 1, got 1.5"),
        ({"train": {"device": "tpu"}}, "train.device is 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
        ({"data": 3}, "data must be a mapping, got 3"),
        ({"net": {"variant": "tiny"}}, "net.variant is 'tiny'; allowed: auto, small, imagenet"),
        (
            {"model": "resnet18", "net": {"dropout": 0.3}},
            "net.dropout is 0.3, but resnet18 has no dropout to set; models with dropout: alexnet",
        ),
        ({"net": {"lrn": "yes"}}, "net.lrn must be true or false, got 'yes'"),
        ({"split": {"fraction": 0}}, "split.fraction must be > 0 and <= 1, got 0.0"),
    ],
)
def test_bad_params_name_the_key_and_what_is_allowed(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(ConfigError, match="allowed at top level: model, lr, batch_size"):
        parse_params({"colour": "red"})


def test_numbers_yaml_reads_as_strings_are_accepted():
    # YAML 1.1 reads 1e-3 (no dot) as a string; it still means a number.
    assert parse_params(yaml.safe_load("lr: 1e-3")).lr == 0.001


def test_missing_and_broken_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="params.yaml: file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_null_dropout_means_the_family_default():
    params = parse_params({"model": "vgg11", "net": {"dropout": None}})
    assert params.net.dropout is None
    assert parse_params({"model": "vgg11", "net": {"dropout": 0.25}}).net.dropout == 0.25


def test_config_is_read_only():
    params = parse_params({})
    with pytest.raises(AttributeError):
        params.lr = 1.0

import pytest
import torch

from cnnpipe import models
from cnnpipe.errors import CnnpipeError


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet5_has_the_textbook_parameter_count():
    # conv1 6*(1*25+1) + conv2 16*(6*25+1) + fc 400*120+120 + 120*84+84 + 84*10+10
    model = models.build("lenet", num_classes=10, in_channels=1, image_size=32)
    assert n_params(model) == 156 + 2416 + 48120 + 10164 + 850 == 61706


@pytest.mark.parametrize("size, channels", [(16, 1), (28, 1), (32, 3), (64, 3)])
def test_lenet_works_at_other_sizes(size, channels):
    model = models.build("lenet", num_classes=7, in_channels=channels, image_size=size)
    logits = model(torch.randn(2, channels, size, size))
    assert logits.shape == (2, 7)
    logits.sum().backward()


def test_lenet_rejects_images_too_small_for_its_convolutions():
    with pytest.raises(CnnpipeError, match="lenet needs image_size >= 16"):
        models.build("lenet", num_classes=10, in_channels=1, image_size=12)


def test_unknown_model_lists_the_registry():
    with pytest.raises(CnnpipeError, match="allowed: lenet"):
        models.build("lenet7", num_classes=10, in_channels=1, image_size=32)

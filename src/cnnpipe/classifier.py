"""The network as it is shipped: raw pixels in, class probabilities out.

Every exported model (ONNX, TorchScript, the MLflow models) is this module around the
trained network, so the steps that turn a decoded picture into the network's input
travel with the weights and nobody has to re-implement them:

    uint8 (N, H, W, C) -> (N, C, H, W) -> float / 255 -> (x - mean) / std -> network -> softmax

They are the same steps, in the same arithmetic, as the training batches' (pixels.py),
and Netron draws them as the first nodes of the graph.
"""

import torch
from torch import nn

from cnnpipe.pixels import Normalize


class ImageClassifier(nn.Module):
    def __init__(self, network: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.network = network
        self.normalize = Normalize(mean, std)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, C) -> the network's normalised float input (N, C, H, W)."""
        return self.normalize(images.permute(0, 3, 1, 2))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.prepare(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).softmax(dim=1)


def shipped(network: nn.Module, spec) -> ImageClassifier:
    """The trained network of a checkpoint's ModelSpec, ready for raw images, in eval mode
    (dropout off, BatchNorm frozen, auxiliary heads dropped)."""
    return ImageClassifier(network, spec.mean, spec.std).eval()

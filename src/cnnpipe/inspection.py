"""What a trained network computes inside: its first kernels, the feature maps after each
stage, and where it looks when it decides (Grad-CAM).

Stages are found from the network's structure, not from per-model layer names: during one
forward pass every module whose output is a feature map (N, C, H, W) is watched, and the
last map computed at each spatial size is that size's stage. This gives LeNet's and VGG's
pooling blocks, ResNet's layer1..layer4, GoogLeNet's inception groups and MobileNet's
blocks alike. Maps of 1x1 (after global pooling) are left out: there is nothing to see;
so are maps larger than the stage before them (an adaptive pool repeating the pixels of
a small input).
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnpipe.errors import CnnpipeError


@dataclass
class Stage:
    name: str  # the module's name in the network, e.g. "layer2" or "features.5"
    maps: torch.Tensor  # its output for the images, (N, C, H, W), on the CPU


def first_conv(network: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first convolution in the network's module order: the one that sees the pixels."""
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise CnnpipeError(f"{type(network).__name__} has no Conv2d layer to show")


def stages(network: nn.Module, inputs: torch.Tensor) -> list[Stage]:
    """The network's stages and their feature maps for `inputs` (normalised, N, C, H, W)."""
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # name, output, copy of it

    def watch(name):
        def hook(module, args, output):
            if not (isinstance(output, torch.Tensor) and output.dim() == 4):
                return
            if min(output.shape[-2:]) <= 1:
                return
            if seen and seen[-1][1] is output:
                # A container handing on its last child's map, or an in-place activation:
                # the same tensor, named after the outer or later module.
                seen.pop()
            seen.append((name, output, output.detach().float().cpu().clone()))

        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in network.named_modules() if n]
    try:
        with torch.no_grad():
            network.eval()(inputs)
    finally:
        for handle in handles:
            handle.remove()
    found: list[Stage] = []
    for name, _, maps in seen:
        if found and maps.shape[-1] > found[-1].maps.shape[-1]:
            continue  # an adaptive pool enlarging a small map (AlexNet's, VGG's): no stage
        if found and found[-1].maps.shape[-2:] == maps.shape[-2:]:
            found[-1] = Stage(name, maps)  # a later map of the same size
        else:
            found.append(Stage(name, maps))
    if not found:
        raise CnnpipeError(f"{type(network).__name__} computes no feature map larger than 1x1")
    return found


def gradcam_layer(network: nn.Module, inputs: torch.Tensor, layer: str = "auto") -> str:
    """The module Grad-CAM looks at: the last stage, or the one named by `layer`."""
    if layer == "auto":
        return stages(network, inputs[:1])[-1].name
    names = dict(network.named_modules())
    if layer not in names or not layer:
        known = ", ".join(stage.name for stage in stages(network, inputs[:1]))
        raise CnnpipeError(
            f"layer '{layer}' (inspect.layer, or --layer) is not a module of this network; "
            f"its stages are: {known}"
        )
    return layer


def gradcam(network: nn.Module, inputs: torch.Tensor, targets, layer: str) -> np.ndarray:
    """Grad-CAM maps (N, H, W) at the input's size, each scaled to 0..1, for the classes
    `targets`: where the layer's features raise those classes' scores."""
    # Captum is imported here: only the inspect stage and `cnnpipe inspect` need it.
    from captum.attr import LayerAttribution, LayerGradCam

    network.eval()
    module = dict(network.named_modules())[layer]
    cam = LayerGradCam(network, module)
    targets = torch.as_tensor(targets, device=inputs.device)
    attributions = cam.attribute(inputs, target=targets, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(
        attributions.detach(), tuple(inputs.shape[-2:]), interpolate_mode="bilinear"
    )
    maps = upsampled[:, 0].float().cpu().numpy()
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


VIEWS = ("filters.png", "feature_maps.png", "gradcam.png")


@dataclass
class Shown:
    """Images to draw (uint8 N, H, W, C), each with a title."""

    images: np.ndarray
    titles: list[str]


def write_views(model, maps: Shown, cam: Shown, targets, folder, layer: str = "auto") -> list:
    """Draw the three views of a shipped classifier (classifier.py) into `folder`:
    its first kernels, the feature maps of `maps`, and Grad-CAM for `targets` over `cam`.
    Returns the files' paths."""
    from pathlib import Path

    from cnnpipe.plots.inspection import feature_maps_png, filters_png, gradcam_png

    folder = Path(folder)
    device = model.normalize.mean.device
    network = model.network.eval()
    name, conv = first_conv(network)
    filters_png(conv.weight.detach().float().cpu().numpy(), name, folder / VIEWS[0])

    inputs = model.prepare(torch.from_numpy(maps.images).to(device))
    feature_maps_png(maps.images, maps.titles, stages(network, inputs), folder / VIEWS[1])

    inputs = model.prepare(torch.from_numpy(cam.images).to(device))
    chosen = gradcam_layer(network, inputs, layer)
    heat = gradcam(network, inputs, targets, chosen)
    gradcam_png(cam.images, heat, cam.titles, chosen, folder / VIEWS[2])
    return [folder / view for view in VIEWS]

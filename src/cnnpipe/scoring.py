"""A network's logits and scores on a whole split, batch by batch (named apart from
`cnnpipe predict`, which runs a shipped model on picture files)."""

import torch
import torch.nn.functional as F


@torch.no_grad()
def split_logits(model, data, batch_size: int, amp=None, mirrored=False) -> torch.Tensor:
    """Logits for every image of `data` (or of its mirror image), in order, on the CPU, in
    float32."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for images, _ in data.batches(batch_size):
        if mirrored:
            images = images.flip(-1)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.append(model(images).float().cpu())
    return torch.cat(out)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of images whose true class is among the k highest `scores` (logits or
    probabilities, (N, classes))."""
    top = scores.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).double().mean().item()


def mirrored_mean(model, data, batch_size: int, logits: torch.Tensor) -> torch.Tensor:
    """Test-time augmentation by flipping: the mean of each image's class probabilities
    (from `logits`) and its mirror image's."""
    mirrored = split_logits(model, data, batch_size, mirrored=True)
    return (logits.softmax(1) + mirrored.softmax(1)) / 2


def loss_and_accuracy(model, data, batch_size: int, amp=None) -> tuple[float, float]:
    """(cross-entropy, accuracy) of `model` on `data`."""
    logits = split_logits(model, data, batch_size, amp)
    labels = data.labels.cpu()
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()

"""A network's logits and scores on a whole split, batch by batch (named apart from
`cnnpipe predict`, which runs a shipped model on picture files)."""

import torch
import torch.nn.functional as F


@torch.no_grad()
def split_logits(model, data, batch_size: int, amp=None) -> torch.Tensor:
    """Logits for every image of `data`, in order, on the CPU, in float32."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for images, _ in data.batches(batch_size):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.append(model(images).float().cpu())
    return torch.cat(out)


def loss_and_accuracy(model, data, batch_size: int, amp=None) -> tuple[float, float]:
    """(cross-entropy, accuracy) of `model` on `data`."""
    logits = split_logits(model, data, batch_size, amp)
    labels = data.labels.cpu()
    loss = F.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()

"""Natural accuracy: how well a trained classifier does on held-out data."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from fisherlab._device import model_device
from fisherlab.data.datasets import iterate_batches


@torch.no_grad()
def natural_accuracy(
    model: nn.Module, dataset: Dataset, batch_size: int = 512, *, workers: int = 0
) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``, with the model in eval mode.

    The train/eval mode of every submodule is restored afterwards. Batches go
    to the model's device; the forward pass runs in the model's precision
    (never under autocast).

    Args:
        model: A classifier returning logits.
        dataset: ``(image, label)`` pairs prepared for the model.
        batch_size: Evaluation batch size.
        workers: Data-loading processes (image folders).

    Returns:
        The fraction of correctly classified items (``nan`` for an empty set).
    """
    n = len(dataset)
    if n == 0:
        return float("nan")
    device = model_device(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        correct = torch.zeros((), dtype=torch.int64, device=device)
        batches = iterate_batches(
            dataset, torch.arange(n), batch_size, workers=workers, pin_memory=device.type == "cuda"
        )
        with torch.autocast(device.type, enabled=False):
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                correct += (model(x).argmax(1) == y).sum()
    finally:
        for module, mode in modes:
            module.training = mode
    return int(correct) / n

"""Natural accuracy: how well a trained classifier does on held-out data."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from fisherlab.data.datasets import iterate_batches


@torch.no_grad()
def natural_accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``, with the model in eval mode.

    The train/eval mode of every submodule is restored afterwards.

    Args:
        model: A classifier returning logits.
        dataset: ``(image, label)`` pairs prepared for the model.
        batch_size: Evaluation batch size.

    Returns:
        The fraction of correctly classified items (``nan`` for an empty set).
    """
    n = len(dataset)
    if n == 0:
        return float("nan")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        correct = 0
        for x, y in iterate_batches(dataset, torch.arange(n), batch_size):
            correct += int((model(x).argmax(1) == y).sum())
    finally:
        for module, mode in modes:
            module.training = mode
    return correct / n

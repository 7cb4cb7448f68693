"""Evaluation of trained models: natural accuracy on held-out data."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from fisherlab.data import ImageDataset


def iterate_batches(dataset: Dataset, indices: torch.Tensor, batch_size: int):
    """Yield ``(x, y)`` batches of ``dataset`` in the order of ``indices``.

    In-memory :class:`~fisherlab.data.ImageDataset` objects are sliced as
    tensors; other datasets are stacked item by item.

    Args:
        dataset: A dataset of ``(image, label)`` pairs.
        indices: Int64 indices into ``dataset``.
        batch_size: Maximum batch size.

    Yields:
        ``(x, y)`` tensor pairs.
    """
    images = dataset.images if isinstance(dataset, ImageDataset) else None
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        if images is not None:
            yield images[idx], dataset.labels[idx]
        else:
            items = [dataset[i] for i in idx.tolist()]
            yield (
                torch.stack([x for x, _ in items]),
                torch.stack([torch.as_tensor(y) for _, y in items]),
            )


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

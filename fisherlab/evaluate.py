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


# --------------------------------------------------------------------------- attack metrics
def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's head (its last layer, a Linear), flattened.

    This is the feature space of the KNN distance and of the FID.
    """
    from fisherlab.layers import layers

    head = dict(model.named_modules())[layers(model)[-1].name]
    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each label is among the ``k`` largest logits, ``(N,)`` bool."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels.view(-1, 1)).any(1)


def knn_distances(
    features: torch.Tensor,
    labels: torch.Tensor,
    private_features: torch.Tensor,
    private_labels: torch.Tensor,
) -> torch.Tensor:
    """Per reconstruction, the minimum squared L2 distance to a private sample of its class.

    Args:
        features: ``(N, F)`` evaluation features of the reconstructions.
        labels: ``(N,)`` their classes.
        private_features: ``(M, F)`` evaluation features of the private images.
        private_labels: ``(M,)`` their classes.

    Returns:
        ``(N,)`` float64 distances (``inf`` where the class has no private sample).
    """
    f, p = features.double(), private_features.double()
    d = (f.square().sum(1, keepdim=True) - 2 * f @ p.T + p.square().sum(1)).clamp_min(0)
    d[labels.view(-1, 1) != private_labels.view(1, -1)] = float("inf")
    return d.min(1).values


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (FID's formula).

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with the trace of
    the matrix square root taken as ``sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2)))``.
    """
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle)

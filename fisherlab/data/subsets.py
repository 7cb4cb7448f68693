"""Class-balanced, seeded subsets: :func:`stratified_indices`, the one rule for every cap.

The splits of :func:`~fisherlab.data.load_dataset` are sorted by class, so the
*first* ``n`` samples of a split hold only its first classes (1,000 samples of
``mnist5k:0-4`` are digits 0 and 1 only). Wherever fisherlab caps data whose
labels it can read (``profile(max_samples=...)``, ``TrainConfig.max_train_samples``,
``GANConfig.max_train_samples``), it keeps :func:`stratified_indices` of it
instead. Data whose labels are unknown in advance (a ``DataLoader`` or any
other iterable of batches) is still cut after its first ``n`` samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from fisherlab.data.datasets import ImageDataset
from fisherlab.errors import FisherlabError


def _counts(sizes: list[int], n: int, gen: torch.Generator) -> list[int]:
    """Per-class counts summing to ``n``: as equal as the class sizes allow."""
    counts = [0] * len(sizes)
    left, rest = n, list(range(len(sizes)))
    for c in sorted(rest, key=lambda c: sizes[c]):  # small classes give all they have
        if sizes[c] > left // len(rest):
            break
        counts[c] = sizes[c]
        left -= sizes[c]
        rest.remove(c)
    base, extra = divmod(left, len(rest)) if rest else (0, 0)
    lucky = {rest[i] for i in torch.randperm(len(rest), generator=gen)[:extra].tolist()}
    for c in rest:
        counts[c] = base + (c in lucky)
    return counts


def stratified_indices(labels: Tensor, n: int, seed: int = 0) -> Tensor:
    """Pick ``n`` samples with per-class counts as equal as the class sizes allow.

    The rule (water filling): every class gets the same count ``q``, except
    classes with fewer than ``q`` samples, which give all of theirs; ``q`` is
    the largest count for which the total stays at most ``n``, and the
    ``r < (number of classes left)`` samples still missing go one each to
    ``r`` of the classes with room, drawn with ``seed``. Inside class ``c``
    the samples are a seeded random choice (seed ``seed`` and ``c``) among its
    rows. So the counts depend only on the class sizes and ``seed``, and the
    rows chosen in a class only on that class's rows, in their relative
    order: sorting or interleaving the classes differently picks the same
    samples.

    Args:
        labels: ``(N,)`` integer class labels.
        n: How many samples to keep (``n >= N`` keeps all).
        seed: Seed of the choice.

    Returns:
        Int64 indices into ``labels``, increasing.

    Raises:
        FisherlabError: For ``n < 1`` or labels that are not a 1-d integer tensor.

    Example:
        >>> labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 2)  # sorted by class
        >>> picked = stratified_indices(labels, 7)
        >>> torch.bincount(labels[picked]).tolist()
        [3, 2, 2]
        >>> len(stratified_indices(labels, 100))
        14
    """
    if n < 1:
        raise FisherlabError(f"a subset needs n >= 1 samples, got {n}")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex():
        raise FisherlabError(
            f"stratified subsets need 1-d integer labels, got a {labels.dtype} tensor "
            f"of shape {tuple(labels.shape)}"
        )
    labels = labels.cpu()
    if n >= len(labels):
        return torch.arange(len(labels))
    classes = torch.unique(labels).tolist()  # sorted
    rows = [torch.nonzero(labels == c).flatten() for c in classes]
    counts = _counts([len(r) for r in rows], n, torch.Generator().manual_seed(seed))
    picked = []
    for c, idx, k in zip(classes, rows, counts, strict=True):
        gen = torch.Generator().manual_seed((seed * 1_000_003 + int(c)) % 2**63)
        picked.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return torch.cat(picked).sort().values


def dataset_labels(data: Any) -> Tensor | None:
    """The labels of a dataset, when they can be read without loading its images.

    Known: :class:`~fisherlab.data.ImageDataset` (its ``labels``) and a
    :class:`~torch.utils.data.TensorDataset` of ``(x, y)`` (its second tensor).
    ``None`` for anything else (a ``DataLoader``, an iterable, another
    ``Dataset``), whose cap then keeps the first samples.
    """
    if isinstance(data, ImageDataset):
        return data.labels
    if isinstance(data, TensorDataset) and len(data.tensors) >= 2:
        y = data.tensors[1]
        if y.dim() == 1 and not (y.is_floating_point() or y.is_complex()):
            return y
    return None


def capped_rows(data: Dataset | Any, n: int | None, seed: int = 0) -> Tensor | None:
    """The rows of ``data`` a cap of ``n`` keeps, or ``None`` when it keeps all or cannot tell.

    For data with readable labels (:func:`dataset_labels`) longer than ``n``:
    :func:`stratified_indices`. ``None`` when ``n`` is ``None``, when ``data``
    is no longer than ``n``, or when its labels are unknown (the caller then
    keeps the first ``n`` samples).
    """
    if n is None:
        return None
    labels = dataset_labels(data)
    if labels is None or len(labels) <= n:
        return None
    return stratified_indices(labels, n, seed)

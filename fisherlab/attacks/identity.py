"""The identity losses of model-inversion attacks, per sample, and the term built from them.

An attack's *identity loss* makes the target classify a reconstruction as its
class ``y``. Each loss here maps the target's logits (and, for LOMMA, its
penultimate features) to one loss per sample:

=====================  ==========================================================
``cross-entropy``      ``CE(T(x), y)``: GMI, KEDMI and the white-box baseline
``lomma``              LOMMA (Nguyen et al., CVPR 2023): the negative target
                       logit ``-T(x)_y``, averaged over the target and its
                       distilled surrogates, plus ``w * mean_f (f(x) - mu)^2``
                       on the target's penultimate features ``f`` with ``mu``
                       their mean over public images
``max-margin``         PLG-MI (Yuan et al., AAAI 2023): ``-T(x)_y + max_{k!=y}
                       T(x)_k`` on raw logits, no clamp
=====================  ==========================================================

:class:`IdentityTerm` evaluates an attack's identity loss through the
recorder's network (the target) and, for LOMMA, the surrogates. The part of
the loss that depends on the *target's* parameters,
:meth:`IdentityTerm.recorded`, is what the Fisher recorder takes the Fisher
of: for cross-entropy and max-margin the whole loss; for LOMMA with ``M``
models ``-T(x)_y / M + w * mean_f (f(x) - mu)^2`` (the surrogates' terms do
not depend on the target's parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fisherlab.data.specs import InputSpec


class IdentityLoss(str, Enum):
    """Which identity loss an attack minimises (the ``identity_loss`` column of ``fisher.csv``)."""

    CROSS_ENTROPY = "cross-entropy"
    """``CE(T(x), y)`` (GMI, KEDMI, white-box)."""
    LOMMA = "lomma"
    """Mean negative target logit over target and surrogates, plus the feature regulariser."""
    MAX_MARGIN = "max-margin"
    """``-T(x)_y + max_{k != y} T(x)_k`` (PLG-MI)."""


def negative_logit(logits: Tensor, labels: Tensor) -> Tensor:
    """``-logits[i, y_i]`` per sample: LOMMA's logit loss (``NLLLoss`` on raw logits)."""
    return -logits.gather(1, labels.view(-1, 1)).squeeze(1)


def max_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """PLG-MI's max-margin loss per sample: ``-z_y + max_{k != y} z_k`` on raw logits.

    Example:
        >>> max_margin(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([0]))
        tensor([-1.])
    """
    own = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    own_column = torch.arange(logits.shape[1], device=logits.device) == labels.view(-1, 1)
    others = logits.masked_fill(own_column, float("-inf"))
    return -own + others.max(1).values


def feature_regulariser(features: Tensor, mean: Tensor) -> Tensor:
    """``mean_f (f_i - mu)^2`` per sample: LOMMA's regulariser before its weight."""
    return (features.flatten(1) - mean.to(features)).square().mean(1)


def head_input_hook(head: nn.Module) -> tuple[list[Tensor], Callable[[], None]]:
    """Capture the input of ``head`` (the penultimate features) at every forward call.

    Returns:
        The list the inputs are appended to, and a function removing the hook.
    """
    captured: list[Tensor] = []
    handle = head.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
    return captured, handle.remove


@dataclass
class ModelAugmentation:
    """LOMMA's model augmentation: surrogates distilled from the target, and the feature mean.

    Attributes:
        surrogates: Models of other architectures distilled from the target on
            public data (:func:`fisherlab.attacks.surrogates.distill`), in eval mode.
        feature_mean: The target's mean penultimate feature over public images.
        feature_weight: Weight ``w`` of the feature regulariser.
    """

    surrogates: Sequence[nn.Module]
    feature_mean: Tensor
    feature_weight: float


@dataclass
class IdentityTerm:
    """An attack's identity loss, evaluated through the recorder's network of the target.

    Attributes:
        loss: Which loss.
        network: ``x -> (logits, features or None)``: the recorder's network
            (:meth:`fisherlab.attacks.recorder.FisherRecorder.identity_network`).
        spec: The target's input spec (pixels are normalised with it).
        augmentation: LOMMA's surrogates and feature mean (``lomma`` only).
        surrogate_specs: Each surrogate's input spec.
    """

    loss: IdentityLoss
    network: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    spec: InputSpec
    augmentation: ModelAugmentation | None = None
    surrogate_specs: Sequence[InputSpec] = ()

    @property
    def n_models(self) -> int:
        """The models the logit loss is averaged over (LOMMA: target and surrogates)."""
        if self.augmentation is None:
            return 1
        return 1 + len(self.augmentation.surrogates)

    def __call__(self, pixels: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The per-sample identity loss of images in pixel space, and the target's logits.

        Returns:
            ``(loss (N,), target logits (N, K))``.
        """
        logits, features = self.network(self.spec.normalize(pixels))
        if self.loss is IdentityLoss.CROSS_ENTROPY:
            return F.cross_entropy(logits, labels, reduction="none"), logits
        if self.loss is IdentityLoss.MAX_MARGIN:
            return max_margin(logits, labels), logits
        aug = self.augmentation
        assert aug is not None
        total = negative_logit(logits, labels)
        for model, spec in zip(aug.surrogates, self.surrogate_specs, strict=True):
            total = total + negative_logit(model(spec.normalize(pixels)), labels)
        if aug.feature_weight == 0:
            return total / self.n_models, logits
        assert features is not None
        reg = feature_regulariser(features, aug.feature_mean)
        return total / self.n_models + aug.feature_weight * reg, logits

    def recorded(self) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
        """The per-sample loss of the target's outputs alone, as the recorder takes its Fisher.

        ``(logits, labels, features) -> (N,)``: the identity loss less the
        terms that do not depend on the target's parameters (see the module docs).
        """
        if self.loss is IdentityLoss.CROSS_ENTROPY:
            return lambda logits, labels, features: F.cross_entropy(
                logits, labels, reduction="none"
            )
        if self.loss is IdentityLoss.MAX_MARGIN:
            return lambda logits, labels, features: max_margin(logits, labels)
        aug = self.augmentation
        assert aug is not None
        m, weight, mean = self.n_models, aug.feature_weight, aug.feature_mean

        def lomma(logits: Tensor, labels: Tensor, features: Tensor | None) -> Tensor:
            if weight == 0:
                return negative_logit(logits, labels) / m
            assert features is not None
            reg = feature_regulariser(features, mean)
            return negative_logit(logits, labels) / m + weight * reg

        return lomma


def feature_mean(model: nn.Module, head: nn.Module, inputs: Tensor, batch: int = 256) -> Tensor:
    """The mean of ``model``'s head input over ``inputs`` (already normalised), float32.

    LOMMA's ``mu``: the authors average the target's penultimate features over
    up to 5,000 public images.
    """
    captured, remove = head_input_hook(head)
    total, count = None, 0
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch):
                captured.clear()
                model(inputs[start : start + batch])
                f = captured[0].flatten(1).double()
                total = f.sum(0) if total is None else total + f.sum(0)
                count += f.shape[0]
    finally:
        remove()
    assert total is not None
    return (total / count).float()

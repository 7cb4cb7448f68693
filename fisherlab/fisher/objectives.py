"""Per-sample objectives and the label sampling of the true Fisher.

An objective maps a batch of model outputs and targets to one loss per sample,
``objective(output, target) -> Tensor[N]``. The Fisher information of
:func:`fisherlab.profile` is taken of these per-sample losses, so any callable
of that form plugs in; the built-in ones are:

==================  ======================================================
``classification``  cross-entropy ``-log softmax(f(x))_y`` (the training
                    loss; also the MI identity loss ``CE(T(G(z)), y)``)
``logit``           negative target logit ``-f(x)_y`` (the identity loss
                    of LOMMA-style attacks)
==================  ======================================================

For the true (model) Fisher the targets are drawn from the model's predictive
distribution ``softmax(f(x))``. The uniform numbers behind each draw depend
only on ``(seed, global sample index, MC draw)``, so results do not depend on
the batch size or on how samples are sharded across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor

from fisherlab.errors import FisherlabError

Objective = Callable[[Tensor, Tensor], Tensor]


def classification_loss(output: Tensor, target: Tensor) -> Tensor:
    """Per-sample cross-entropy ``-log softmax(output)_target``."""
    return F.cross_entropy(output, target, reduction="none")


def logit_loss(output: Tensor, target: Tensor) -> Tensor:
    """Per-sample negative target logit ``-output_target``."""
    return -output.gather(1, target.view(-1, 1)).squeeze(1)


OBJECTIVES: dict[str, Objective] = {
    "classification": classification_loss,
    "logit": logit_loss,
}


def _per_sample(objective: Objective) -> Objective:
    """``objective`` checked at every call to return shape ``(N,)`` for ``N`` output rows.

    A loss that reduces the batch (``reduction="mean"``), keeps a trailing
    axis, or closes over per-batch tensors (weights of length ``N``, which
    broadcast silently when the engine calls it on fewer rows) would give a
    wrong Fisher without an error; this makes each of them one.
    """

    def checked(output: Tensor, target: Tensor) -> Tensor:
        losses = objective(output, target)
        rows = output.shape[0]
        if not isinstance(losses, Tensor) or tuple(losses.shape) != (rows,):
            got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise FisherlabError(
                f"the objective returned {got} for {rows} output rows; it must return one "
                f"loss per sample, shape ({rows},), computed from that sample's row alone "
                "(use reduction='none', and no tensors captured from a whole batch)"
            )
        return losses

    checked.__name__ = getattr(objective, "__name__", "custom")
    return checked


class FisherType(str, Enum):
    """Which labels the Fisher is taken with."""

    EMPIRICAL = "empirical"
    """The given labels: ``F = 1/N sum_i (dL(x_i, y_i)/dtheta)^2``."""
    TRUE = "true"
    """Labels drawn from ``softmax(f(x_i))``, ``mc_samples`` draws per input."""


def resolve_objective(objective: str | Objective) -> tuple[str, Objective]:
    """Return ``(name, callable)`` for a built-in name or a callable.

    Raises:
        FisherlabError: For an unknown name. A callable is wrapped so that it
            refuses, when called, to return anything but one loss per row.
    """
    if callable(objective):
        return getattr(objective, "__name__", "custom"), _per_sample(objective)
    if objective not in OBJECTIVES:
        raise FisherlabError(
            f"unknown objective {objective!r}: expected one of {', '.join(OBJECTIVES)} "
            "or a callable (output, target) -> per-sample loss"
        )
    return objective, OBJECTIVES[objective]


def resolve_fisher(fisher: str | FisherType) -> FisherType:
    """Parse ``"empirical"`` / ``"true"``.

    Raises:
        FisherlabError: For anything else.
    """
    try:
        return FisherType(fisher)
    except ValueError:
        raise FisherlabError(f"unknown fisher {fisher!r}: expected 'empirical' or 'true'") from None


_BLOCK = 1024


def uniforms(seed: int, start: int, count: int, mc_samples: int) -> Tensor:
    """Uniform numbers in [0, 1) for samples ``start .. start+count-1``, float64.

    Blocks of 1,024 consecutive global indices share one generator seeded by
    ``(seed, block)``, so the numbers of a sample never depend on batching.

    Returns:
        A ``(count, mc_samples)`` tensor.
    """
    out = torch.empty(count, mc_samples, dtype=torch.float64)
    pos = 0
    while pos < count:
        index = start + pos
        block, offset = divmod(index, _BLOCK)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + block)
        values = torch.rand(_BLOCK, mc_samples, generator=gen, dtype=torch.float64)
        take = min(_BLOCK - offset, count - pos)
        out[pos : pos + take] = values[offset : offset + take]
        pos += take
    return out


def sample_labels(logits: Tensor, u: Tensor) -> Tensor:
    """Draw labels from ``softmax(logits)`` by inverting its CDF at ``u``.

    Args:
        logits: ``(N, K)`` model outputs.
        u: ``(N,)`` uniform numbers in [0, 1).

    Returns:
        ``(N,)`` int64 labels.
    """
    cdf = torch.softmax(logits.detach().double(), dim=1).cumsum(1)
    labels = torch.searchsorted(cdf, u.to(cdf.device).reshape(-1, 1).contiguous()).view(-1)
    return labels.clamp_(max=logits.shape[1] - 1)

"""The fallback Fisher engine: per-sample gradients with ``torch.func``.

For parameters whose modules have no BackPACK fast path (LayerNorm,
multi-head attention, class tokens and position embeddings, grouped
convolutions, ...), the per-sample gradients ``g_i = dL_i/dtheta`` are computed
as ``vmap(grad(L))`` over the batch with ``torch.func.functional_call`` on an
unhooked copy of the model, and reduced to ``||g_i||^2`` and ``sum_i g_i^2``.
Only the requested parameters are differentiated; the others are constants.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

_CHUNK_BYTES = 256 * 2**20


def functorch_pass(
    model: nn.Module,
    names: list[str],
    x: Tensor,
    targets: Tensor,
    objective: Callable[[Tensor, Tensor], Tensor],
    diagonal: bool,
) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Per-sample squared norms (and summed squares) for the named parameters.

    Args:
        model: An eval-mode model without BackPACK hooks.
        names: Parameter names to differentiate.
        x: Input batch ``(N, ...)``.
        targets: Targets ``(N,)`` passed to ``objective``.
        objective: ``(output, target) -> per-sample losses``.
        diagonal: Also return ``sum_i g_i^2``.

    Returns:
        ``{name: (sq_norms (N,), diag or None)}``.
    """
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    chosen = {n: params[n] for n in names}
    fixed = {n: p for n, p in params.items() if n not in chosen}

    def one_loss(theta: dict[str, Tensor], xi: Tensor, ti: Tensor) -> Tensor:
        out = functional_call(model, {**fixed, **theta, **buffers}, (xi.unsqueeze(0),))
        return objective(out, ti.unsqueeze(0)).sum()

    per_sample_numel = sum(p.numel() for p in chosen.values()) * 4
    chunk = max(1, _CHUNK_BYTES // max(1, per_sample_numel * x.element_size()))
    with warnings.catch_warnings():
        # torch has no batching rule for CPU flash attention yet and says so per call
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        grads = vmap(grad(one_loss), in_dims=(None, 0, 0), chunk_size=chunk)(chosen, x, targets)
    out: dict[str, tuple[Tensor, Tensor | None]] = {}
    for n, g in grads.items():
        squared = g.square()
        out[n] = (squared.reshape(len(squared), -1).sum(1), squared.sum(0) if diagonal else None)
    return out


@torch.no_grad()
def forward_logits(model: nn.Module, x: Tensor) -> Tensor:
    """Model outputs without gradients (for sampling true-Fisher labels)."""
    return model(x)

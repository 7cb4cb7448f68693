"""Brute-force reference for :func:`fisherlab.profile`: one autograd call per sample.

Every fast path is tested against this loop in float64. It shares nothing with
the engines but the definitions: the layer map, the objectives and the
true-Fisher label draws (:func:`fisherlab.fisher.objectives.uniforms`), so both see
the same labels. For each sample ``i`` and draw ``m`` it runs the model on
``x_i`` alone, takes ``g = dL(f(x_i), y_im)/dtheta`` with
``torch.autograd.grad`` and adds ``||g||^2`` (and ``g^2``) per parameter.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from fisherlab.fisher.engine import FisherSums, fisher_frame
from fisherlab.fisher.objectives import (
    FisherType,
    Objective,
    resolve_fisher,
    resolve_objective,
    sample_labels,
    uniforms,
)
from fisherlab.fisher.profile import input_dataset, iterate_data
from fisherlab.models.layers import layers


def reference_profile(
    model: nn.Module,
    data: Any,
    objective: str | Objective = "classification",
    fisher: str = "empirical",
    *,
    max_samples: int | None = None,
    mc_samples: int = 1,
    seed: int = 0,
    diagonal: bool = False,
    split: str | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Tensor]]:
    """The per-layer Fisher frame by a per-sample loop (``engine="reference"``).

    Args:
        model: The model (a copy is used, in eval mode).
        data: As for :func:`fisherlab.profile`.
        objective: As for :func:`fisherlab.profile`.
        fisher: ``"empirical"`` or ``"true"``.
        max_samples: Use only the first this many samples.
        mc_samples: Label draws per input for the true Fisher.
        seed: Seed of the draws.
        diagonal: Also return the diagonal.
        split: As for :func:`fisherlab.profile`.

    Returns:
        The frame, or ``(frame, diagonal)``.
    """
    name, loss = resolve_objective(objective)
    kind = resolve_fisher(fisher)
    draws = mc_samples if kind is FisherType.TRUE else 1
    work = copy.deepcopy(model).eval()
    params = dict(work.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    dtype = next(iter(params.values())).dtype
    sums = FisherSums(
        {n: torch.zeros((), dtype=torch.float64) for n in params},
        {n: torch.zeros(p.shape, dtype=torch.float64) for n, p in params.items()}
        if diagonal
        else None,
    )
    source = input_dataset(data, model, split)
    for start, x, y in iterate_data(source, 64, max_samples):
        u = uniforms(seed, start, len(y), draws) if kind is FisherType.TRUE else None
        for i in range(len(y)):
            for m in range(draws):
                out = work(x[i : i + 1].to(dtype))
                target = y[i : i + 1] if u is None else sample_labels(out, u[i : i + 1, m])
                value = loss(out, target).sum()
                grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
                for (n, _), g in zip(params.items(), grads, strict=True):
                    if g is not None:
                        sums.add(n, g.square().sum().view(1), g.square())
                sums.n_terms += 1
            sums.n_samples += 1
    frame = fisher_frame(
        layers(model), sums, dict.fromkeys(params, "reference"), name, kind.value, draws
    )
    if not diagonal:
        return frame
    assert sums.diag is not None
    return frame, {n: d / sums.n_terms for n, d in sums.diag.items()}

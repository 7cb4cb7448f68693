"""Brute-force reference for :func:`fisherlab.profile`: one autograd call per sample.

The engines are tested against this loop in float64, so it shares nothing with
them but the definitions: the layer map (:func:`fisherlab.models.layers.layers`)
and the objectives with the true-Fisher label draws
(:mod:`fisherlab.fisher.objectives`), so both see the same labels, and the
rule that picks the samples of a ``max_samples`` cap
(:func:`fisherlab.data.capped_rows`), so both see the same samples. The data
loop, the sums and the frame are its own: a bug in the engine's accumulation,
batching or row building cannot hide in both.

For each sample ``i`` (in data order, counted from 0) it runs a private copy of
the model on ``x_i`` alone and, for each label draw ``m``, takes
``g = dL(f(x_i), y_im)/dtheta`` with one ``torch.autograd.grad`` call and adds
``||g||^2`` (and ``g^2``) per parameter in float64. It works on any
``nn.Module``:

* a shared (tied) parameter is one parameter, named by its first name in
  ``model.named_parameters()``; its gradient is the full one (the sum over
  its uses), as autograd gives it;
* parameters the objective does not reach (0-dim ones included) get zero;
* integer inputs (token ids) are passed as they are; only floating inputs are
  cast to the model's dtype;
* the model is deep-copied (also with ``torch.nn.utils.weight_norm``'s
  computed weights) and left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from fisherlab.data.datasets import load_all, load_dataset
from fisherlab.data.sources import DataSpec
from fisherlab.data.subsets import capped_rows
from fisherlab.errors import FisherlabError
from fisherlab.fisher.objectives import (
    FisherType,
    Objective,
    resolve_fisher,
    resolve_objective,
    sample_labels,
    uniforms,
)
from fisherlab.models.layers import layers
from fisherlab.models.meta import model_meta

REFERENCE_COLUMNS = [
    "index",
    "name",
    "kind",
    "n_params",
    "trace",
    "mean",
    "share",
    "objective",
    "fisher",
    "engine",
    "n_samples",
    "mc_samples",
]
"""The columns of the reference frame, written out here (the tests check that they
equal :data:`fisherlab.fisher.engine.COLUMNS`)."""


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares no tensor with it.

    Non-leaf tensors kept as plain module attributes (the weight that
    ``torch.nn.utils.weight_norm`` recomputes before every forward) cannot be
    deep-copied; they are copied detached, and the copy's hooks recompute them.

    Args:
        model: Any module.

    Returns:
        The copy.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def _source(data: Any, model: nn.Module, split: str | None) -> Dataset | DataLoader:
    """The dataset or loader of ``data``; a dataset string is loaded with the model's input spec.

    Raises:
        FisherlabError: For an unknown split or an unsupported kind of data.
    """
    if isinstance(data, DataLoader | Dataset):
        return data
    if isinstance(data, str | DataSpec):
        spec = DataSpec.parse(data)
        input_spec = model_meta(model).input_spec
        chosen = split or ("all" if spec.source == "npz" else "train")
        if chosen == "all":
            return load_all(spec, input_spec=input_spec)
        if chosen not in ("train", "test"):
            raise FisherlabError(f"split must be train, test or all, got {chosen!r}")
        splits = load_dataset(spec, input_spec=input_spec)
        return splits.train if chosen == "train" else splits.test
    raise FisherlabError(
        f"data must be a dataset string, a Dataset or a DataLoader, got {type(data).__name__}"
    )


def _pair(item: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(item, list | tuple) or len(item) < 2:
        raise FisherlabError("the data must yield (x, y) pairs")
    return torch.as_tensor(item[0]), torch.as_tensor(item[1])


def _samples(source: Dataset | DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield single ``(x_i, y_i)`` samples (without a batch dimension) in data order."""
    if isinstance(source, DataLoader):
        for batch in source:
            x, y = _pair(batch)
            for i in range(len(y)):
                yield x[i], y[i]
        return
    try:
        count = len(source)  # type: ignore[arg-type]
    except TypeError:  # an iterable dataset
        for item in source:  # type: ignore[attr-defined]
            yield _pair(item)
        return
    for i in range(count):
        yield _pair(source[i])


def _model_input(x: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x`` as a batch of one on ``device``; floating inputs in the model's dtype."""
    x = x.unsqueeze(0).to(device)
    return x.to(dtype) if x.is_floating_point() else x


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
        model: The model (a private copy is used, in eval mode; the model
            itself is not touched).
        data: A ``Dataset`` of ``(x, y)`` pairs, a ``DataLoader`` of ``(x, y)``
            batches, or a dataset string (loaded with the model's input spec).
        objective: ``"classification"``, ``"logit"`` or a callable
            ``(output, target) -> per-sample losses``.
        fisher: ``"empirical"`` (given labels) or ``"true"`` (labels drawn with
            :func:`~fisherlab.fisher.objectives.sample_labels`).
        max_samples: Use only this many samples, the same ones as
            :func:`fisherlab.profile`: a class-balanced subset
            (:func:`fisherlab.data.capped_rows`, drawn with ``seed``) of data
            whose labels can be read, else the first this many.
        mc_samples: Label draws per input for the true Fisher.
        seed: Seed of the draws and of the ``max_samples`` subset.
        diagonal: Also return the per-parameter diagonal.
        split: For dataset strings: ``"train"``, ``"test"`` or ``"all"``
            (default ``"all"`` for ``npz``, else ``"train"``).

    Returns:
        The frame (columns :data:`REFERENCE_COLUMNS`), or ``(frame, diagonal)``
        with ``diagonal={parameter name: float64 tensor}``.

    Raises:
        FisherlabError: For unsupported data, an unknown objective or Fisher
            type, a model without parameters, or empty data.

    Example:
        >>> from torch import nn
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.ones(2, 3), torch.tensor([0, 1]))
        >>> frame = reference_profile(nn.Linear(3, 2), data)
        >>> frame[["name", "n_params", "engine", "n_samples"]].values.tolist()
        [['', 8, 'reference', 2]]
    """
    if max_samples is not None and max_samples < 1:
        raise FisherlabError(f"max_samples must be >= 1, got {max_samples}")
    if mc_samples < 1:
        raise FisherlabError(f"mc_samples must be >= 1, got {mc_samples}")
    objective_name, loss = resolve_objective(objective)
    kind = resolve_fisher(fisher)
    draws = mc_samples if kind is FisherType.TRUE else 1
    model_layers = layers(model)
    source = _source(data, model, split)
    rows = capped_rows(source, max_samples, seed)  # the subset rule is shared with profile
    if rows is not None:
        source = Subset(source, rows.tolist())

    work = private_copy(model).eval()
    params = dict(work.named_parameters())  # a tied parameter once, by its first name
    for p in params.values():
        p.requires_grad_(True)
    first = next(iter(params.values()))
    floating = [p.dtype for p in params.values() if p.is_floating_point()]
    dtype, device = (floating[0] if floating else torch.get_default_dtype()), first.device

    sq = {n: torch.zeros((), dtype=torch.float64) for n in params}
    diag = {n: torch.zeros(p.shape, dtype=torch.float64) for n, p in params.items()}
    n_samples = n_terms = 0
    for index, (x, y) in enumerate(_samples(source)):
        if max_samples is not None and index >= max_samples:
            break
        out = work(_model_input(x, dtype, device))
        u = uniforms(seed, index, 1, draws)[0] if kind is FisherType.TRUE else None
        for m in range(draws):
            target = y.unsqueeze(0).to(device) if u is None else sample_labels(out, u[m : m + 1])
            value = loss(out, target).sum()
            if value.requires_grad:
                grads = torch.autograd.grad(
                    value, list(params.values()), retain_graph=m < draws - 1, allow_unused=True
                )
            else:  # nothing trainable reached
                grads = (None,) * len(params)
            for name, g in zip(params, grads, strict=True):
                if g is None:
                    continue
                g2 = g.detach().to("cpu", torch.float64).square()
                sq[name] += g2.sum()
                if diagonal:
                    diag[name] += g2
            n_terms += 1
        n_samples += 1
    if n_terms == 0:
        raise FisherlabError("no samples were profiled: the data is empty")

    rows = []
    for layer in model_layers:
        trace = sum(float(sq[p]) for p in layer.params) / n_terms
        rows.append(
            {
                "index": layer.index,
                "name": layer.name,
                "kind": layer.kind,
                "n_params": layer.n_params,
                "trace": trace,
                "mean": trace / layer.n_params if layer.n_params else 0.0,
                "share": 0.0,
                "objective": objective_name,
                "fisher": kind.value,
                "engine": "reference",
                "n_samples": n_samples,
                "mc_samples": draws,
            }
        )
    frame = pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
    total = float(frame["trace"].sum())
    if total > 0:
        frame["share"] = frame["trace"] / total
    if not diagonal:
        return frame
    return frame, {n: d / n_terms for n, d in diag.items()}

r"""Per-layer Fisher information of a model on data: :func:`profile`.

:func:`profile` takes a model and data (a dataset string, a ``Dataset`` or a
``DataLoader``), feeds the batches to a :class:`~fisherlab.fisher.engine.FisherEngine`
(one process, or every ``world_size``-th batch per process under
``torch.distributed``) and returns the tidy per-layer frame: trace, mean per
parameter and share of each layer (see :mod:`fisherlab.fisher.engine` for the
definitions and the engines).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from fisherlab._device import check_workers
from fisherlab._progress import tqdm
from fisherlab.data.datasets import ImageDataset, iterate_batches, load_all, load_dataset
from fisherlab.data.sources import DataSpec
from fisherlab.data.subsets import capped_rows
from fisherlab.errors import FisherlabError
from fisherlab.fisher.engine import FisherEngine
from fisherlab.fisher.objectives import Objective
from fisherlab.models.meta import check_data_classes, model_meta


def input_dataset(data: Any, model: nn.Module, split: str | None) -> Dataset | DataLoader:
    """The dataset or loader that ``data`` names, prepared with the model's input spec.

    A named dataset must have the model's classes, label by label
    (:func:`fisherlab.models.meta.check_data_classes`).

    Raises:
        FisherlabError: For an unknown split, an unsupported kind of data, or
            data of other classes than the model's.
    """
    if isinstance(data, DataLoader | Dataset):
        if isinstance(data, ImageDataset):
            check_data_classes(data.class_names, model, "the data", same_count=False)
        return data
    if isinstance(data, str | DataSpec):
        spec = DataSpec.parse(data)
        input_spec = model_meta(model).input_spec
        chosen = split or ("all" if spec.source == "npz" else "train")
        if chosen not in ("train", "test", "all"):
            raise FisherlabError(f"split must be train, test or all, got {chosen!r}")
        if chosen == "all":
            dataset = load_all(spec, input_spec=input_spec)
        else:
            splits = load_dataset(spec, input_spec=input_spec)
            dataset = splits.train if chosen == "train" else splits.test
        check_data_classes(dataset.class_names, model, str(spec), same_count=False)
        return dataset
    raise FisherlabError(
        f"data must be a dataset string, a Dataset or a DataLoader, got {type(data).__name__}"
    )


def iterate_data(
    data: Dataset | DataLoader,
    batch_size: int,
    max_samples: int | None,
    workers: int = 0,
    seed: int = 0,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(global_start_index, x, y)`` batches of at most ``max_samples`` samples.

    A dataset whose labels can be read (:func:`fisherlab.data.dataset_labels`:
    an :class:`~fisherlab.data.ImageDataset` or a ``TensorDataset``) is cut
    to the class-balanced subset :func:`fisherlab.data.stratified_indices`
    of ``max_samples`` samples, drawn with ``seed``, in dataset order; any
    other data (a ``DataLoader``, another ``Dataset``) is cut after its first
    ``max_samples`` samples. ``workers`` data-loading processes read datasets
    that are not in memory (a ``DataLoader`` brings its own).
    """
    rows = capped_rows(data, max_samples, seed)
    if isinstance(data, DataLoader):
        batches: Any = iter(data)
    elif isinstance(data, ImageDataset):
        order = rows if rows is not None else torch.arange(len(data))
        batches = iterate_batches(data, order, batch_size, workers=workers)
    else:
        chosen = Subset(data, rows.tolist()) if rows is not None else data
        batches = iter(
            DataLoader(chosen, batch_size=batch_size, shuffle=False, num_workers=workers)
        )
    start = 0
    for batch in batches:
        if not isinstance(batch, list | tuple) or len(batch) < 2:
            raise FisherlabError("the data must yield (x, y) pairs")
        x, y = batch[0], torch.as_tensor(batch[1])
        if max_samples is not None:
            if start >= max_samples:
                return
            keep = max_samples - start
            x, y = x[:keep], y[:keep]
        yield start, x, y
        start += len(y)


def _data_length(data: Dataset | DataLoader, max_samples: int | None) -> int | None:
    try:
        n = len(data.dataset) if isinstance(data, DataLoader) else len(data)  # type: ignore[arg-type]
    except TypeError:
        return None
    return min(n, max_samples) if max_samples is not None else n


def _check_input(x: Tensor, model: nn.Module) -> None:
    spec = model_meta(model).input_spec
    if spec is not None and tuple(x.shape[1:]) != (spec.channels, spec.size, spec.size):
        raise FisherlabError(
            f"the data has inputs of shape {tuple(x.shape[1:])} but the model expects "
            f"{(spec.channels, spec.size, spec.size)} (its checkpoint's input spec)"
        )


def _check_label_range(source: Dataset | DataLoader, fe: FisherEngine, x: Tensor) -> None:
    """Refuse labels the model has no output for, over the whole dataset (not per batch)."""
    if not isinstance(source, ImageDataset) or fe.fisher.value != "empirical" or not len(source):
        return
    with torch.no_grad():
        out = fe.plain(x[:1].to(fe.device, fe.dtype))
    if out.dim() != 2:
        return
    low, high = int(source.labels.min()), int(source.labels.max())
    if low < 0 or high >= out.shape[1]:
        raise FisherlabError(
            f"the data's labels range over {low}..{high} but the model has {out.shape[1]} "
            "outputs: the data's classes do not fit the model"
        )


def profile(
    model: nn.Module,
    data: Any,
    objective: str | Objective = "classification",
    fisher: str = "empirical",
    *,
    batch_size: int = 64,
    max_samples: int | None = None,
    device: str | torch.device = "cpu",
    mc_samples: int = 1,
    seed: int = 0,
    diagonal: bool = False,
    engine: str = "auto",
    split: str | None = None,
    progress: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    workers: int = 0,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Tensor]]:
    """Per-layer Fisher information (trace, mean per parameter, share) of a per-sample objective.

    Under ``torch.distributed`` (e.g. ``torchrun``) each process takes every
    ``world_size``-th batch and the sums are all-reduced; every process
    returns the same frame.

    Args:
        model: A classifier (left exactly as it was).
        data: A dataset string (prepared with the model's input spec), a
            ``Dataset`` or a ``DataLoader`` of ``(x, y)`` pairs (a loader's own
            batch size is used).
        objective: ``"classification"``, ``"logit"`` or a callable
            ``(output, target) -> per-sample losses``.
        fisher: ``"empirical"`` (given labels) or ``"true"`` (sampled labels).
        batch_size: Samples per pass.
        max_samples: Profile only this many samples: a class-balanced seeded
            subset (:func:`fisherlab.data.stratified_indices`, drawn with
            ``seed``) of a dataset string, an
            :class:`~fisherlab.data.ImageDataset` or a ``TensorDataset``;
            the *first* this many of a ``DataLoader`` or another ``Dataset``,
            whose labels are not known in advance.
        device: Where to compute.
        mc_samples: Label draws per input for ``fisher="true"``.
        seed: Seed of those draws and of the ``max_samples`` subset.
        diagonal: Also return the per-parameter diagonal.
        engine: ``"auto"``, ``"backpack"`` or ``"functorch"``.
        split: For dataset strings: ``"train"``, ``"test"`` or ``"all"``
            (default ``"all"`` for ``npz``, else ``"train"``).
        progress: Show a progress bar over batches.
        on_batch: Called with ``(samples_done, total or -1)`` after each batch.
        workers: Data-loading processes for datasets that are not in memory
            (image folders; 0: this one).

    Returns:
        The frame (columns :data:`~fisherlab.fisher.engine.COLUMNS`; which
        engine computed each parameter, and why, is in
        ``frame.attrs["engines"]`` as the records of
        :meth:`FisherEngine.explain`), or
        ``(frame, diagonal)`` with
        ``diagonal={param_name: tensor}`` when ``diagonal=True``.

    Raises:
        FisherlabError: For data that does not fit the model, empty data, a
            non-finite objective or an unsupported module.

    Example:
        >>> import fisherlab as fl
        >>> model = fl.build_model("target_cnn", num_classes=10)
        >>> frame = fl.profile(model, "mnist5k", max_samples=32)
        >>> len(frame), round(float(frame["share"].sum()), 6)
        (6, 1.0)
    """
    if batch_size < 1:
        raise FisherlabError(f"batch_size must be >= 1, got {batch_size}")
    if max_samples is not None and max_samples < 1:
        raise FisherlabError(f"max_samples must be >= 1, got {max_samples}")
    source = input_dataset(data, model, split)
    total = _data_length(source, max_samples)
    if total == 0:
        raise FisherlabError("the data is empty: nothing to profile")
    fe = FisherEngine(model, objective, fisher, mc_samples, seed, engine, diagonal, device)
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    n_batches = (
        math.ceil(total / batch_size) if total and not isinstance(source, DataLoader) else None
    )
    bar = tqdm(
        total=n_batches,
        disable=None if progress and rank == 0 else True,
        unit="batch",
        desc="profile",
    )
    check_workers(workers)
    batches = iterate_data(source, batch_size, max_samples, workers, seed)
    for k, (start, x, y) in enumerate(batches):
        if k == 0:
            _check_input(x, model)
            _check_label_range(source, fe, x)
        if k % world == rank:
            try:
                fe.add_batch(x, y, start, k)
            except RuntimeError as exc:
                raise FisherlabError(
                    f"the model failed on batch {k} (inputs {tuple(x.shape)}): "
                    f"{' '.join(str(exc).split())[:200]}"
                ) from None
        bar.update(1)
        if on_batch is not None:
            on_batch(start + len(y), total if total is not None else -1)
    bar.close()
    if distributed:
        fe.sums.all_reduce()
        engines = [None] * world
        dist.all_gather_object(engines, fe.engines)
        for other in engines:
            for p, e in (other or {}).items():
                if e == "functorch":
                    fe.engines[p] = e
    frame = fe.frame()
    frame.attrs["engines"] = fe.explain().to_dict("records")
    return (frame, fe.diagonal_dict()) if diagonal else frame

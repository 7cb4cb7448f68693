"""Training a model you hold: :func:`fit`, the module-and-loader form of :func:`fisherlab.train`.

:func:`fisherlab.train` with a :class:`~fisherlab.training.train.TrainConfig`
runs fisherlab's reproducible, cached recipe on a named dataset. :func:`fit`
takes what a user has instead: an ``nn.Module`` (or a model spec or file), and
data as a dataset string, a ``Dataset`` or a ``DataLoader``. It freezes the
layers below ``freeze_boundary`` (or all but ``train_layers``), keeps their
BatchNorm in eval mode (:func:`~fisherlab.training.train.training_mode`),
trains the rest with SGD on the cross-entropy, and refuses non-finite losses
or parameters with a one-line error naming the batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fisherlab._device import resolve_device
from fisherlab._progress import tqdm
from fisherlab.data.chance import natural_accuracy_warning
from fisherlab.data.datasets import load_dataset
from fisherlab.errors import FisherlabError, TrainingDiverged
from fisherlab.models.checkpoint import save_model
from fisherlab.models.layers import check_freeze_boundary, layers, resolve_layer_indices
from fisherlab.models.meta import model_meta
from fisherlab.models.source import open_model
from fisherlab.training.accuracy import natural_accuracy
from fisherlab.training.freezing import freeze, training_mode


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: The trained model (eval mode), with its metadata.
        history: One row per epoch: ``epoch``, ``train_loss``,
            ``train_accuracy``, ``natural_accuracy``, ``seconds``, ``checkpoint``,
            then the epoch means of the defense's loss parts (e.g. ``ce``,
            ``kl``; none without a defense).
        frozen_layers: Indices of the layers kept frozen.
        trainable_layers: Indices of the layers trained.
        n_trainable_params: |theta_C|, the number of parameters trained.
        checkpoints: Intermediate and final checkpoint paths written.
        warnings: One line each when the result means little (a final
            natural accuracy near chance, :mod:`fisherlab.data.chance`).
    """

    model: nn.Module
    history: pd.DataFrame
    frozen_layers: list[int]
    trainable_layers: list[int]
    n_trainable_params: int
    checkpoints: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _loader(data: Dataset | DataLoader, batch_size: int, seed: int) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    return DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


def _frozen(model: nn.Module, boundary: int | None, train_layers: Sequence[int] | None) -> list:
    n = len(layers(model))
    if boundary is not None and train_layers is not None:
        raise FisherlabError("give freeze_boundary or train_layers, not both")
    if boundary is not None:
        return list(range(check_freeze_boundary(boundary, n)))
    if train_layers is not None:
        trained = set(resolve_layer_indices(list(train_layers), n)) | {n - 1}
        return [i for i in range(n) if i not in trained]
    return []


def fit(
    model: nn.Module | str | Path,
    data: str | Dataset | DataLoader,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    freeze_boundary: int | None = None,
    train_layers: Sequence[int] | None = None,
    test_data: Dataset | None = None,
    seed: int = 0,
    weights: str | Path | None = None,
    save_to: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
) -> TrainResult:
    """Train ``model`` on ``data`` with the layers below ``freeze_boundary`` frozen.

    Args:
        model: An ``nn.Module`` (trained in place, head as it is), a model
            file, or a model spec (built for a dataset string's classes).
        data: A dataset string (its train split; the test split measures
            natural accuracy), a ``Dataset`` of ``(x, y)``, or a ``DataLoader``.
        epochs: Passes over ``data``.
        batch_size: For a dataset string or ``Dataset``.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        freeze_boundary: Freeze layers ``< b`` (:func:`fisherlab.layer_map`).
        train_layers: Or train only these layers (and the head).
        test_data: Held-out ``(x, y)`` data for natural accuracy (default: a
            dataset string's test split, else none).
        seed: Seeds the shuffling and the optimiser's randomness.
        weights: A state dict for a spec ``model``.
        save_to: Save the trained model here (it must know how it is
            rebuilt: a fisherlab or spec-built model).
        device: Where to train (``None``/``"auto"``: CUDA when available).
        progress: Show a progress bar.
        trust_pickle: Let a model file be a pickle or TorchScript.

    Returns:
        The trained model (eval mode) and one history row per epoch.

    Raises:
        FisherlabError: For bad boundaries, a non-finite loss or parameter, or
            a ``save_to`` the model cannot be saved to.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> data = TensorDataset(torch.randn(32, 1, 4, 4), torch.arange(32) % 2)
        >>> result = fit(net, data, freeze_boundary=1, progress=False)
        >>> result.frozen_layers, bool(net[1].weight.requires_grad)
        ([0], True)
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise FisherlabError(f"{name} must be a positive integer, got {value!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise FisherlabError(f"lr must be positive and finite, got {lr}")
    splits = load_dataset(data) if isinstance(data, str) else None
    if splits is not None:
        model = open_model(
            model,
            weights=weights,
            num_classes=splits.num_classes,
            input_spec=splits.input_spec,
            trust_pickle=trust_pickle,
        )
        spec = model_meta(model).input_spec
        if spec is not None and spec != splits.input_spec:
            splits = load_dataset(data, input_spec=spec)
        train_set: Dataset | DataLoader = splits.train
        test_data = test_data if test_data is not None else splits.test
        if model_meta(model).class_names is None:
            model_meta(model).class_names = list(splits.class_names)
    else:
        model = open_model(model, weights=weights, trust_pickle=trust_pickle)
        train_set = data
    if save_to is not None and model_meta(model).arch is None:
        raise FisherlabError(
            "save_to= needs a model that records how it is rebuilt (a fisherlab or spec-built "
            "model); save yours with fisherlab.save_model(model, path, spec=...) instead"
        )
    device = resolve_device(device)
    model.to(device)
    frozen = _frozen(model, freeze_boundary, train_layers)
    frozen_modules = freeze(model, frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise FisherlabError("every parameter is frozen: lower freeze_boundary")
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    loader = _loader(train_set, batch_size, seed)
    rows = []
    bar = tqdm(total=epochs * len(loader), disable=None if progress else True, unit="batch")
    try:
        for epoch in range(1, epochs + 1):
            start, total, correct, seen = time.perf_counter(), 0.0, 0, 0
            with training_mode(model, frozen_modules):
                for batch, (x, y) in enumerate(loader):
                    x, y = x.to(device), y.to(device)
                    logits = model(x)
                    loss = nn.functional.cross_entropy(logits, y)
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"the training loss became {loss.item()} at epoch {epoch}, batch "
                            f"{batch}: lower the learning rate (now {lr})"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if not all(bool(torch.isfinite(p).all()) for p in params):
                        raise TrainingDiverged(
                            f"the parameters became non-finite after the step at epoch {epoch}, "
                            f"batch {batch}: lower the learning rate (now {lr})"
                        )
                    total += loss.item() * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(y)
                    bar.update(1)
            acc = _accuracy(model, test_data, device)
            rows.append(
                {
                    "epoch": epoch,
                    "train_loss": total / max(seen, 1),
                    "train_accuracy": correct / max(seen, 1),
                    "natural_accuracy": acc,
                    "seconds": time.perf_counter() - start,
                    "checkpoint": "",
                }
            )
    finally:
        bar.close()
        for p in model.parameters():
            p.requires_grad_(True)
    model.eval()
    meta = model_meta(model)
    n_trainable = sum(p.numel() for p in params)
    meta.metrics = {"natural_accuracy": rows[-1]["natural_accuracy"], "epoch": epochs}
    written = []
    if save_to is not None:
        rows[-1]["checkpoint"] = str(save_model(model.cpu(), save_to))
        written.append(Path(save_to))
        model.to(device)
    trainable = [i for i in range(len(layers(model))) if i not in frozen]
    names, acc = meta.class_names, rows[-1]["natural_accuracy"]
    found = (
        natural_accuracy_warning(acc, len(names), "the trained model")
        if names and acc == acc  # NaN: no test data
        else None
    )
    history = pd.DataFrame(rows)
    return TrainResult(
        model, history, frozen, trainable, n_trainable, written, [found] if found else []
    )


def _accuracy(model: nn.Module, test_data: Dataset | None, device: torch.device) -> float:
    if test_data is None:
        return float("nan")
    if device.type == "cpu":
        return natural_accuracy(model, test_data)
    correct = seen = 0
    with torch.no_grad(), training_mode(model):
        model.eval()
        for x, y in DataLoader(test_data, batch_size=512):
            out: Tensor = model(x.to(device))
            correct += int((out.argmax(1).cpu() == y).sum())
            seen += len(y)
    return correct / seen if seen else float("nan")

"""Pretraining and TL-DMI fine-tuning with a freeze boundary that freezes for real.

TL-DMI (Ho et al., CVPR 2024) pretrains a classifier on public data, then
fine-tunes only its last layers (theta_C) on the private data, so that private
information is encoded in as few parameters as possible. With a freeze
boundary ``b`` the layers ``0..b-1`` of :func:`fisherlab.models.layers.layers` keep
their pretrained values:

* their parameters get ``requires_grad=False`` and are not given to the
  optimiser (so neither the gradient nor weight decay nor momentum touch them);
* their modules stay in **eval mode** during training, so BatchNorm running
  statistics are not updated on private data. (The official TL-DMI code calls
  ``model.train()`` on the whole network, which lets the statistics of frozen
  layers drift on private data; fisherlab does not.)

The head is always replaced by a freshly initialised ``Linear`` for the private
classes and is always trained. ``train_layers`` trains an explicit set of
layers instead of a suffix (the paper's Fig. 4, first vs middle layers).

A training-time defense (:mod:`fisherlab.training.defenses`: MID, BiDO, label
smoothing) can be combined with either; MID's VIB head is the head and is
always trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from fisherlab._device import (
    AMP_DTYPES,
    autocast,
    check_amp,
    check_workers,
    describe_device,
    device_key,
    device_name,
    grad_scaler,
    resolve_device,
)
from fisherlab._io import write_atomic, write_json
from fisherlab._progress import tqdm
from fisherlab._version import versions
from fisherlab.data.chance import natural_accuracy_warning
from fisherlab.data.datasets import (
    DatasetSplits,
    iterate_batches,
    load_dataset,
    stratified_split,
)
from fisherlab.data.limits import MAX_IMAGE_SIZE
from fisherlab.data.subsets import capped_rows, stratified_indices
from fisherlab.errors import FisherlabError, TrainingDiverged
from fisherlab.models.checkpoint import checkpoint_digest, load_model, save_model
from fisherlab.models.heads import replace_head
from fisherlab.models.layers import (
    Layer,
    check_freeze_boundary,
    layers,
    resolve_layer_indices,
)
from fisherlab.models.meta import model_meta
from fisherlab.models.spec import build_from_spec, parse_model_spec
from fisherlab.training.accuracy import natural_accuracy
from fisherlab.training.defenses import (
    STRENGTH_FIELDS,
    Defense,
    build_defense,
    resolve_strengths,
)
from fisherlab.training.fit import TrainResult, fit
from fisherlab.training.freezing import freeze

_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""Largest learning rate the optimiser can apply (it computes in float32)."""

_UNSET_FIELDS: dict[str, str | None] = {
    "defense": "none",
    **dict.fromkeys(STRENGTH_FIELDS),
    "amp": None,
    "validation_fraction": None,
}
"""Fields added after keys were first used, with the value that leaves them out of the key."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; its :meth:`key` names outputs.

    Exactly one of ``arch`` (pretraining from scratch) and ``init`` (fine-tuning
    a checkpoint) is set.

    Attributes:
        data: Dataset string, e.g. ``"fashion"`` or ``"mnist5k:0-4"``.
        arch: Architecture to pretrain (see :func:`fisherlab.models.available`).
        init: Checkpoint to fine-tune, with a new head for ``data``'s classes.
        freeze_boundary: Freeze layers with index ``< freeze_boundary``.
        train_layers: Train exactly these layers (plus the new head).
        epochs: Passes over the training split.
        batch_size: Mini-batch size.
        lr: SGD learning rate, finite and > 0.
        momentum: SGD momentum, in [0, 1).
        weight_decay: L2 weight decay, finite and >= 0.
        seed: Seed of initialisation, shuffling and dropout.
        split_seed: Seed of the dataset's train/test split.
        max_train_samples: Train on a class-balanced subset of this size
            (:func:`fisherlab.data.stratified_indices`, seeded by ``split_seed``).
        validation_fraction: Hold out this fraction of each class of the
            training split (stratified, seeded by ``split_seed``) as a
            validation split, in ``(0, 1)``; ``max_train_samples`` then
            subsets the rest. The test split is untouched. Each epoch's
            ``validation_accuracy`` goes to the history (:mod:`fisherlab.training.tuning`
            tunes defense strengths on it).
        save_every: Also save a checkpoint every this many epochs.
        image_size: Input side for pretraining, 1..1024 (default: the dataset's).
        defense: Training-time defense, a name of
            :data:`fisherlab.training.defenses.DEFENSES`: ``none``, ``mid``, ``bido``
            or ``ls``.
        beta: ``mid``: weight of the KL term, >= 0 (default 0.003).
        hsic_a1: ``bido``: weight of the input dependence, >= 0 (default 0.05).
        hsic_a2: ``bido``: weight of the label dependence, >= 0 (default 0.5).
        smoothing: ``ls``: label smoothing factor in [-1, 1) (default -0.05).
        device: Where to train: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or
            ``None``/``"auto"`` (CUDA when available, else the CPU);
            :func:`train` records the device it used.
        amp: Mixed precision on CUDA: ``"bf16"`` or ``"fp16"`` (autocast, and
            a gradient scaler for fp16), ``None`` for float32.

    A strength left ``None`` takes its defense's default when the config is
    made, so the config holds the values in effect; setting one that belongs
    to another defense is an error. The defense fields, ``amp`` and
    ``validation_fraction`` enter :meth:`key` only when set (a negative
    smoothing factor also adds the tag of its schedule,
    :meth:`~fisherlab.training.defenses.Defense.behaviour`), and the device
    only when it is not the CPU (its type: a GPU result is not bitwise a CPU
    one), so the keys of CPU configs without a defense are those of earlier
    fisherlab versions.
    """

    data: str
    arch: str | None = None
    init: str | None = None
    freeze_boundary: int | None = None
    train_layers: tuple[int, ...] | None = None
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    split_seed: int = 0
    max_train_samples: int | None = None
    validation_fraction: float | None = None
    save_every: int | None = None
    image_size: int | None = None
    defense: str = "none"
    beta: float | None = None
    hsic_a1: float | None = None
    hsic_a2: float | None = None
    smoothing: float | None = None
    device: str | None = None
    amp: str | None = None

    def __post_init__(self) -> None:
        if (self.arch is None) == (self.init is None):
            raise FisherlabError(
                "give exactly one of --arch (pretrain from scratch) and --init "
                "(fine-tune a checkpoint)"
            )
        if self.init is None and (
            self.freeze_boundary is not None or self.train_layers is not None
        ):
            raise FisherlabError(
                "--freeze-boundary and --train-layers fine-tune a pretrained model: add --init CKPT"
            )
        if self.arch is not None:
            parse_model_spec(str(self.arch))
        if self.freeze_boundary is not None and self.train_layers is not None:
            raise FisherlabError("give --freeze-boundary or --train-layers, not both")
        if self.init is not None and self.image_size is not None:
            raise FisherlabError(
                "--image-size is for pretraining; fine-tuning uses the input size "
                "stored in the --init checkpoint"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise FisherlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= _FLOAT32_MAX):
            raise FisherlabError(
                f"lr must be finite and > 0 (at most {_FLOAT32_MAX:.3g}), got {self.lr}"
            )
        if not 0 <= self.momentum < 1:
            raise FisherlabError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise FisherlabError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if self.image_size is not None and not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise FisherlabError(
                f"image_size must be in 1..{MAX_IMAGE_SIZE}, got {self.image_size}"
            )
        if self.save_every is not None and self.save_every < 1:
            raise FisherlabError(f"save_every must be >= 1, got {self.save_every}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise FisherlabError(f"max_train_samples must be >= 1, got {self.max_train_samples}")
        if self.validation_fraction is not None and not 0 < self.validation_fraction < 1:
            raise FisherlabError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        if self.device is not None:
            device_name(self.device)  # a malformed name; whether it exists is train's check
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise FisherlabError(f"unknown --amp {self.amp!r}: expected bf16 or fp16")
        given = {name: getattr(self, name) for name in STRENGTH_FIELDS}
        for name, value in resolve_strengths(self.defense, given).items():
            object.__setattr__(self, name, value)

    def strengths(self) -> dict[str, float]:
        """The strengths of the chosen defense, e.g. ``{"beta": 0.003}``."""
        return {k: v for k in STRENGTH_FIELDS if (v := getattr(self, k)) is not None}

    def to_dict(self) -> dict:
        """Plain-JSON form (tuples become lists)."""
        d = asdict(self)
        if d["train_layers"] is not None:
            d["train_layers"] = list(d["train_layers"])
        return d

    def key(self) -> str:
        """A 12-hex-digit hash of the config (and of the ``init`` checkpoint's content).

        The ``init`` file enters by :func:`~fisherlab.models.checkpoint.checkpoint_digest`:
        two files with the same weights and metadata give the same key however
        their bytes differ (a file that is not a fisherlab checkpoint enters by
        its bytes).
        """
        d = self.to_dict()
        for name, unset in _UNSET_FIELDS.items():  # hashed only when set (see above)
            if d[name] == unset:
                del d[name]
        d.update(build_defense(self.defense, **self.strengths()).behaviour())
        del d["device"]
        if (kind := device_key(self.device)) is not None:
            d["device"] = kind
        if self.init is not None and Path(self.init).is_file():
            d["init"] = checkpoint_digest(self.init)
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _two_classes(splits: DatasetSplits) -> DatasetSplits:
    if splits.num_classes < 2:
        raise FisherlabError(
            f"dataset {splits.spec.short()} has {splits.num_classes} class "
            f"{splits.class_names[:1]}; training a classifier needs at least 2 classes: "
            "select more"
        )
    return splits


def _prepare(config: TrainConfig, trust_pickle: bool = False) -> tuple[nn.Module, DatasetSplits]:
    if config.init is not None:
        base = load_model(config.init, trust_pickle=trust_pickle)
        meta = model_meta(base)
        if meta.input_spec is None or meta.arch is None:
            raise FisherlabError(
                f"{config.init} records no architecture spec or input spec, so the fine-tuned "
                "model could not be saved: wrap it once with `fisherlab import SPEC --weights "
                "FILE --input-size S --channels C --out model.pt` (or pass the spec to --init "
                "with --weights)"
            )
        splits = load_dataset(config.data, input_spec=meta.input_spec, split_seed=config.split_seed)
        _two_classes(splits)
        if splits.input_spec != meta.input_spec:
            raise FisherlabError(
                f"dataset {config.data} is stored as-is with input {splits.input_spec}, "
                f"but {config.init} expects {meta.input_spec}"
            )
        replace_head(base, splits.num_classes, seed=config.seed)
        return base, splits
    splits = _two_classes(load_dataset(config.data, split_seed=config.split_seed))
    spec = splits.input_spec
    if config.image_size is not None and config.image_size != spec.size:
        spec = replace(spec, size=config.image_size)
        splits = load_dataset(config.data, input_spec=spec, split_seed=config.split_seed)
    torch.manual_seed(config.seed)
    model = build_from_spec(
        str(config.arch),
        num_classes=splits.num_classes,
        in_channels=splits.input_spec.channels,
        image_size=splits.input_spec.size,
    )
    return model, splits


def _training_pool(config: TrainConfig, splits: DatasetSplits) -> tuple[Tensor, Dataset | None]:
    """The indices of ``splits.train`` to train on, and the validation split if one is held out.

    Without ``validation_fraction`` the pool is the whole training split, or a
    class-balanced seeded subset of ``max_train_samples``
    (:func:`~fisherlab.data.subsets.capped_rows`). With it,
    :func:`~fisherlab.data.datasets.stratified_split` first holds out that
    fraction of each class, and ``max_train_samples`` takes a class-balanced
    subset of the rest.

    Raises:
        FisherlabError: If the validation split or the rest would be empty.
    """
    n_train = len(splits.train)
    pool, validation = torch.arange(n_train), None
    if config.validation_fraction is not None:
        pool, held = stratified_split(
            splits.train.labels, config.validation_fraction, config.split_seed
        )
        if len(held) == 0 or len(pool) == 0:
            raise FisherlabError(
                f"validation_fraction {config.validation_fraction} of {n_train} training "
                f"images leaves {len(pool)} to train on and {len(held)} to validate: choose "
                "a fraction that leaves both non-empty"
            )
        validation = Subset(splits.train, held.tolist())
    if validation is None:
        capped = capped_rows(splits.train, config.max_train_samples, config.split_seed)
        return (pool if capped is None else capped), None
    if config.max_train_samples is not None and config.max_train_samples < len(pool):
        labels = splits.train.labels[pool]
        pool = pool[stratified_indices(labels, config.max_train_samples, config.split_seed)]
    return pool, validation


def _frozen_indices(config: TrainConfig, all_layers: list[Layer]) -> list[int]:
    n = len(all_layers)
    if config.freeze_boundary is not None:
        return list(range(check_freeze_boundary(config.freeze_boundary, n)))
    if config.train_layers is not None:
        trained = set(resolve_layer_indices(config.train_layers, n)) | {n - 1}
        return [i for i in range(n) if i not in trained]
    return []


def _epoch(
    model: nn.Module,
    defense: Defense,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    bar: tqdm,
    epoch: int,
    lr: float,
    *,
    device: torch.device,
    amp: str | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass of SGD steps; returns sums over samples of the loss, its parts and hits.

    Batches go to ``device``. With ``amp`` the forward pass runs under
    autocast and the loss (with the defense's terms) is computed in float32
    from its outputs; ``scaler`` scales the loss for fp16. The loss and the
    parameters are checked with one device synchronisation per step.

    Raises:
        FisherlabError: If the loss, or a trained parameter after a step,
            becomes non-finite (the message names the batch).
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    scaler = scaler if scaler is not None else grad_scaler(None, device)
    sums: dict[str, Tensor] = {}
    for batch, (x, y) in enumerate(batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(amp, device):
            logits = model(x)
        if amp is not None:
            logits = logits.float()
        loss, parts = defense.loss(model, x, logits, y)
        finite = torch.isfinite(loss.detach())
        if bool(finite):  # a non-finite loss is never applied
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        loss_ok, params_ok = (bool(v) for v in torch.stack([finite, _finite(params)]).cpu())
        if not loss_ok:
            bar.close()
            raise TrainingDiverged(
                f"the training loss became {loss.item()} at epoch {epoch}, batch {batch}: "
                f"lower the learning rate (now {lr})"
            )
        if not params_ok:
            bar.close()
            raise TrainingDiverged(
                f"the parameters became non-finite (NaN or inf) after the step at epoch "
                f"{epoch}, batch {batch} (loss {loss.item():.4g}): lower the learning rate "
                f"(now {lr})"
            )
        for name, value in {"loss": loss.detach(), **parts}.items():
            term = torch.as_tensor(value).detach().double() * len(y)
            sums[name] = sums[name] + term if name in sums else term
        hits = (logits.argmax(1) == y).sum().double()
        sums["correct"] = sums["correct"] + hits if "correct" in sums else hits
        bar.update(1)
    return {"loss": 0.0, "correct": 0.0, **{name: float(value) for name, value in sums.items()}}


def _finite(params: list[Tensor]) -> Tensor:
    """Whether every parameter is finite, as a 0-dim bool tensor (no synchronisation)."""
    with torch.no_grad():
        if not params:
            return torch.ones((), dtype=torch.bool)
        return torch.stack([torch.isfinite(p).all() for p in params]).all()


def train(
    config: TrainConfig | nn.Module | str,
    out: Any = None,
    progress: bool = True,
    *,
    trust_pickle: bool = False,
    workers: int = 0,
    **options: Any,
) -> TrainResult:
    """Pretrain, or TL-DMI fine-tune with a freeze boundary, and save checkpoints.

    Two forms: ``train(TrainConfig(...), out="ft.pt")``, fisherlab's recipe on
    a named dataset (reproducible, keyed, what the CLI and the reproduction
    run); and ``train(model_or_spec, data, freeze_boundary=b, ...)`` for a
    model and data you hold (a ``Dataset``, a ``DataLoader`` or a dataset
    string), which is :func:`fisherlab.training.fit.fit` (see it for the
    options).

    Writes, when ``out`` is given: the final checkpoint ``out``, intermediate
    ones ``<stem>.epochNNN.pt`` (``save_every``), ``<stem>.history.csv`` (one
    row per epoch) and ``<stem>.run.json`` (config, key, layers, versions).
    Each checkpoint's metrics hold its ``natural_accuracy`` on the test split.

    Args:
        config: The run (or a model, model spec or file: the second form).
        out: Final checkpoint path (``None``: save nothing); in the second
            form, the data.
        progress: Show progress bars.
        trust_pickle: Let ``config.init`` be a pickled module or a TorchScript
            archive (both run code from the file; see
            :func:`~fisherlab.models.checkpoint.load_model`). Not part of the
            config or its key: it permits a file, it does not change the run.
        workers: Data-loading processes for image folders (0: this one). Not
            part of the config: the batches are the same.
        **options: The second form's options (:func:`~fisherlab.training.fit.fit`).

    Returns:
        The trained model and its history.

    Raises:
        FisherlabError: For bad configs, data (fewer than 2 classes) or
            checkpoints, a device this machine lacks, ``amp`` off CUDA, or a
            diverging loss or parameters.
    """
    if not isinstance(config, TrainConfig):
        data = options.pop("data", out)
        if data is None:
            raise FisherlabError("train(model, data): give the data to train on")
        return fit(config, data, progress=progress, trust_pickle=trust_pickle, **options)
    if options:
        raise FisherlabError(
            f"train(TrainConfig, ...) takes no options {sorted(options)}: set them in the config"
        )
    device = resolve_device(config.device)
    check_amp(config.amp, device)
    check_workers(workers)
    config = replace(config, device=str(device))  # the device used, in run.json and key
    model, splits = _prepare(config, trust_pickle)
    defense = build_defense(config.defense, **config.strengths())
    defense.prepare(model, seed=config.seed)
    model.to(device)
    all_layers = layers(model)
    frozen = _frozen_indices(config, all_layers)
    trainable = [i for i in range(len(all_layers)) if i not in frozen]
    frozen_modules = freeze(model, frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scaler = grad_scaler(config.amp, device)
    out_path = Path(out) if out is not None else None
    stem = out_path.with_suffix("") if out_path is not None else None

    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    pool, validation = _training_pool(config, splits)

    meta = model_meta(model)
    meta.class_names = splits.class_names
    meta.input_spec = splits.input_spec
    meta.train_config = {**config.to_dict(), "key": config.key()}
    summary = {
        "frozen_layers": frozen,
        "trainable_layers": trainable,
        "n_trainable_params": n_trainable,
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_samples": len(pool),
        "test_samples": len(splits.test),
        **({"validation_samples": len(validation)} if validation is not None else {}),
    }
    rows, written = [], []
    n_batches = math.ceil(len(pool) / config.batch_size)
    bar = tqdm(
        total=config.epochs * n_batches,
        disable=None if progress else True,
        unit="batch",
        desc=f"train {config.arch or Path(str(config.init)).name} on {config.data}",
    )
    with defense.watching(model, trainable):
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            defense.start_epoch(epoch - 1, config.epochs)
            model.train()
            for m in frozen_modules:
                m.eval()
            order = pool[torch.randperm(len(pool), generator=gen)]
            batches = iterate_batches(
                splits.train,
                order,
                config.batch_size,
                workers=workers,
                pin_memory=device.type == "cuda",
            )
            sums = _epoch(
                model,
                defense,
                batches,
                optimizer,
                bar,
                epoch,
                config.lr,
                device=device,
                amp=config.amp,
                scaler=scaler,
            )
            acc = natural_accuracy(model, splits.test, workers=workers)
            extra = {}
            if validation is not None:
                extra["validation_accuracy"] = natural_accuracy(model, validation, workers=workers)
            means = {k: v / len(pool) for k, v in sums.items()}
            bar.set_postfix(epoch=epoch, loss=f"{means['loss']:.3f}", test_acc=f"{acc:.3f}")
            ckpt = None
            metrics = {"natural_accuracy": acc, **extra, "epoch": epoch, **summary}
            if stem is not None and config.save_every and epoch % config.save_every == 0:
                if epoch < config.epochs:
                    ckpt = save_model(model, f"{stem}.epoch{epoch:03d}.pt", metrics=metrics)
                    written.append(ckpt)
            if epoch == config.epochs and out_path is not None:
                ckpt = save_model(model, out_path, metrics=metrics)
                written.append(ckpt)
            meta.metrics = metrics
            rows.append(
                {
                    "epoch": epoch,
                    "train_loss": means.pop("loss"),
                    "train_accuracy": means.pop("correct"),
                    "natural_accuracy": acc,
                    **extra,
                    "seconds": time.perf_counter() - start,
                    "checkpoint": str(ckpt) if ckpt else "",
                    **means,
                }
            )
    bar.close()
    history = pd.DataFrame(rows)
    found = natural_accuracy_warning(
        rows[-1]["natural_accuracy"], len(splits.class_names), "the trained model"
    )
    warnings = [found] if found else []
    if stem is not None:
        write_atomic(f"{stem}.history.csv", lambda p: history.to_csv(p, index=False))
        write_json(
            f"{stem}.run.json",
            {
                "config": config.to_dict(),
                "key": config.key(),
                "data": {
                    "spec": str(splits.spec),
                    "class_names": splits.class_names,
                    "input_spec": splits.input_spec.to_dict(),
                },
                **summary,
                "final_natural_accuracy": rows[-1]["natural_accuracy"],
                "seconds": float(history["seconds"].sum()),
                "device": describe_device(device),
                "workers": workers,
                "versions": versions(),
                "warnings": warnings,
            },
        )
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return TrainResult(model, history, frozen, trainable, n_trainable, written, warnings)

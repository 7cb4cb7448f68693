"""What fisherlab knows about a model: :class:`ModelMeta`, attached as ``model.fisherlab_meta``.

Every model built by :func:`fisherlab.build_model` or loaded by
:func:`fisherlab.load_model` carries one; foreign modules get an empty one from
:func:`model_meta`. :func:`fingerprint` identifies a model's weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError


@dataclass
class ModelMeta:
    """What fisherlab knows about a model, attached as ``model.fisherlab_meta``.

    Attributes:
        arch: Registry architecture name, or ``None`` for foreign models.
        arch_kwargs: Arguments of :func:`fisherlab.build_model`.
        head: A head that replaced the architecture's own (see the module docs).
        class_names: Name of each output class.
        input_spec: How data must be prepared for the model.
        train_config: The training config that produced it (a plain dict).
        metrics: Numbers measured at save time, e.g. ``natural_accuracy``.
        fisherlab_version: Version that wrote the checkpoint.
        source: ``built``, ``fisherlab``, ``torchscript`` or ``pickle``.
        path: The file it was loaded from.
    """

    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    head: dict[str, Any] | None = None
    class_names: list[str] | None = None
    input_spec: InputSpec | None = None
    train_config: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    fisherlab_version: str | None = None
    source: str = "built"
    path: str | None = None


def model_meta(model: nn.Module) -> ModelMeta:
    """The model's :class:`ModelMeta` (an empty one for foreign modules)."""
    meta = getattr(model, "fisherlab_meta", None)
    return meta if isinstance(meta, ModelMeta) else ModelMeta(source="foreign")


def fingerprint(model: nn.Module) -> str:
    """A 12-hex-digit hash of a model's state (names, shapes, dtypes and values).

    Two profiles with the same fingerprint come from the same weights; the
    planner uses it to refuse profiles of different models.

    Example:
        >>> from fisherlab.models import build_model
        >>> a = build_model("target_cnn", num_classes=5)
        >>> fingerprint(a) == fingerprint(a), len(fingerprint(a))
        (True, 12)
    """
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def check_data_classes(
    data_names: list[str] | None, model: nn.Module, data: str, *, same_count: bool
) -> None:
    """Refuse data whose labels mean other classes than the model's outputs.

    Label ``i`` of the data must name the model's class ``i``: a dataset with
    other classes (``fashion:0-4`` on a digits model), the right classes
    relabelled (``mnist5k:1-3`` on a ``mnist5k:0-4`` model) or more classes
    than the model has outputs is an error. Nothing is checked when the model
    (a foreign one) or the data (``npz``) does not name its classes.

    Args:
        data_names: The data's class names, label by label (``None``: unknown).
        model: The model.
        data: The dataset's name, for the message.
        same_count: Also require as many classes as the model has (the
            private data of an attack); otherwise a prefix of them will do.

    Raises:
        FisherlabError: Naming the first mismatch and the fix.
    """
    model_names = model_meta(model).class_names
    if not data_names or not model_names:
        return
    short = ", ".join(model_names[:6]) + (", ..." if len(model_names) > 6 else "")
    fix = f"use data with the model's classes [{short}] in that order"
    if len(data_names) > len(model_names) or (same_count and len(data_names) != len(model_names)):
        raise FisherlabError(
            f"{data} has {len(data_names)} classes but the model has {len(model_names)} "
            f"outputs: {fix}"
        )
    for label, (ours, theirs) in enumerate(zip(data_names, model_names, strict=False)):
        if ours != theirs:
            raise FisherlabError(
                f"label {label} of {data} is class {ours!r} but the model's output {label} is "
                f"{theirs!r}: {fix}"
            )

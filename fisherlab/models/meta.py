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

"""Model specs: one parser for every way of naming a model, and building it.

A model spec is a string, accepted wherever fisherlab takes a model (the
command line's model arguments, :func:`open_model`, ``TrainConfig.arch``):

============================  ================================================
``target_cnn``, ...           fisherlab's registry (:mod:`~fisherlab.models.architectures`)
``torchvision:NAME``          any torchvision classification model, built with
                              ``num_classes``; for inputs with other than 3
                              channels its first convolution takes them, the
                              rest of the architecture (its stem included) is
                              torchvision's own
``timm:NAME``                 a timm model (``pip install timm``; optional)
``package.module:factory``    user code: ``factory(**model_kwargs)`` must return
                              an ``nn.Module``; it is imported because the user
                              named it, and a checkpoint that names it loads
                              only with ``trust_pickle=True`` (importing runs code)
============================  ================================================

A file path is not a spec: :func:`open_model` loads files with
:func:`~fisherlab.models.checkpoint.load_model`. ``--weights FILE`` adds a
state dict (read with ``weights_only=True``) to a spec; the class count and
input channels are then read from the weights when not given.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pickle
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from fisherlab.data.limits import MAX_CLASSES, MAX_IMAGE_SIZE
from fisherlab.errors import FisherlabError, preview
from fisherlab.models.architectures import ARCHITECTURES, RENAMED, build_model

__all__ = [
    "FORMS",
    "RENAMED",
    "SPEC_KINDS",
    "ModelSpec",
    "build_from_spec",
    "guess_spec",
    "import_factory",
    "infer_shape_arguments",
    "is_export_archive",
    "load_weights",
    "parse_model_spec",
    "read_weights",
    "state_mismatch",
]
from fisherlab.models.meta import ModelMeta, model_meta

SPEC_KINDS = ("fisherlab", "torchvision", "timm", "code")
"""The kinds of model spec (module docs)."""

_CODE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
FORMS = (
    "a fisherlab architecture ("
    + ", ".join(ARCHITECTURES)
    + "), torchvision:NAME, timm:NAME or package.module:factory"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        kind: One of :data:`SPEC_KINDS`.
        name: The architecture, torchvision/timm model name, or
            ``package.module:factory``.
    """

    kind: str
    name: str

    def __str__(self) -> str:
        return self.name if self.kind in ("fisherlab", "code") else f"{self.kind}:{self.name}"

    @property
    def runs_user_code(self) -> bool:
        """Whether building it imports code the user wrote."""
        return self.kind == "code"


def parse_model_spec(text: str) -> ModelSpec:
    """Parse a model spec (module docs).

    Raises:
        FisherlabError: For a renamed architecture (naming the new name and the
            torchvision original) or text that is none of the forms.

    Example:
        >>> parse_model_spec("torchvision:resnet18"), str(parse_model_spec("target_cnn"))
        (ModelSpec(kind='torchvision', name='resnet18'), 'target_cnn')
    """
    text = str(text).strip()
    if text in ARCHITECTURES:
        return ModelSpec("fisherlab", text)
    if text in RENAMED:
        raise FisherlabError(
            f"fisherlab's {text!r} is now {RENAMED[text]!r} (small-input variant); "
            f"for torchvision's own architecture use torchvision:{text}"
        )
    for kind in ("torchvision", "timm"):
        if text.startswith(kind + ":"):
            name = text[len(kind) + 1 :]
            if not re.fullmatch(r"[\w.\-]+", name):
                raise FisherlabError(f"model spec {text!r}: expected {kind}:NAME")
            return ModelSpec(kind, name)
    if _CODE.match(text):
        return ModelSpec("code", text)
    close = difflib.get_close_matches(text, list(ARCHITECTURES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if text in _torchvision_names():
        hint = f" (torchvision's is torchvision:{text})"
    raise FisherlabError(f"unknown model {text!r}{hint}: expected {FORMS}, or a checkpoint file")


def _torchvision_names() -> list[str]:
    return tvm.list_models(module=tvm)


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Make the first 3-channel ``Conv2d`` take ``in_channels`` (same kernel and stride)."""
    for parent in model.modules():
        for key, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    child.bias is not None,
                    child.padding_mode,
                )
                setattr(parent, key, new)
                return
    raise FisherlabError(
        f"{type(model).__name__} has no 3-channel first convolution to adapt to "
        f"{in_channels} channels: use 3-channel data (--channels 3)"
    )


def _build_torchvision(
    name: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict
) -> nn.Module:
    names = _torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        raise FisherlabError(
            f"torchvision has no classification model {name!r}"
            + (f" (close: {', '.join(close)})" if close else "")
            + "; see torchvision.models.list_models()"
        )
    kwargs = dict(kwargs)
    if "image_size" in inspect.signature(tvm.get_model_builder(name)).parameters or (
        name.startswith("vit_")
    ):
        kwargs.setdefault("image_size", image_size)
    try:
        model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise FisherlabError(f"torchvision:{name} with {kwargs}: {exc}") from None
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def _build_timm(
    name: str, num_classes: int, in_channels: int, image_size: int, kwargs: dict
) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise FisherlabError(
            f"timm:{name} needs timm, which is not installed: pip install timm "
            "(an optional extra of fisherlab)"
        ) from None
    try:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs
        )
    except Exception as exc:  # noqa: BLE001 - timm raises many kinds for bad names/args
        first = " ".join(str(exc).split())[:200]
        raise FisherlabError(f"timm:{name} with {kwargs}: {type(exc).__name__}: {first}") from None


def import_factory(name: str) -> Any:
    """The object ``package.module:attr`` names, importing its module.

    The current folder is searched first, as ``python -m`` does, so a module
    next to the user's data needs no ``PYTHONPATH``.

    Raises:
        FisherlabError: If the module cannot be imported or has no such attribute.
    """
    module_name, _, attr = name.partition(":")
    here = os.getcwd()
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FisherlabError(
            f"cannot import {module_name} for model {name!r} ({exc}): run fisherlab from the "
            "folder that holds it, or add that folder to PYTHONPATH"
        ) from None
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FisherlabError(f"{module_name} has no {attr!r} (model {name!r})")
        obj = getattr(obj, part)
    return obj


def _build_code(
    name: str, num_classes: int | None, in_channels: int, image_size: int, kwargs: dict
) -> nn.Module:
    factory = import_factory(name)
    if not callable(factory):
        raise FisherlabError(f"{name} is a {type(factory).__name__}, not a model factory")
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    given = dict(kwargs)
    for key, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if key in accepted and key not in given and value is not None:
            given[key] = value
    try:
        model = factory(**given)
    except TypeError as exc:
        raise FisherlabError(
            f"{name}({', '.join(f'{k}={v!r}' for k, v in given.items())}) failed: {exc}; "
            "pass its arguments with --model-kwargs JSON"
        ) from None
    if not isinstance(model, nn.Module):
        raise FisherlabError(f"{name} returned a {type(model).__name__}, not an nn.Module")
    return model


def build_from_spec(
    spec: str | ModelSpec,
    num_classes: int | None,
    in_channels: int = 3,
    image_size: int = 64,
    *,
    model_kwargs: dict[str, Any] | None = None,
    trust_code: bool = True,
) -> nn.Module:
    """Build a freshly initialised model from a spec, with ``model.fisherlab_meta``.

    Args:
        spec: A model spec (module docs).
        num_classes: Number of outputs (a user factory may ignore it).
        in_channels: Input channels, 1 or 3.
        image_size: Side of the square input (used by models that need it,
            e.g. torchvision's ViTs, and recorded).
        model_kwargs: Further arguments of the builder or factory.
        trust_code: Allow a ``package.module:factory`` spec; pass ``False``
            when the spec comes from a file rather than from the user.

    Returns:
        The model in train mode; its meta records the spec and arguments, so
        :func:`~fisherlab.models.checkpoint.save_model` can save it.

    Raises:
        FisherlabError: For bad specs or arguments, or user code without
            ``trust_code``.
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    kwargs = dict(model_kwargs or {})
    if parsed.kind == "fisherlab":
        return build_model(parsed.name, num_classes, in_channels, image_size, **kwargs)
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise FisherlabError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    if in_channels not in (1, 3):
        raise FisherlabError(f"in_channels must be 1 or 3, got {in_channels!r}")
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise FisherlabError(f"image_size must be in 1..{MAX_IMAGE_SIZE}, got {image_size}")
    if parsed.kind == "code":
        if not trust_code:
            raise FisherlabError(
                f"the model {parsed.name!r} is user code: importing it runs that code; pass "
                "--trust-pickle (trust_pickle=True) if you trust it"
            )
        model = _build_code(parsed.name, num_classes, in_channels, image_size, kwargs)
    elif num_classes is None:
        raise FisherlabError(f"{parsed}: give the number of classes (--classes)")
    elif parsed.kind == "torchvision":
        model = _build_torchvision(parsed.name, num_classes, in_channels, image_size, kwargs)
    else:
        model = _build_timm(parsed.name, num_classes, in_channels, image_size, kwargs)
    model.fisherlab_meta = ModelMeta(
        arch=str(parsed),
        arch_kwargs=dict(
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
        ),
        source="spec",
    )
    return model


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``, read with ``weights_only=True``.

    A dict of tensors, or one under a ``state_dict``/``model``/``model_state_dict``
    key; a ``module.`` prefix on every key (``DataParallel``) is dropped.

    Raises:
        FisherlabError: For a missing or unreadable file, a pickle, a fisherlab
            checkpoint (pass it as the model instead) or anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FisherlabError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise FisherlabError(
            f"{path} holds pickled objects, not a state dict: save one with "
            "torch.save(model.state_dict(), FILE), or pass the pickle itself as the model "
            "with --trust-pickle"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FisherlabError(f"{path} is not a readable torch file ({first})") from None
    if isinstance(obj, dict) and obj.get("format") == "fisherlab-checkpoint":
        raise FisherlabError(
            f"{path} is a fisherlab checkpoint: pass it as the model itself, without --weights"
        )
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise FisherlabError(f"{path} holds {type(obj).__name__}, not a state dict")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise FisherlabError(f"{path}: not a state dict (non-tensor entries {preview(bad)})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def infer_shape_arguments(
    spec: str | ModelSpec, state: dict[str, torch.Tensor], model_kwargs: dict | None = None
) -> dict[str, int]:
    """``num_classes`` and ``in_channels`` as the weights of a torchvision/timm model imply.

    The model is built on the meta device (no memory) with 1 class and 3
    channels; a weight whose first dimension is 1 there and ``K`` in the file
    gives ``K`` classes, a first convolution with 3 input channels there and
    ``C`` in the file gives ``C`` channels.

    Returns:
        The arguments found (possibly none).
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    if parsed.kind not in ("torchvision", "timm"):
        return {}
    try:
        with torch.device("meta"):
            probe = build_from_spec(parsed, 1, 3, 224, model_kwargs=model_kwargs)
    except FisherlabError:
        return {}
    found: dict[str, int] = {}
    first_conv = next((n for n, m in probe.named_modules() if isinstance(m, nn.Conv2d)), None)
    for key, value in probe.state_dict().items():
        if key not in state or state[key].dim() != value.dim():
            continue
        theirs = tuple(state[key].shape)
        if (
            value.dim() >= 1
            and value.shape[0] == 1
            and theirs[0] != 1
            and theirs[1:] == tuple(value.shape[1:])
        ):
            found.setdefault("num_classes", int(theirs[0]))
        if first_conv is not None and key == f"{first_conv}.weight" and theirs[1] in (1, 3):
            found["in_channels"] = int(theirs[1])
    return found


def state_mismatch(own: dict[str, Any], state: dict[str, Any], model: str = "model") -> str:
    """How ``state`` differs from a model's own state dict ``own`` in keys and shapes.

    Args:
        own: The model's state dict (its shapes are what counts).
        state: The state dict from a file or another model.
        model: The model's name in the text.

    Returns:
        ``""`` when they have the same keys and shapes; else the missing and
        unexpected keys and the shape differences (a few of each).
    """
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(getattr(state[k], 'shape', ('not a tensor',)))} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state
        and (not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != tuple(v.shape))
    ]
    parts = [
        f"{what} {preview(keys)}"
        for what, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            (f"shape (file vs {model})", shapes),
        )
        if keys
    ]
    return "; ".join(parts)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``model.load_state_dict(state)``, strictly, with a one-line error naming the mismatch."""
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        spec = model_meta(model).arch or type(model).__name__
        raise FisherlabError(
            f"{where} does not fit {spec}: {mismatch} (check the model spec, "
            "--classes, --channels and --model-kwargs)"
        )
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if non_finite:
        raise FisherlabError(
            f"{where} holds non-finite values (NaN or inf) in {preview(non_finite)}"
        )
    model.load_state_dict(state)


def is_export_archive(path: Path) -> bool:
    """Whether ``path`` is a ``torch.export`` program (``.pt2``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.split("/", 1)[-1] == "archive_format" for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def guess_spec(model: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """A spec (and its arguments) that rebuilds a module of unknown origin, e.g. a pickle.

    Tried in order: the torchvision builders whose names match the module's
    class (``ResNet`` -> ``resnet18``, ``resnet34``, ...), with the class
    count and channels read from its weights; then the module's own class
    called without arguments (``package.module:Class``). A candidate counts
    only if its state dict has exactly the module's keys and shapes.

    Returns:
        ``(spec, model_kwargs)``, or ``None`` when nothing rebuilds it.
    """
    state = model.state_dict()
    cls = type(model)

    candidates: list[tuple[str, dict[str, Any]]] = []
    if cls.__module__.startswith("torchvision.models"):
        stem = cls.__name__.lower().replace("_", "")
        for name in _torchvision_names():
            if name.replace("_", "").startswith(stem[: max(3, len(stem) - 2)]):
                candidates.append((f"torchvision:{name}", {}))
    if cls.__module__ not in ("__main__", "builtins") and "<locals>" not in cls.__qualname__:
        candidates.append((f"{cls.__module__}:{cls.__qualname__}", {}))
    for text, kwargs in candidates:
        try:
            shape = infer_shape_arguments(text, state)
            with torch.device("meta"):
                candidate = build_from_spec(
                    text,
                    shape.get("num_classes"),
                    shape.get("in_channels", 3),
                    224,
                    model_kwargs=kwargs,
                )
        except (FisherlabError, TypeError, ValueError, RuntimeError):
            continue
        if not state_mismatch(candidate.state_dict(), state):
            return text, {**shape, **kwargs}
    return None

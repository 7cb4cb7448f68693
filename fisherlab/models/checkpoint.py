"""Safe checkpoints: fisherlab's own format, TorchScript, and trusted pickles.

fisherlab's format is a ``torch.save`` of a plain dict, loadable with
``torch.load(weights_only=True)`` (no code runs while loading)::

    {"format": "fisherlab-checkpoint", "format_version": 1,
     "arch": "target_cnn", "arch_kwargs": {"num_classes": 5, ...},
     "head": None, "state_dict": {...}, "class_names": [...], "input_spec": {...},
     "train_config": {...}, "metrics": {...}, "fisherlab_version": "0.1.0",
     "torch_version": "2.14.1"}

:func:`load_model` also reads two formats that are code, not data, and so
only with ``trust_pickle=True`` (``--trust-pickle``), with a warning: a
pickled ``nn.Module`` (unpickling can run arbitrary code) and a TorchScript
archive (``torch.jit.save``; its ``__setstate__`` methods run while it loads
and may, for example, write files). Without the flag both are refused in one
line before anything of the file is deserialised (TorchScript is recognised by
the names of its zip members alone). Any other file raises a one-line
:class:`~fisherlab.errors.FisherlabError` that says what was found and what
was expected.

Every checkpoint is checked before use: its declared architecture must have
exactly the shapes of its state dict (compared on a model built on the
``meta`` device, which costs no memory, so a small file cannot make fisherlab
allocate a model of millions of classes), and every floating tensor must be
finite. :func:`save_model` refuses to write non-finite weights, and writes
byte-reproducible files (:func:`fisherlab._io.write_torch`).
:func:`checkpoint_digest` hashes a checkpoint's content rather than its bytes;
the cache keys of fine-tuning runs and GAN priors use it.

``arch`` is a registry name (the old names ``vgg16_bn``/``resnet18`` load as
``vgg16_bn_small``/``resnet18_cifar``) or a model spec
(:mod:`fisherlab.models.spec`): ``torchvision:``/``timm:`` specs are rebuilt
from the library and load with ``weights_only=True`` as registry models do; a
``package.module:factory`` spec names user code, whose import runs it, so such a
checkpoint loads only with ``trust_pickle=True``.

``head`` describes a head that replaced the architecture's ``Linear`` one, so
that :func:`load_model` can rebuild it before loading the weights:
``{"kind": "vib", "bottleneck": k}`` is the VIB head of the MID defense
(:func:`fisherlab.models.heads.install_head`); ``None`` (or no key, in older files)
is the architecture's own head.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fisherlab._io import write_torch
from fisherlab._version import __version__
from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError, preview
from fisherlab.models.architectures import ARCHITECTURES, RENAMED, build_model
from fisherlab.models.heads import install_head
from fisherlab.models.meta import ModelMeta, model_meta
from fisherlab.models.spec import (
    build_from_spec,
    infer_shape_arguments,
    is_export_archive,
    parse_model_spec,
    state_mismatch,
)

FORMAT = "fisherlab-checkpoint"
FORMAT_VERSION = 1


def non_finite(state: dict[str, Any]) -> list[str]:
    """The names of the floating (or complex) tensors of ``state`` with a NaN or an inf.

    Example:
        >>> non_finite({"w": torch.tensor([1.0, float("nan")]), "n": torch.tensor(3)})
        ['w']
    """
    return [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor)
        and (value.is_floating_point() or value.is_complex())
        and not bool(torch.isfinite(value).all())
    ]


def _plain(obj: Any) -> Any:
    """A JSON round trip: only str/int/float/bool/None/list/dict survive."""
    return json.loads(json.dumps(obj, default=str))


def save_model(
    model: nn.Module,
    path: str | Path,
    *,
    class_names: list[str] | None = None,
    input_spec: InputSpec | None = None,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    spec: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` in fisherlab's format, atomically.

    Fields not given are taken from ``model.fisherlab_meta``.

    Args:
        model: A model built by :func:`fisherlab.build_model` or
            :func:`~fisherlab.models.spec.build_from_spec` (or loaded), or any
            module together with the ``spec`` that rebuilds it.
        path: Output file, conventionally ``*.pt``.
        class_names: Name of each output class.
        input_spec: How inputs were prepared in training.
        train_config: The config that trained it (stored as plain JSON values).
        metrics: Numbers to keep with it, e.g. ``{"natural_accuracy": 0.98}``.
        spec: The model spec that rebuilds a foreign module (e.g.
            ``"torchvision:resnet18"`` or ``"mypackage.nets:make_cnn"``); it is
            built once here to check that its state dict has the model's keys
            and shapes.
        model_kwargs: Arguments of the spec's builder (``num_classes`` and
            ``in_channels`` of torchvision/timm specs are read from the weights
            when not given).

    Returns:
        The written path.

    Raises:
        FisherlabError: If the model's architecture is unknown and no ``spec``
            is given, if the spec does not rebuild the model, or if a weight or
            buffer is NaN or infinite (nothing is written then).
    """
    meta = model_meta(model)
    arch, arch_kwargs = meta.arch, meta.arch_kwargs
    if spec is not None:
        given_spec = input_spec or meta.input_spec
        arch, arch_kwargs = _spec_arguments(model, spec, model_kwargs, given_spec)
    if arch is None or arch_kwargs is None:
        raise FisherlabError(
            "save_model needs to know how to rebuild this nn.Module: pass "
            "spec='package.module:factory' (or torchvision:NAME) and model_kwargs, or run "
            "`fisherlab import SPEC --weights FILE ...` on its state dict"
        )
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    bad = non_finite(state)
    if bad:
        raise FisherlabError(
            f"refusing to save {path}: the model has non-finite values (NaN or inf) in "
            f"{preview(bad)}; training diverged: lower the learning rate"
        )
    spec = input_spec or meta.input_spec
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_kwargs": _plain(arch_kwargs),
        "head": _plain(meta.head),
        "state_dict": state,
        "class_names": _plain(class_names or meta.class_names),
        "input_spec": spec.to_dict() if spec is not None else None,
        "train_config": _plain(train_config if train_config is not None else meta.train_config),
        "metrics": _plain(metrics if metrics is not None else meta.metrics),
        "fisherlab_version": __version__,
        "torch_version": str(torch.__version__),
    }
    return write_torch(path, payload)


def _spec_arguments(
    model: nn.Module, spec: str, model_kwargs: dict[str, Any] | None, input_spec: InputSpec | None
) -> tuple[str, dict[str, Any]]:
    """The ``arch``/``arch_kwargs`` that rebuild ``model`` from ``spec``, checked by building it."""
    parsed = parse_model_spec(spec)
    state = model.state_dict()
    kwargs = dict(model_kwargs or {})
    shape = {
        "num_classes": kwargs.pop("num_classes", None),
        "in_channels": kwargs.pop("in_channels", None),
        "image_size": kwargs.pop("image_size", None),
    }
    for key, value in infer_shape_arguments(parsed, state, kwargs).items():
        shape[key] = shape[key] if shape[key] is not None else value
    if shape["in_channels"] is None:
        shape["in_channels"] = input_spec.channels if input_spec is not None else 3
    if shape["image_size"] is None:
        shape["image_size"] = input_spec.size if input_spec is not None else 64
    rebuilt = build_from_spec(parsed, model_kwargs=kwargs, **shape)
    own = rebuilt.state_dict()
    mismatch = state_mismatch(own, state, str(parsed))
    if mismatch:
        raise FisherlabError(
            f"{parsed} with {kwargs} does not rebuild this model ({mismatch}): pass the spec "
            "and arguments that built it (--spec and --model-kwargs)"
        )
    return str(parsed), {**shape, **kwargs}


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = list(obj)
        if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return f"a bare state dict of {len(keys)} tensors (first key {keys[0]!r})"
        shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
        return f"a dict with keys [{shown}]"
    return f"a {type(obj).__name__}"


def _is_torchscript(path: Path) -> bool:
    """Whether a zip file is a TorchScript archive, from its member names alone."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False  # then torch.load(weights_only=True) refuses it, running nothing
    return any(
        n == "constants.pkl"
        or n.endswith("/constants.pkl")
        or n.startswith("code/")
        or "/code/" in n
        for n in names
    )


def load_model(
    path: str | Path, *, trust_pickle: bool = False, map_location: str = "cpu"
) -> nn.Module:
    """Load a model from a fisherlab checkpoint, TorchScript, or a trusted pickle.

    Args:
        path: The file.
        trust_pickle: Allow a pickled ``nn.Module`` or a TorchScript archive
            (both run code from the file while loading; only for files you
            trust). A warning is issued.
        map_location: Device to load tensors to.

    Returns:
        The model in eval mode, with ``model.fisherlab_meta`` (a
        :class:`ModelMeta`) holding the checkpoint's metadata.

    Raises:
        FisherlabError: For a missing, truncated, corrupt, foreign or
            mismatched file, one with non-finite weights, or a pickle or
            TorchScript archive without ``trust_pickle``; the message says what
            was found and expected.
    """
    path = Path(path)
    expected = "expected a checkpoint written by fisherlab (save_model / fisherlab train)"
    if not path.is_file():
        raise FisherlabError(f"checkpoint {path} does not exist; {expected}")
    size = path.stat().st_size
    if is_export_archive(path):
        raise FisherlabError(
            f"{path} is a torch.export program (.pt2): it has no nn.Module to take per-sample "
            "gradients of or to train; save the model's state_dict and pass its spec with "
            "--weights (e.g. torchvision:resnet18 --weights FILE), or `fisherlab import` it"
        )
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        if not trust_pickle:
            raise FisherlabError(
                f"{path} is a TorchScript archive, which is code: loading it runs methods "
                "stored in the file (e.g. __setstate__); pass --trust-pickle "
                "(trust_pickle=True, which covers TorchScript as well as pickles) if you "
                "trust its source; TorchScript serves `layers` and `evaluate` only: profile, "
                "train and attack need an eager model (its spec with --weights FILE)"
            )
        return _checked(_load_torchscript(path, map_location), path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc) or not zipfile.is_zipfile(path):
            head = path.read_bytes()[:8]
            raise FisherlabError(
                f"{path} is not a readable torch file ({size} bytes starting "
                f"{head!r}: truncated, corrupt or another format); {expected}"
            ) from None
        if not trust_pickle:
            raise FisherlabError(
                f"{path} holds pickled Python objects (e.g. a whole nn.Module), and "
                "loading it can run arbitrary code; pass --trust-pickle "
                "(trust_pickle=True) if you trust its source, or re-save it with "
                "fisherlab.save_model"
            ) from None
        return _checked(_load_pickle(path, map_location), path)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        head = path.read_bytes()[:8]
        kind = "a truncated zip archive" if head.startswith(b"PK") else f"bytes {head!r}"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FisherlabError(
            f"{path} is not a readable torch file ({size} bytes, {kind}: {first}); {expected}"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FisherlabError(
            f"{path} is a torch file holding {_describe(obj)}, not a fisherlab "
            f"checkpoint ('format': {FORMAT!r} missing); a state dict needs its model: pass "
            "the model spec with --weights FILE (e.g. torchvision:resnet18 --weights FILE), "
            "or wrap it once with `fisherlab import SPEC --weights FILE --out model.pt`"
        )
    return _from_payload(obj, path, trust_pickle)


def _checked(model: nn.Module, path: Path) -> nn.Module:
    """``model`` if all its floating tensors are finite."""
    bad = non_finite(model.state_dict())
    if bad:
        raise FisherlabError(
            f"{path} holds non-finite values (NaN or inf) in {preview(bad)}: the training "
            "that wrote it diverged; retrain it with a lower learning rate"
        )
    return model


def _build(
    arch: str, kwargs: dict[str, Any], head: Any, path: Path, trust_code: bool = False
) -> nn.Module:
    if arch in ARCHITECTURES:
        model = build_model(arch, **kwargs)
    else:
        shape = {k: kwargs[k] for k in ("num_classes", "in_channels", "image_size") if k in kwargs}
        rest = {k: v for k, v in kwargs.items() if k not in shape}
        model = build_from_spec(arch, model_kwargs=rest, trust_code=trust_code, **shape)
    if head is not None:
        install_head(model, head, where=str(path))
    return model


def _from_payload(obj: dict, path: Path, trust_pickle: bool = False) -> nn.Module:
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise FisherlabError(
            f"{path} has checkpoint format version {version}; this fisherlab "
            f"({__version__}) reads version {FORMAT_VERSION}: upgrade fisherlab"
        )
    arch, kwargs = obj.get("arch"), obj.get("arch_kwargs") or {}
    arch = RENAMED.get(arch, arch) if isinstance(arch, str) else arch
    user_code = False
    if arch not in ARCHITECTURES:
        try:
            user_code = parse_model_spec(str(arch)).runs_user_code
        except FisherlabError:
            raise FisherlabError(
                f"{path} was saved with architecture {arch!r}, which this fisherlab does "
                f"not know; expected one of {', '.join(ARCHITECTURES)} or a model spec"
            ) from None
        if user_code and not trust_pickle:
            raise FisherlabError(
                f"{path} names user code {arch!r} as its model: loading it imports and runs "
                "that code; pass --trust-pickle (trust_pickle=True) if you trust it"
            )
    state, head = obj.get("state_dict") or {}, obj.get("head")
    if not isinstance(kwargs, dict) or not isinstance(state, dict):
        raise FisherlabError(
            f"{path}: arch_kwargs and state_dict must be dicts; the file is damaged"
        )
    kwargs = dict(kwargs)
    bad = non_finite(state)
    if bad:
        raise FisherlabError(
            f"{path} holds non-finite values (NaN or inf) in {preview(bad)}: the training "
            "that wrote it diverged; retrain it with a lower learning rate"
        )
    # the declared architecture, on the meta device (no memory), must fit the state dict
    # before the real model is allocated: a small file cannot ask for a huge model
    if user_code:  # user code may not build on the meta device: build it for real
        skeleton = _build(arch, kwargs, head, path, trust_code=True)
    else:
        with torch.device("meta"):
            skeleton = _build(arch, kwargs, head, path)
    mismatch = state_mismatch(skeleton.state_dict(), state, str(arch))
    if mismatch:
        raise FisherlabError(
            f"{path}: the state dict does not match {arch}({kwargs}): {mismatch}"
            "; the file is damaged or was edited by hand"
        )
    model = skeleton if user_code else _build(arch, kwargs, head, path)
    model.load_state_dict(state)
    spec = obj.get("input_spec")
    model.fisherlab_meta = ModelMeta(
        arch=arch,
        arch_kwargs=kwargs,
        head=head,
        class_names=obj.get("class_names"),
        input_spec=InputSpec.from_dict(spec) if spec else None,
        train_config=obj.get("train_config"),
        metrics=dict(obj.get("metrics") or {}),
        fisherlab_version=obj.get("fisherlab_version"),
        source="fisherlab",
        path=str(path),
    )
    return model.eval()


def _load_torchscript(path: Path, map_location: str) -> nn.Module:
    warnings.warn(
        f"loading {path} as TorchScript (trust_pickle=True): this runs code from the file",
        stacklevel=3,
    )
    try:
        model = torch.jit.load(str(path), map_location=map_location)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "?"
        raise FisherlabError(f"{path}: corrupt TorchScript archive ({first})") from None
    model.fisherlab_meta = ModelMeta(source="torchscript", path=str(path))
    return model.eval()


def _load_pickle(path: Path, map_location: str) -> nn.Module:
    warnings.warn(
        f"loading {path} as an arbitrary pickle (trust_pickle=True): this runs code from the file",
        stacklevel=3,
    )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise FisherlabError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _from_payload(obj, path, trust_pickle=True)
    if not isinstance(obj, nn.Module):
        raise FisherlabError(f"{path} unpickles to {_describe(obj)}; expected an nn.Module")
    meta = getattr(obj, "fisherlab_meta", None)
    if not isinstance(meta, ModelMeta):
        obj.fisherlab_meta = ModelMeta(source="pickle", path=str(path))
    return obj.eval()


def _feed(digest: Any, obj: Any) -> None:
    """Hash ``obj`` canonically: tensors by shape, dtype and bytes; dicts by sorted keys."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"T{tuple(tensor.shape)}{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, list | tuple):
        digest.update(f"L{len(obj)};".encode())
        for item in obj:
            _feed(digest, item)
    else:
        text = json.dumps(obj, default=repr)
        digest.update(f"V{len(text)};{text}".encode())


def checkpoint_digest(path: str | Path) -> str:
    """A SHA-256 of a checkpoint's content, equal for every file that holds the same content.

    For a fisherlab checkpoint (read with ``weights_only=True``, so no code
    runs): the state dict's tensor names, shapes, dtypes and values and the
    metadata (architecture, head, class names, input spec, training config,
    metrics, versions), independently of how the file's zip archive is laid
    out. For any other file (TorchScript, a pickle, a missing format key) it
    is the SHA-256 of the file's bytes, as before. ``TrainConfig.key`` and
    ``GANConfig.key`` hash their ``init`` / ``target`` with it.

    Args:
        path: An existing file.

    Returns:
        64 hex digits.
    """
    path = Path(path)
    if zipfile.is_zipfile(path) and not _is_torchscript(path):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and obj.get("format") == FORMAT:
                digest = hashlib.sha256(b"fisherlab-checkpoint-content:")
                _feed(digest, obj)
                return digest.hexdigest()
        except Exception:  # noqa: BLE001 - not a readable checkpoint: hash its bytes
            pass
    return hashlib.sha256(path.read_bytes()).hexdigest()

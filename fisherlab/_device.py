"""Where and in which precision to compute: ``--device``, ``--amp`` and ``--workers``.

:func:`resolve_device` turns ``--device`` into a torch device, or refuses;
:func:`device_key` is what a device adds to a cache key (nothing for the
CPU); :func:`check_amp`, :func:`autocast` and :func:`grad_scaler` give mixed
precision on CUDA (refused elsewhere); :func:`full_precision` keeps a block,
such as the Fisher engine, in the model's own precision (no autocast, no TF32).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from fisherlab.errors import FisherlabError


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """The torch device that ``device`` names, checked to exist on this machine.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a
            ``torch.device``, or ``"auto"``/``None``: the device named by the
            environment variable ``FISHERLAB_DEVICE`` if it is set (e.g. ``cpu``
            on a GPU machine; the test suite sets it), else the first GPU if
            there is one, else the CPU.

    Returns:
        The device.

    Raises:
        FisherlabError: For a malformed name or a device this machine lacks.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        default = os.environ.get("FISHERLAB_DEVICE", "").strip()
        if default and default != "auto":
            try:
                return resolve_device(default)
            except FisherlabError as exc:
                raise FisherlabError(f"FISHERLAB_DEVICE={default!r}: {exc}") from None
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise FisherlabError(
            f"unknown device {device!r}: expected cpu, cuda, cuda:N, mps or auto"
        ) from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise FisherlabError(
                f"device {device!r}: CUDA is not available on this machine; use --device cpu"
            )
        count = torch.cuda.device_count()
        if chosen.index is not None and chosen.index >= count:
            raise FisherlabError(
                f"device {device!r}: this machine has {count} CUDA device(s), 0..{count - 1}"
            )
    elif chosen.type == "mps":
        if not torch.backends.mps.is_available():
            raise FisherlabError(f"device {device!r}: MPS is not available on this machine")
    elif chosen.type != "cpu":
        raise FisherlabError(
            f"device {device!r} is not supported: expected cpu, cuda, cuda:N, mps or auto"
        )
    return chosen


AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The ``--amp`` modes and the dtype autocast computes in."""


def device_name(device: str | torch.device | None) -> str:
    """The device a run records: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... (``None``: auto).

    Unlike :func:`resolve_device` a named device is not checked to exist, so a
    config saved on a GPU machine can be read back on a CPU-only one.

    Raises:
        FisherlabError: For a malformed name.
    """
    if device is None or device == "auto":
        return str(resolve_device(None))
    try:
        return str(torch.device(device))
    except (RuntimeError, TypeError):
        raise FisherlabError(
            f"unknown device {device!r}: expected cpu, cuda, cuda:N, mps or auto"
        ) from None


def device_key(device: str | torch.device | None) -> str | None:
    """What a device adds to a config's cache key: ``None`` for the CPU, else its type.

    Results computed on a GPU are not bitwise equal to the CPU's, so a GPU run
    gets its own key (``"cuda"``; the device index does not change results);
    CPU runs keep the keys they had before devices entered the configs.

    Example:
        >>> device_key("cpu"), device_key("cuda:1")
        (None, 'cuda')
    """
    kind = torch.device(device_name(device)).type
    return None if kind == "cpu" else kind


def check_workers(workers: int) -> int:
    """``workers`` if it is a valid number of data-loading processes (>= 0).

    Raises:
        FisherlabError: For a negative or non-integer value.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise FisherlabError(f"--workers must be an integer >= 0, got {workers!r}")
    return workers


def check_amp(amp: str | None, device: str | torch.device) -> str | None:
    """``amp`` if mixed precision ``amp`` can run on ``device``.

    Args:
        amp: ``None`` (float32), ``"bf16"`` or ``"fp16"``.
        device: The device of the run.

    Returns:
        ``amp``.

    Raises:
        FisherlabError: For an unknown mode, or any mode off CUDA.
    """
    if amp is None:
        return None
    if amp not in AMP_DTYPES:
        raise FisherlabError(f"unknown --amp {amp!r}: expected bf16 or fp16 (or leave it out)")
    kind = torch.device(device).type
    if kind != "cuda":
        raise FisherlabError(
            f"--amp {amp} needs a CUDA device, but this run is on {kind}: drop --amp "
            "(or use --device cuda on a machine with a GPU)"
        )
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise FisherlabError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16")
    return amp


def autocast(amp: str | None, device: str | torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in the dtype of ``amp`` on ``device``, or nothing for ``amp=None``."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp])


def no_autocast(device: str | torch.device) -> contextlib.AbstractContextManager:
    """A block in which autocast is off (e.g. WGAN-GP's gradient penalty under ``--amp``)."""
    return torch.autocast(torch.device(device).type, enabled=False)


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """A block in which CUDA's float32 matmuls and convolutions are IEEE float32, not TF32.

    PyTorch lets cuDNN convolutions use TF32 (a 10-bit mantissa) by default on
    recent GPUs; the flags are set with PyTorch's ``fp32_precision`` settings
    and restored afterwards.
    """
    flags = [torch.backends.cuda.matmul, torch.backends.cudnn.conv]
    saved = [flag.fp32_precision for flag in flags]
    try:
        for flag in flags:
            flag.fp32_precision = "ieee"
        yield
    finally:
        for flag, value in zip(flags, saved, strict=True):
            flag.fp32_precision = value


@contextlib.contextmanager
def full_precision(device: str | torch.device) -> Iterator[None]:
    """A block computed in the model's own precision: no autocast, and no TF32 on CUDA.

    The Fisher engine and the network an attack records the Fisher on run in
    it, so the Fisher is float32 (or float64) whatever ``--amp`` or PyTorch's
    TF32 defaults say.
    """
    kind = torch.device(device).type
    with torch.autocast(kind, enabled=False):
        if kind != "cuda":
            yield
            return
        with ieee_float32():
            yield


def grad_scaler(amp: str | None, device: str | torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for ``fp16`` only (bf16 and float32 need none).

    A disabled scaler passes losses through and calls ``optimizer.step()``
    itself, so one code path serves every precision.
    """
    kind = torch.device(device).type
    return torch.amp.GradScaler(kind, enabled=amp == "fp16")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU for an empty model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def describe_device(device: str | torch.device) -> str:
    """The device for a run's record, with a GPU's name, e.g. ``cuda:0 (NVIDIA H200)``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)

"""Where to compute: :func:`resolve_device` turns ``--device`` into a torch device, or refuses."""

from __future__ import annotations

import torch

from fisherlab.errors import FisherlabError


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """The torch device that ``device`` names, checked to exist on this machine.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a
            ``torch.device``, or ``"auto"``/``None`` (the first GPU if there is
            one, else the CPU).

    Returns:
        The device.

    Raises:
        FisherlabError: For a malformed name or a device this machine lacks.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
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

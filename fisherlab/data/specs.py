"""How pixels in ``[0, 1]`` become a model's input: :class:`InputSpec`.

Images are kept in pixel space ``[0, 1]`` and turned into model input by an
:class:`InputSpec` (channels, square size, per-channel mean and std). The spec
is stored in every checkpoint, so a model is always fed data the way it was
trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fisherlab.data.limits import MAX_IMAGE_SIZE
from fisherlab.errors import FisherlabError


@dataclass(frozen=True)
class InputSpec:
    """How pixels in ``[0, 1]`` become a model's input.

    Attributes:
        channels: 1 (grey) or 3 (RGB).
        size: Height and width of the square input.
        mean: Per-channel mean subtracted after resizing, or ``None`` for data
            used as stored (``npz``).
        std: Per-channel standard deviation divided by, or ``None``.
    """

    channels: int
    size: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    def to_dict(self) -> dict:
        """A JSON- and ``weights_only``-safe dict."""
        return {
            "channels": self.channels,
            "size": self.size,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        """Inverse of :meth:`to_dict`, for specs read from files.

        Raises:
            FisherlabError: For a spec fisherlab never writes: not 1 or 3
                channels, a side outside ``1..MAX_IMAGE_SIZE``, or mean/std
                of another length than 1 or the channels.
        """
        try:
            channels, size = int(d["channels"]), int(d["size"])
            mean = None if d.get("mean") is None else tuple(float(v) for v in d["mean"])
            std = None if d.get("std") is None else tuple(float(v) for v in d["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FisherlabError(
                f"malformed input spec ({type(exc).__name__}: {exc}); expected "
                "{'channels': 1 or 3, 'size': S, 'mean': [...] or None, 'std': [...] or None}"
            ) from None
        lengths = {len(v) for v in (mean, std) if v is not None}
        if channels not in (1, 3) or not 1 <= size <= MAX_IMAGE_SIZE or lengths - {1, channels}:
            raise FisherlabError(
                f"input spec with {channels} channels, side {size} and mean/std of "
                f"{sorted(lengths)} values: expected 1 or 3 channels, a side of "
                f"1..{MAX_IMAGE_SIZE} and a mean and std per channel (or one for all)"
            )
        if (mean is None) != (std is None):
            raise FisherlabError(
                "input spec with a mean but no std (or a std but no mean): give both or neither"
            )
        if mean is not None and std is not None:
            if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
                raise FisherlabError(
                    f"input spec with mean {mean} and std {std}: expected finite values and "
                    "a positive std"
                )
        return cls(channels=channels, size=size, mean=mean, std=std)

    def with_channels(self, channels: int) -> InputSpec:
        """The same spec for another channel count (mean/std are broadcast)."""
        if channels == self.channels:
            return self

        def adapt(v: tuple[float, ...] | None) -> tuple[float, ...] | None:
            return None if v is None else (float(np.mean(v)),) * channels

        return InputSpec(channels, self.size, adapt(self.mean), adapt(self.std))

    def normalize(self, pixels: Tensor) -> Tensor:
        """Map a batch of ``[0, 1]`` pixels with this spec's shape to model input."""
        if self.mean is None or self.std is None:
            return pixels
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device)
        return (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

"""PLG-MI's differentiable image augmentations, drawn from a seeded generator.

PLG-MI (Yuan et al., AAAI 2023) feeds the target augmented views of the
generated images, in its GAN training and in the attack, so that the
reconstructions do not exploit one view's quirks. The authors' code (kornia)
uses a random resized crop (area 0.8-1, aspect ratio 1), colour jitter
(brightness and contrast 0.2; with probability 0.5 in GAN training), a
horizontal flip and a rotation of up to 5 degrees.

:func:`augment` does the same per image with one affine resampling
(crop, rotation and flip in one ``grid_sample``, zero padding as kornia's
rotation) and a brightness and contrast jitter (``x * b``, then a blend with
the image's mean by ``c``, clamped to [0, 1]). Each output row depends on its
own image only, so per-sample Fisher quantities stay per sample. The random
numbers are drawn on the CPU from the given generator and then moved, so a
run is the same on every device and whether or not the Fisher is recorded.

Scaled down for digits: the flip is off by default (:data:`PLGMI_AUGMENT`),
since a mirrored digit is not the digit (faces are near-symmetric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentPolicy:
    """The random augmentation of one view.

    Attributes:
        min_area: Smallest crop area as a share of the image (the largest is 1).
        degrees: Largest rotation, either way.
        brightness: Brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: Contrast factor drawn from ``[1 - c, 1 + c]``.
        jitter_p: Probability that an image gets the colour jitter.
        flip: Mirror half of the images left to right.
    """

    min_area: float = 0.8
    degrees: float = 5.0
    brightness: float = 0.2
    contrast: float = 0.2
    jitter_p: float = 1.0
    flip: bool = False


PLGMI_AUGMENT = AugmentPolicy()
"""The attack's augmentation (PLG-MI's, without the flip for digits)."""

PLGMI_GAN_AUGMENT = AugmentPolicy(jitter_p=0.5)
"""The augmentation of the fakes in PLG-MI's GAN training (jitter with probability 0.5)."""


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def augment(images: Tensor, policy: AugmentPolicy, gen: torch.Generator) -> Tensor:
    """One augmented view of each image (pixels in [0, 1]), differentiable in ``images``.

    Args:
        images: ``(N, C, S, S)`` pixels.
        policy: What to draw.
        gen: CPU generator the random numbers are drawn from.

    Returns:
        ``(N, C, S, S)`` augmented pixels.
    """
    n = images.shape[0]
    side = _uniform(n, math.sqrt(policy.min_area), 1.0, gen)
    angle = _uniform(n, -policy.degrees, policy.degrees, gen) * math.pi / 180
    tx = _uniform(n, -1.0, 1.0, gen) * (1 - side)
    ty = _uniform(n, -1.0, 1.0, gen) * (1 - side)
    mirror = torch.ones(n, dtype=torch.float64)
    if policy.flip:
        mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    cos, sin = torch.cos(angle) * side, torch.sin(angle) * side
    theta = torch.stack(
        [torch.stack([cos * mirror, -sin, tx], 1), torch.stack([sin * mirror, cos, ty], 1)], 1
    )
    b = _uniform(n, 1 - policy.brightness, 1 + policy.brightness, gen)
    c = _uniform(n, 1 - policy.contrast, 1 + policy.contrast, gen)
    jitter = torch.rand(n, generator=gen) < policy.jitter_p
    b = torch.where(jitter, b, 1.0)
    c = torch.where(jitter, c, 1.0)
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
    shape = (n,) + (1,) * (images.dim() - 1)
    out = out * b.to(images.device, images.dtype).view(shape)
    mean = out.mean(dim=tuple(range(1, images.dim())), keepdim=True)
    out = (out - mean) * c.to(images.device, images.dtype).view(shape) + mean
    return out.clamp(0, 1)

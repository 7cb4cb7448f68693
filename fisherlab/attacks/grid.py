"""The reconstruction grid an attack writes (``reconstructions.png``), labelled.

One column per attacked class, its name on top; the first rows are the
attack's reconstructions (at most :data:`MAX_ROWS` per class), the last rows
real private images of the same class, each block labelled on the left
("reconstructed" / "private"). Every image is enlarged with nearest-neighbour
sampling to at least :data:`MIN_PIXELS` pixels a side, so 28x28 digits stay
readable. Drawn with Pillow (torchvision's dependency), not matplotlib, so
that attacks write it without a plotting stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

MIN_PIXELS = 64
"""Smallest side of one image in the grid, in pixels."""

MAX_ROWS = 8
"""Reconstructions shown per class (the rest are in ``reconstructions.pt``)."""

__all__ = ["MAX_ROWS", "MIN_PIXELS", "reconstruction_grid"]


def _to_pil(image: torch.Tensor, side: int) -> Image.Image:
    """A (C, H, W) image in [0, 1] as a Pillow RGB image of ``side`` pixels."""
    pixels = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1)
    array = pixels.permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array, mode="RGB").resize((side, side), Image.Resampling.NEAREST)


def reconstruction_grid(
    reconstructions: torch.Tensor,
    class_names: Sequence[str],
    private: torch.Tensor | None = None,
) -> Image.Image:
    """The labelled grid (module docs).

    Args:
        reconstructions: ``(K, R, C, H, W)``: ``R`` reconstructions for each of
            ``K`` classes, pixels in [0, 1].
        class_names: ``K`` names, one per column.
        private: ``(K, P, C, H, W)`` real private images of the same classes, or ``None``.

    Returns:
        The image.
    """
    n_classes, n_recon = reconstructions.shape[:2]
    shown = min(n_recon, MAX_ROWS)
    n_private = 0 if private is None else private.shape[1]
    height, width = reconstructions.shape[-2:]
    side = max(height, width) * math.ceil(MIN_PIXELS / max(height, width))  # integer zoom
    font = ImageFont.load_default(size=max(12, side // 5))
    pad, left, top = 3, int(side * 1.9), int(side * 0.45)
    gap = side // 3 if n_private else 0
    rows = shown + n_private
    canvas = Image.new(
        "RGB",
        (left + n_classes * (side + pad), top + rows * (side + pad) + gap),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for k in range(n_classes):
        x = left + k * (side + pad)
        name = str(class_names[k])
        name = name if len(name) <= 12 else name[:11] + "…"
        draw.text((x + side / 2, top / 2), name, fill="black", font=font, anchor="mm")
        for r in range(shown):
            canvas.paste(_to_pil(reconstructions[k, r], side), (x, top + r * (side + pad)))
        for r in range(n_private):
            y = top + (shown + r) * (side + pad) + gap
            canvas.paste(_to_pil(private[k, r], side), (x, y))
    blocks = [("reconstructed", top, shown)]
    if n_private:
        blocks.append(("private", top + shown * (side + pad) + gap, n_private))
    for label, y0, count in blocks:
        middle = y0 + count * (side + pad) / 2
        draw.text((left - pad * 3, middle), label, fill="black", font=font, anchor="rm")
    return canvas

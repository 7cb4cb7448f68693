"""PLG-MI's pseudo-labels: the public images the target is most confident about, per class.

For every class ``c`` of the target, the ``top_n`` public images with the
highest softmax probability of ``c`` are kept and labelled ``c`` (Yuan et
al., AAAI 2023, "top-n selection"). As in the authors' code, the ranking is
per class over all public images, not by the predicted class, so one image
can be kept for two classes, and images in no class's top ``n`` are dropped.
The authors keep the top 30 of each of 1,000 CelebA identities (about 40 %
of the public set); fisherlab's default for 5 digit classes, 200, keeps a
similar share (1,000 of 2,500 public images).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fisherlab._device import model_device
from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError


def target_probabilities(target: nn.Module, spec: InputSpec, pixels: Tensor) -> Tensor:
    """``softmax(T(x))`` of the target for pixel-space images, ``(N, K)`` on the CPU."""
    device = model_device(target)
    with torch.no_grad():
        return torch.cat(
            [
                torch.softmax(target(spec.normalize(pixels[i : i + 256].to(device))), 1).cpu()
                for i in range(0, len(pixels), 256)
            ]
        )


def top_n_pseudo_labels(probabilities: Tensor, top_n: int) -> tuple[Tensor, Tensor]:
    """Per class, the rows of the ``top_n`` highest probabilities of that class.

    Args:
        probabilities: ``(N, K)`` target probabilities of the public images.
        top_n: Images kept per class.

    Returns:
        ``(rows, labels)``: ``K * top_n`` row indices into the public images
        (a row may repeat across classes) and the class each is labelled with.

    Raises:
        FisherlabError: For fewer than two classes, or fewer public images
            than ``top_n``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> top_n_pseudo_labels(p, 1)
        (tensor([0, 2]), tensor([0, 1]))
    """
    n, k = probabilities.shape
    if k < 2:
        raise FisherlabError(
            f"the target has {k} class; pseudo-labelling needs at least 2 (it ranks public "
            "images by each class's probability)"
        )
    if not 1 <= top_n <= n:
        raise FisherlabError(
            f"--top-n {top_n} needs at least that many public images, and there are {n}: "
            f"choose a --top-n in 1..{n}"
        )
    rows = probabilities.topk(top_n, dim=0).indices.T.reshape(-1)
    labels = torch.arange(k).repeat_interleave(top_n)
    return rows, labels

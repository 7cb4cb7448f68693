r"""A model's head: replacing it for fine-tuning, and MID's VIB head.

The head is the last layer of the layer map (:mod:`fisherlab.models.layers`):
an ``nn.Linear``, or the variational information bottleneck head of the MID
defense (:class:`VIBHead`, trained by :class:`fisherlab.training.defenses.MID`).
:func:`replace_head` puts a fresh ``Linear`` for new classes in place (TL-DMI
fine-tuning), :func:`install_head` a head described in a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fisherlab.errors import FisherlabError
from fisherlab.models.layers import layers
from fisherlab.models.meta import ModelMeta

HEAD_KINDS = ("linear", "vib_head")
"""Layer kinds :func:`swap_head` accepts as a model's head."""


def swap_head(
    model: nn.Module, build: Callable[[nn.Module], nn.Module], seed: int | None = None
) -> nn.Module:
    """Replace the model's head (its last layer) with ``build(old_head)``, in place.

    The head is an ``nn.Linear`` or the VIB head of MID
    (:class:`VIBHead`); both expose ``in_features`` and
    ``out_features``. ``build`` runs under ``torch.manual_seed(seed)`` when a
    seed is given, and the global random state is restored afterwards; the new
    head gets the old one's device and dtype.

    Args:
        model: The model.
        build: Makes the new head from the old one.
        seed: Seed for the new head's initialisation (``None``: global RNG).

    Returns:
        The new head module.

    Raises:
        FisherlabError: If the last layer is neither, or the model is TorchScript.
    """
    last = layers(model)[-1]
    if last.kind not in HEAD_KINDS or not last.name:
        raise FisherlabError(
            f"cannot replace the head: the last layer {last.name!r} is a {last.kind}, "
            "expected an nn.Linear inside the model"
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise FisherlabError(
            "cannot replace the head of a TorchScript module: use a fisherlab checkpoint "
            "(fisherlab.save_model) or a plain nn.Module"
        )
    module = model.get_submodule(last.name)
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        new = build(module)
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)
    weight = next(module.parameters())
    new = new.to(device=weight.device, dtype=weight.dtype)
    parent_name, _, child = last.name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return new


def replace_head(model: nn.Module, num_classes: int, seed: int | None = None) -> nn.Module:
    """Replace the model's head with a fresh ``Linear`` for ``num_classes``, in place.

    A VIB head (MID) is replaced by a plain ``Linear`` as well; the MID defense
    puts a new one in place when it is asked for again.

    Args:
        model: A model whose last layer in forward order is an ``nn.Linear``
            (or a VIB head).
        num_classes: Outputs of the new head.
        seed: Seed for the new head's initialisation (``None``: global RNG).

    Returns:
        The new head module.

    Raises:
        FisherlabError: If the last layer is not a Linear.
    """
    new = swap_head(
        model,
        lambda old: nn.Linear(
            old.in_features,
            num_classes,
            bias=not isinstance(old, nn.Linear) or old.bias is not None,
        ),
        seed,
    )
    meta = getattr(model, "fisherlab_meta", None)
    if meta is not None:
        meta.head = None
        if meta.arch_kwargs is not None:
            meta.arch_kwargs = {**meta.arch_kwargs, "num_classes": num_classes}
    return new


# --------------------------------------------------------------------------- MID's VIB head
def vib_statistics(stats: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Split the VIB encoder's output ``s`` into ``mu`` and ``sigma``.

    ``mu = s[:k]`` and ``sigma = softplus(s[k:] - 5)``, as in MID's code.
    """
    return stats[..., :k], F.softplus(stats[..., k:] - 5.0)


class VIBHead(nn.Module):
    r"""The variational information bottleneck head of MID.

    ``encoder = Linear(d, 2k)`` maps the features ``h`` to the mean and scale of
    :math:`q(z \mid h) = \mathcal N(\mu, \operatorname{diag} \sigma^2)`:
    :math:`\mu` is the first half of its output ``s`` and
    :math:`\sigma = \operatorname{softplus}(s_{k:} - 5)` the second (as in
    MID's code). In training mode :math:`z = \mu + \sigma \odot \epsilon`,
    :math:`\epsilon \sim \mathcal N(0, I)` (reparameterisation); in eval mode
    :math:`z = \mu`, so the logits ``decoder(z)`` (``decoder = Linear(k, K)``)
    are deterministic. The layer map counts the whole head as one layer
    (kind ``vib_head``).

    Args:
        in_features: Feature dimension ``d``.
        out_features: Number of classes ``K``.
        bottleneck: Dimension ``k`` of ``z``.

    Example:
        >>> head = VIBHead(8, 3, bottleneck=4).eval()
        >>> h = torch.randn(2, 8)
        >>> torch.equal(head(h), head(h)), head(h).shape
        (True, torch.Size([2, 3]))
    """

    layer_kind = "vib_head"
    """One layer of the layer map with its whole subtree (:mod:`fisherlab.models.layers`)."""

    def __init__(self, in_features: int, out_features: int, bottleneck: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bottleneck = bottleneck
        self.encoder = nn.Linear(in_features, 2 * bottleneck)
        self.decoder = nn.Linear(bottleneck, out_features)

    def forward(self, h: Tensor) -> Tensor:
        """Logits for features ``h`` of shape (N, d)."""
        mu, sigma = vib_statistics(self.encoder(h), self.bottleneck)
        z = mu + sigma * torch.randn_like(sigma) if self.training else mu
        return self.decoder(z)


def install_head(
    model: nn.Module, head: Mapping[str, Any], seed: int | None = None, where: str = "model"
) -> nn.Module:
    """Put the head described by ``head`` in place of ``model``'s head, in place.

    The one kind is ``{"kind": "vib", "bottleneck": k}``, a :class:`VIBHead`
    with the old head's ``in_features`` and ``out_features``. It is recorded
    as ``model.fisherlab_meta.head``, so that checkpoints rebuild it
    (:func:`fisherlab.load_model` calls this function).

    Args:
        model: A model whose last layer is an ``nn.Linear`` (or a VIB head).
        head: The description.
        seed: Seed of the new head's initialisation (``None``: global RNG).
        where: The model's origin, for error messages.

    Returns:
        The new head.

    Raises:
        FisherlabError: For an unknown description or a model without such a head.
    """
    k = head.get("bottleneck")
    if head.get("kind") != "vib" or not isinstance(k, int) or k < 1:
        raise FisherlabError(
            f"{where} has a head {dict(head)} that this fisherlab does not know; expected "
            "{'kind': 'vib', 'bottleneck': k >= 1}: upgrade fisherlab"
        )
    new = swap_head(model, lambda old: VIBHead(old.in_features, old.out_features, k), seed)
    meta = getattr(model, "fisherlab_meta", None)
    if isinstance(meta, ModelMeta):
        meta.head = {"kind": "vib", "bottleneck": k}
    return new

"""Freezing layers for real: :func:`freeze` and :func:`training_mode`.

Setting ``requires_grad=False`` freezes a layer's parameters but not its
BatchNorm statistics, which a module in train mode updates from every batch;
:func:`training_mode` keeps the frozen modules in eval mode while the rest
trains, so that frozen layers stay bit-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn

from fisherlab.models.layers import layers

__all__ = ["freeze", "training_mode"]


def freeze(model: nn.Module, frozen: list[int]) -> list[nn.Module]:
    """Freeze the given layers of ``model`` in place (``requires_grad=False``).

    Freezing parameters alone does not freeze a layer: a BatchNorm in train
    mode still updates its running statistics from every batch, so the frozen
    layers would drift. Train inside :func:`training_mode` with the returned
    modules, which keeps them in eval mode (as :func:`train` does)::

        frozen = fl.freeze(model, [0, 1, 2])
        with fl.training_mode(model, frozen):
            ...  # your own loop: frozen layers stay bit-identical

    Args:
        model: The model.
        frozen: Layer indices to freeze (see :func:`fisherlab.layer_map`).

    Returns:
        The modules of the frozen layers, to be kept in eval mode in training.
    """
    all_layers = layers(model)
    prefixes = [m for i in frozen for m in all_layers[i].modules]
    frozen_params = {p for i in frozen for p in all_layers[i].params}
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen_params)
    return [
        m
        for name, m in model.named_modules()
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    ]


@contextlib.contextmanager
def training_mode(
    model: nn.Module, frozen_modules: Iterable[nn.Module] = ()
) -> Iterator[nn.Module]:
    """``model.train()`` with ``frozen_modules`` in eval mode; every mode restored on exit.

    Args:
        model: The model.
        frozen_modules: What :func:`freeze` returned.

    Yields:
        The model.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
        >>> with training_mode(net, [net[1]]):
        ...     net.training, net[1].training
        (True, False)
        >>> net.training
        False
    """
    modes = {m: m.training for m in model.modules()}
    model.train()
    for module in frozen_modules:
        module.eval()
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode

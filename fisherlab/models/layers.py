"""The layer map: the one unit of "layer" used everywhere in fisherlab.

Fisher rows, freeze boundaries and plots all count layers the same way: the
parameterised blocks of a model in forward order. The grouping rules, in order:

1. **Whole-subtree units**: a module whose class declares a ``layer_kind``
   attribute (fisherlab's :class:`~fisherlab.models.heads.VIBHead`,
   ``TransformerBlock`` and ``PatchEmbedding``; any user module may declare
   one), or whose type name is in :data:`UNIT_KINDS` (foreign and TorchScript
   modules), is one layer together with everything inside it. Residual blocks
   (torchvision ``BasicBlock``/``Bottleneck``: both convolutions, their
   BatchNorms and the shortcut projection) are one layer, because a boundary
   inside a block would separate a residual branch from its shortcut;
   transformer blocks (attention and MLP with their LayerNorms), the patch
   embedding (projection, class token, position embeddings) and the VIB head
   of the MID defense (encoder and decoder) likewise.
2. **Leaf modules with parameters** (:data:`LEAF_KINDS`) are one layer each, and
   a ``Conv`` immediately followed (in registration order) by a ``BatchNorm``
   over its output channels is merged with it into one ``conv_bn`` layer. A
   ``Linear`` stays alone. Unknown leaf types become ``other:TypeName``.
   A module with parametrizations (``torch.nn.utils.parametrize``, e.g.
   ``parametrizations.weight_norm``) is one leaf layer of its own type's kind,
   its ``parametrizations`` subtree included.
3. **Loose parameters** held directly by a container (e.g. torchvision ViT's
   ``class_token``) join the next layer in registration order (the last one if
   none follows).

Registration order is forward order for every architecture in the registry
(``fisherlab.models``). A freeze boundary ``b`` freezes the layers with index
``< b``. The ``modules`` of a layer are module or parameter names; a state-dict
key belongs to the layer when it equals one of them or starts with it plus
``"."`` (see :func:`layer_state_keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
from torch import nn
from torch.nn.utils import parametrize

from fisherlab.data.limits import MAX_LAYERS, parse_ranges
from fisherlab.errors import FisherlabError, preview

UNIT_KINDS: dict[str, str] = {
    "BasicBlock": "residual_block",
    "Bottleneck": "residual_block",
    "EncoderBlock": "transformer_block",
    "MultiheadAttention": "attention",
    # fisherlab's own units declare ``layer_kind``; a TorchScript copy keeps
    # only its class name, so the names are listed here too
    "TransformerBlock": "transformer_block",
    "PatchEmbedding": "patch_embedding",
    "VIBHead": "vib_head",
}
"""Module type name -> layer kind, for foreign modules that form one layer with their subtree."""

LEAF_KINDS: dict[str, str] = {
    "Conv1d": "conv",
    "Conv2d": "conv",
    "Conv3d": "conv",
    "ConvTranspose2d": "conv",
    "Linear": "linear",
    "NonDynamicallyQuantizableLinear": "linear",
    "BatchNorm1d": "batchnorm",
    "BatchNorm2d": "batchnorm",
    "BatchNorm3d": "batchnorm",
    "LayerNorm": "layernorm",
    "GroupNorm": "groupnorm",
    "Embedding": "embedding",
}
"""Module type name -> layer kind, for leaf modules with parameters."""


@dataclass(frozen=True)
class Layer:
    """One layer of the layer map.

    Attributes:
        index: Position in forward order, from 0.
        name: The module name that identifies it (the conv of a ``conv_bn``).
        kind: ``conv_bn``, ``conv``, ``linear``, ``residual_block``, ...
        modules: Module (or loose parameter) names it covers.
        params: Full names of the parameters it holds, in model order.
        n_params: Number of scalar parameters.
    """

    index: int
    name: str
    kind: str
    modules: tuple[str, ...]
    params: tuple[str, ...]
    n_params: int


def _type_name(module: nn.Module) -> str:
    # TorchScript modules report the scripted class in ``original_name``.
    return getattr(module, "original_name", None) or type(module).__name__


def unit_kind(module: nn.Module) -> str | None:
    """The layer kind of a whole-subtree unit (see the module docs), else ``None``."""
    declared = getattr(type(module), "layer_kind", None)
    return declared if isinstance(declared, str) else UNIT_KINDS.get(_type_name(module))


def _covers(prefixes: Iterable[str], key: str) -> bool:
    return any(p == "" or key == p or key.startswith(p + ".") for p in prefixes)


def layers(model: nn.Module) -> list[Layer]:
    """The ordered layers of ``model`` (see the module docs for the rules).

    Args:
        model: Any ``nn.Module`` (TorchScript modules too).

    Returns:
        The layers; every parameter belongs to exactly one of them.

    Raises:
        FisherlabError: If the model has no parameters.
    """
    units: list[tuple[str, str, list[str]]] = []  # (name, kind, modules)
    loose: list[str] = []
    inside: list[str] = []
    for name, module in model.named_modules():
        if inside and _covers(inside, name):
            continue
        tname = _type_name(module)
        kind = unit_kind(module)
        if kind is None and parametrize.is_parametrized(module):
            # a parametrized Linear/Conv (weight computed from ``parametrizations``) is one leaf
            base = tname.removeprefix("Parametrized")
            kind = LEAF_KINDS.get(base, f"other:{base}")
            tname = base
        if kind is not None and name:
            units.append((name, kind, [name, *loose]))
            loose = []
            inside.append(name)
            continue
        direct = [n for n, _ in module.named_parameters(recurse=False)]
        if not direct:
            continue
        is_leaf = next(iter(module.children()), None) is None
        if is_leaf:
            kind = LEAF_KINDS.get(tname, f"other:{tname}")
            units.append((name, kind, [name, *loose]))
            loose = []
        else:
            loose.extend(f"{name}.{p}" if name else p for p in direct)
    if loose:
        if not units:
            raise FisherlabError("the model has no parameterised layers")
        last = units[-1]
        units[-1] = (last[0], last[1], last[2] + loose)

    by_name = dict(model.named_modules())  # get_submodule fails on TorchScript
    merged: list[tuple[str, str, list[str]]] = []
    for name, kind, mods in units:
        if merged and kind == "batchnorm" and merged[-1][1] == "conv":
            conv, bn = by_name[merged[-1][0]], by_name[name]
            if getattr(conv, "out_channels", None) == getattr(bn, "num_features", -1):
                prev = merged.pop()
                merged.append((prev[0], "conv_bn", prev[2] + mods))
                continue
        merged.append((name, kind, mods))
    if not merged:
        raise FisherlabError("the model has no parameters: nothing to map")

    named = list(model.named_parameters())
    result = []
    for index, (name, kind, mods) in enumerate(merged):
        params = [(n, p) for n, p in named if _covers(mods, n)]
        result.append(
            Layer(
                index=index,
                name=name,
                kind=kind,
                modules=tuple(mods),
                params=tuple(n for n, _ in params),
                n_params=sum(p.numel() for _, p in params),
            )
        )
    return result


def layer_map(model: nn.Module) -> pd.DataFrame:
    """The layer map of ``model`` as a tidy frame, one row per layer.

    Args:
        model: Any ``nn.Module``.

    Returns:
        Columns ``index``, ``name``, ``kind``, ``n_params`` and ``modules``
        (``;``-separated module names whose state-dict keys belong to the layer).

    Example:
        >>> from fisherlab.models import build_model
        >>> lm = layer_map(build_model("target_cnn", num_classes=5))
        >>> lm[["name", "kind"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
        [['features.0', 'conv_bn'], ['features.3', 'conv_bn'],
         ['features.7', 'conv_bn'], ['features.11', 'conv_bn'],
         ['fc', 'linear'], ['head', 'linear']]
    """
    rows = [
        {
            "index": layer.index,
            "name": layer.name,
            "kind": layer.kind,
            "n_params": layer.n_params,
            "modules": ";".join(layer.modules),
        }
        for layer in layers(model)
    ]
    return pd.DataFrame(rows, columns=["index", "name", "kind", "n_params", "modules"])


def layer_state_keys(modules: str | Sequence[str], keys: Iterable[str]) -> list[str]:
    """The state-dict keys that belong to a layer.

    Args:
        modules: The layer's ``modules`` (a ``;``-separated string or a sequence).
        keys: State-dict keys, e.g. ``model.state_dict().keys()``.

    Returns:
        Keys equal to a module name or starting with it plus ``"."``, in order.
    """
    prefixes = modules.split(";") if isinstance(modules, str) else list(modules)
    return [k for k in keys if _covers(prefixes, k)]


def parse_layer_selection(spec: str) -> tuple[int, ...]:
    """Parse a layer selection such as ``"0,1"`` or ``"2-4"``.

    Indices above :data:`~fisherlab.data.limits.MAX_LAYERS` are refused before
    any range is expanded.

    Args:
        spec: Comma-separated indices and ``a-b`` ranges.

    Returns:
        The sorted, unique indices.

    Raises:
        FisherlabError: For a malformed selection or an index above the cap.
    """
    return parse_ranges(spec, limit=MAX_LAYERS, what="layer", example="0,1 or 2-4")


def resolve_layer_indices(spec: str | Sequence[int], n_layers: int) -> list[int]:
    """Parse (if a string) and range-check a layer selection.

    Args:
        spec: A selection string (see :func:`parse_layer_selection`) or ints.
        n_layers: Number of layers of the model.

    Returns:
        The sorted, unique indices.

    Raises:
        FisherlabError: For a malformed selection or an index out of range.
    """
    indices = set(parse_layer_selection(spec) if isinstance(spec, str) else spec)
    bad = sorted(i for i in indices if not 0 <= i < n_layers)
    if bad or not indices:
        raise FisherlabError(
            f"layers {preview(bad) if bad else '(none)'} are out of range: the model has "
            f"layers 0-{n_layers - 1} (see `fisherlab layers`)"
        )
    return sorted(int(i) for i in indices)


def check_freeze_boundary(boundary: int, n_layers: int) -> int:
    """Check that ``boundary`` is a valid freeze boundary of a model with ``n_layers`` layers.

    A boundary ``b`` freezes the layers ``0..b-1``; the last layer (the head)
    is always trained, so ``b`` lies in ``0..n_layers-1``. This is the one
    place that rule is stated: training, the planner and the reproduction
    call it.

    Args:
        boundary: The boundary.
        n_layers: Number of layers of the model.

    Returns:
        ``boundary``.

    Raises:
        FisherlabError: If it is out of range.

    Example:
        >>> check_freeze_boundary(4, 6)
        4
    """
    if not 0 <= boundary <= n_layers - 1:
        raise FisherlabError(
            f"freeze boundary {boundary} is out of range: the model has {n_layers} layers, so "
            f"0..{n_layers - 1} (layer {n_layers - 1} is the head and is always trained)"
        )
    return boundary

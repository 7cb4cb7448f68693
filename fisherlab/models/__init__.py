"""Stage 2, models: what a model is, how it is built, its layers and its checkpoint.

* :mod:`~fisherlab.models.meta`: :class:`ModelMeta`, the metadata every model carries;
* :mod:`~fisherlab.models.architectures`: the registry of :func:`build_model`;
* :mod:`~fisherlab.models.layers`: the layer map, fisherlab's one unit of "layer";
* :mod:`~fisherlab.models.heads`: replacing a model's head, MID's VIB head;
* :mod:`~fisherlab.models.checkpoint`: safe saving and loading;
* :mod:`~fisherlab.models.spec`: model specs (``torchvision:NAME``, user factories);
* :mod:`~fisherlab.models.source`: :func:`open_model`, a module, file or spec.
"""

from fisherlab.models.architectures import (
    ARCHITECTURES,
    Architecture,
    EvalCNN,
    PatchEmbedding,
    SmallViT,
    TargetCNN,
    TransformerBlock,
    available,
    build_model,
)
from fisherlab.models.checkpoint import FORMAT, FORMAT_VERSION, load_model, save_model
from fisherlab.models.heads import (
    HEAD_KINDS,
    VIBHead,
    install_head,
    replace_head,
    swap_head,
    vib_statistics,
)
from fisherlab.models.layers import (
    LEAF_KINDS,
    UNIT_KINDS,
    Layer,
    check_freeze_boundary,
    layer_map,
    layer_state_keys,
    layers,
    parse_layer_selection,
    resolve_layer_indices,
    unit_kind,
)
from fisherlab.models.meta import ModelMeta, fingerprint, model_meta
from fisherlab.models.source import InputOverrides, open_model
from fisherlab.models.spec import (
    RENAMED,
    ModelSpec,
    build_from_spec,
    parse_model_spec,
    read_weights,
)

__all__ = [
    # metadata
    "ModelMeta",
    "model_meta",
    "fingerprint",
    # architectures
    "ARCHITECTURES",
    "Architecture",
    "EvalCNN",
    "PatchEmbedding",
    "SmallViT",
    "TargetCNN",
    "TransformerBlock",
    "available",
    "build_model",
    "RENAMED",
    # specs and sources
    "ModelSpec",
    "parse_model_spec",
    "build_from_spec",
    "read_weights",
    "InputOverrides",
    "open_model",
    # layers
    "LEAF_KINDS",
    "UNIT_KINDS",
    "Layer",
    "check_freeze_boundary",
    "layer_map",
    "layer_state_keys",
    "layers",
    "parse_layer_selection",
    "resolve_layer_indices",
    "unit_kind",
    # heads
    "HEAD_KINDS",
    "VIBHead",
    "install_head",
    "replace_head",
    "swap_head",
    "vib_statistics",
    # checkpoints
    "FORMAT",
    "FORMAT_VERSION",
    "load_model",
    "save_model",
]

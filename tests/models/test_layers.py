"""The layer map (fisherlab.models.layers): every parameter in one layer, in forward order."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fisherlab.errors import FisherlabError
from fisherlab.models import (
    available,
    build_model,
    layer_map,
    layer_state_keys,
    layers,
    resolve_layer_indices,
)

SIZES = {
    "target_cnn": 28,
    "eval_cnn": 28,
    "vgg16_bn_small": 32,
    "resnet18_cifar": 32,
    "vit_small": 28,
    "lenet5": 28,
    "mlp": 28,
}


@pytest.mark.parametrize("arch", available())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_parameter_and_buffer_is_covered_exactly_once(arch, channels):
    model = build_model(arch, 7, in_channels=channels, image_size=SIZES[arch])
    lm = layer_map(model)
    assert lm["index"].tolist() == list(range(len(lm)))
    keys = list(model.state_dict())
    owners = {k: [] for k in keys}
    for row in lm.itertuples():
        for k in layer_state_keys(row.modules, keys):
            owners[k].append(row.index)
    assert all(len(v) == 1 for v in owners.values()), {
        k: v for k, v in owners.items() if len(v) != 1
    }
    per_layer = {row.index: row.n_params for row in lm.itertuples()}
    params = dict(model.named_parameters())
    for row in lm.itertuples():
        counted = sum(params[k].numel() for k in layer_state_keys(row.modules, params))
        assert counted == per_layer[row.index]
    assert lm["n_params"].sum() == sum(p.numel() for p in model.parameters())
    out = model.eval()(torch.randn(3, channels, SIZES[arch], SIZES[arch]))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_expected_groupings():
    kinds = lambda arch: layer_map(build_model(arch, 5, image_size=SIZES[arch]))["kind"].tolist()  # noqa: E731
    assert kinds("target_cnn") == ["conv_bn"] * 4 + ["linear"] * 2
    assert kinds("eval_cnn") == ["conv"] * 3 + ["linear"] * 2
    assert kinds("vgg16_bn_small") == ["conv_bn"] * 13 + ["linear"]
    assert kinds("resnet18_cifar") == ["conv_bn"] + ["residual_block"] * 8 + ["linear"]
    assert kinds("vit_small") == ["patch_embedding"] + ["transformer_block"] * 4 + [
        "layernorm",
        "linear",
    ]
    assert kinds("lenet5") == ["conv"] * 2 + ["linear"] * 3
    assert kinds("mlp") == ["linear"] * 3
    res = layer_map(build_model("resnet18_cifar", 5, image_size=32))
    assert res.loc[0, "modules"] == "conv1;bn1"
    assert res.loc[3, "modules"] == "layer2.0"  # includes its downsample shortcut


def test_forward_order_matches_layer_order():
    """Hooks record the order in which layers run; it must equal the map's order."""
    for arch in available():
        model = build_model(arch, 5, image_size=SIZES[arch]).eval()
        seen: list[int] = []
        handles = []
        for layer in layers(model):
            first = layer.modules[0]
            handles.append(
                model.get_submodule(first).register_forward_hook(
                    lambda *_, i=layer.index, seen=seen: seen.append(i)
                )
            )
        model(torch.randn(1, 1, SIZES[arch], SIZES[arch]))
        for h in handles:
            h.remove()
        assert seen == sorted(seen), arch


def test_loose_parameters_join_the_next_layer():
    vit = torchvision.models.VisionTransformer(
        image_size=28, patch_size=7, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    lm = layer_map(vit)
    assert lm.loc[0, "modules"] == "conv_proj;class_token"
    assert lm["kind"].tolist() == [
        "conv",
        "transformer_block",
        "transformer_block",
        "layernorm",
        "linear",
    ]
    assert "encoder.pos_embedding" in lm.loc[1, "modules"]
    assert lm["n_params"].sum() == sum(p.numel() for p in vit.parameters())


def test_layer_selection_errors():
    assert resolve_layer_indices("0,2-3", 5) == [0, 2, 3]
    with pytest.raises(FisherlabError, match="out of range"):
        resolve_layer_indices("4,9", 6)
    with pytest.raises(FisherlabError, match="malformed"):
        resolve_layer_indices("a,b", 6)

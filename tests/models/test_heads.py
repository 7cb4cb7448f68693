"""Replacing a model's head (fisherlab.models.heads)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fisherlab.errors import FisherlabError
from fisherlab.models import build_model, replace_head


def test_replace_head_keeps_body_and_changes_classes():
    torch.manual_seed(0)
    model = build_model("resnet18_cifar", 10, image_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc")}
    replace_head(model, 3, seed=1)
    assert model.fc.out_features == 3
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    a = replace_head(model, 3, seed=5).weight.detach().clone()
    b = replace_head(model, 3, seed=5).weight.detach().clone()
    assert torch.equal(a, b)
    assert model.fisherlab_meta.arch_kwargs["num_classes"] == 3


def test_replace_head_needs_a_linear_head():
    with pytest.raises(FisherlabError, match=r"expected an nn\.Linear"):
        replace_head(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)), 2)

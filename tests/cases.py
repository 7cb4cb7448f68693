"""The model cases every Fisher engine is tested on, as named dicts.

Each case is a dict with

* ``name``: its pytest id, and how a test picks it (``CASES["vit_small"]``, or
  ``@pytest.mark.parametrize("model_case", ["target_cnn"], indirect=True)``);
* ``arch``: the architecture :func:`fisherlab.models.build_model` builds;
* ``input_shape``: ``(channels, height, width)`` of one input;
* ``classes``: the number of outputs;
* ``seed``: the seed of the model's initialisation.

``tests/conftest.py`` turns :data:`MODEL_CASES` into the parametrized
``model_case`` fixture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fisherlab.models import build_model

MODEL_CASES: list[dict[str, Any]] = [
    dict(name="target_cnn", arch="target_cnn", input_shape=(1, 28, 28), classes=5, seed=0),
    dict(name="eval_cnn", arch="eval_cnn", input_shape=(3, 28, 28), classes=4, seed=0),
    dict(name="vgg16_bn", arch="vgg16_bn_small", input_shape=(1, 32, 32), classes=5, seed=0),
    dict(name="resnet18", arch="resnet18_cifar", input_shape=(3, 32, 32), classes=6, seed=0),
    dict(name="vit_small", arch="vit_small", input_shape=(1, 28, 28), classes=5, seed=0),
]
CASES: dict[str, dict[str, Any]] = {case["name"]: case for case in MODEL_CASES}
"""The cases by name."""


def make_model(case: Mapping[str, Any]) -> nn.Module:
    """A float64 model in eval mode with non-trivial BatchNorm statistics and affines."""
    channels, height, width = case["input_shape"]
    assert height == width, case
    torch.manual_seed(case.get("seed", 0))
    model = build_model(case["arch"], case["classes"], in_channels=channels, image_size=height)
    model = model.double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def make_data(case: Mapping[str, Any], n: int = 9, seed: int = 1) -> torch.utils.data.TensorDataset:
    """``n`` float64 inputs of the case's ``input_shape`` and labels below its ``classes``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *case["input_shape"], generator=gen, dtype=torch.float64)
    y = torch.randint(0, case["classes"], (n,), generator=gen)
    return torch.utils.data.TensorDataset(x, y)


def on_device(
    data: torch.utils.data.TensorDataset, device: str | torch.device
) -> torch.utils.data.TensorDataset:
    """The same samples, their tensors moved to ``device``."""
    return torch.utils.data.TensorDataset(*(t.to(device) for t in data.tensors))

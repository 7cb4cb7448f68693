"""The shared list of model cases every Fisher engine is tested on."""

from __future__ import annotations

import torch
from torch import nn

from fisherlab.models import build_model

# (architecture, image size, input channels, classes)
MODEL_CASES = [
    ("target_cnn", 28, 1, 5),
    ("eval_cnn", 28, 3, 4),
    ("vgg16_bn", 32, 1, 5),
    ("resnet18", 32, 3, 6),
    ("vit_small", 28, 1, 5),
]
CASE_IDS = [c[0] for c in MODEL_CASES]


def make_model(arch: str, size: int, channels: int, classes: int, seed: int = 0) -> nn.Module:
    """A float64 model in eval mode with non-trivial BatchNorm statistics and affines."""
    torch.manual_seed(seed)
    model = build_model(arch, classes, in_channels=channels, image_size=size).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def make_data(size: int, channels: int, classes: int, n: int = 9, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return torch.utils.data.TensorDataset(x, y)

"""The architecture registry: ``build_model(arch, num_classes, ...)``.

====================  ======================================================
``target_cnn``        GMI-style MNIST target: 4 conv+BN blocks, 2 linear
``eval_cnn``          a differently built evaluator: 3 convs (5x5, 5x5, 3x3)
                      without BatchNorm, global pooling, 2 linear, dropout
``vgg16_bn_small``    torchvision VGG16-bn, first conv and pooling adapted to
                      small inputs, one linear head (as in the TL-DMI code)
``resnet18_cifar``    torchvision ResNet-18, CIFAR-style 3x3 stem, no max-pool
``vit_small``         a small vision transformer (patch embedding, 4 pre-norm
                      blocks with ``nn.MultiheadAttention``, final LayerNorm)
``lenet5``            LeNet-5 (LeCun et al. 1998): two 5x5 convs with
                      average pooling, 120- and 84-unit linear layers
``mlp``               a multilayer perceptron: 512 and 256 hidden units
====================  ======================================================

Every model takes ``in_channels`` (1 or 3) and any ``num_classes`` and
``image_size``; its last module in forward order is a ``Linear`` head, which
:func:`fisherlab.models.heads.replace_head` swaps for fine-tuning on new classes. Each built model
carries ``model.fisherlab_meta`` (see :mod:`fisherlab.models.meta`).

The small-input variants are named for what they change (a name never hides a
changed architecture); checkpoints saved under the old names ``vgg16_bn`` and
``resnet18`` still load (:data:`RENAMED`). torchvision's unchanged models are
``torchvision:NAME`` specs (:mod:`fisherlab.models.spec`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor, nn

from fisherlab.data.limits import MAX_CLASSES, MAX_IMAGE_SIZE
from fisherlab.errors import FisherlabError
from fisherlab.models.meta import ModelMeta

MAX_DEPTH = 1000
"""Most transformer blocks ``vit_small`` builds (a bound on what a checkpoint may declare)."""


# --------------------------------------------------------------------------- CNNs
def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class TargetCNN(nn.Module):
    """A GMI-style target classifier for small grey images.

    Four 3x3 conv + BatchNorm + ReLU blocks (32, 64, 128, 128 channels, 2x2
    max-pooling after the 2nd, 3rd and 4th), then ``fc`` (256 units) and
    ``head``.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 32),
            *_conv_bn(32, 64),
            nn.MaxPool2d(2),
            *_conv_bn(64, 128),
            nn.MaxPool2d(2),
            *_conv_bn(128, 128),
            nn.MaxPool2d(2),
        )
        side = image_size // 8
        if side < 1:
            raise FisherlabError(f"target_cnn needs image_size >= 8, got {image_size}")
        self.fc = nn.Linear(128 * side * side, 256)
        self.head = nn.Linear(256, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch ``x`` of shape (N, C, H, W)."""
        h = self.features(x).flatten(1)
        return self.head(torch.relu(self.fc(h)))


class EvalCNN(nn.Module):
    """An evaluation classifier built differently from :class:`TargetCNN`.

    5x5, 5x5 and 3x3 convolutions (32, 64, 128 channels) with ReLU and no
    normalisation, global average pooling, a 128-unit ``fc`` with dropout, and
    ``head``. Its penultimate features (the input of ``head``) are the space in
    which KNN distance and FID are measured.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(128, 128)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch ``x`` of shape (N, C, H, W)."""
        h = torch.relu(self.fc(self.features(x).flatten(1)))
        return self.head(self.dropout(h))


def _vgg16_bn(num_classes: int, in_channels: int = 1, image_size: int = 64) -> nn.Module:
    """VGG16-bn from torchvision, for small inputs.

    The first conv takes ``in_channels``; trailing max-pools are dropped so that
    at least a 1x1 map remains (28x28 keeps 4 of 5); global average pooling and
    one ``Linear(512, num_classes)`` replace the 4096-unit classifier. The
    in-place ReLUs of torchvision are kept.
    """
    model = torchvision.models.vgg16_bn(weights=None)
    model.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    keep_pools = max(0, min(5, int(math.log2(image_size))))
    layers, pools = [], 0
    for m in model.features:
        if isinstance(m, nn.MaxPool2d):
            pools += 1
            if pools > keep_pools:
                continue
        layers.append(m)
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes)
    return model


def _resnet18(num_classes: int, in_channels: int = 1, image_size: int = 64) -> nn.Module:
    """ResNet-18 from torchvision, with a 3x3 stride-1 stem and no max-pool.

    In-place ReLUs and the in-place shortcut addition of torchvision are kept.
    """
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


# --------------------------------------------------------------------------- ViT
class PatchEmbedding(nn.Module):
    """Patches -> tokens: a strided conv, a class token and position embeddings."""

    layer_kind = "patch_embedding"
    """One layer of the layer map with its whole subtree (:mod:`fisherlab.models.layers`)."""

    def __init__(self, in_channels: int, image_size: int, patch_size: int, dim: int):
        super().__init__()
        if image_size % patch_size:
            raise FisherlabError(
                f"vit_small: image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        n_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens of shape (N, 1 + patches, dim)."""
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    layer_kind = "transformer_block"
    """One layer of the layer map with its whole subtree (:mod:`fisherlab.models.layers`)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        """Tokens in, tokens out."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """A small vision transformer classifying from the class token.

    Args:
        num_classes: Output classes.
        in_channels: Image channels.
        image_size: Square input side; must be a multiple of ``patch_size``.
        patch_size: Side of a patch; default ``image_size // 4`` (16 patches).
        dim: Token width.
        depth: Number of transformer blocks.
        heads: Attention heads.
        mlp_dim: Hidden width of each block's MLP.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        patch_size: int | None = None,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_dim: int = 128,
    ):
        super().__init__()
        if not 1 <= depth <= MAX_DEPTH:
            raise FisherlabError(f"vit_small: depth must be in 1..{MAX_DEPTH}, got {depth}")
        patch = patch_size or max(1, image_size // 4)
        self.patch_embed = PatchEmbedding(in_channels, image_size, patch, dim)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch ``x`` of shape (N, C, H, W)."""
        tokens = self.blocks(self.patch_embed(x))
        return self.head(self.norm(tokens[:, 0]))


# --------------------------------------------------------------------------- small families
class LeNet5(nn.Module):
    """LeNet-5 for small grey images (LeCun et al. 1998), with ReLU.

    5x5 convolutions of 6 and 16 channels (the first padded to keep the
    side), each followed by 2x2 average pooling, then 120- and 84-unit linear
    layers and ``head``. One of LOMMA's default surrogate families
    (:mod:`fisherlab.attacks.surrogates`).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        side = (image_size // 2 - 4) // 2
        if side < 1:
            raise FisherlabError(f"lenet5 needs image_size >= 12, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.head = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch ``x`` of shape (N, C, H, W)."""
        h = torch.relu(self.fc1(self.features(x).flatten(1)))
        return self.head(torch.relu(self.fc2(h)))


class MLP(nn.Module):
    """A multilayer perceptron on the flattened image: 512 and 256 ReLU units, then ``head``."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 512)
        self.fc2 = nn.Linear(512, 256)
        self.head = nn.Linear(256, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch ``x`` of shape (N, C, H, W)."""
        h = torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1)))))
        return self.head(h)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Architecture:
    """One registry entry.

    Attributes:
        builder: ``builder(num_classes, in_channels, image_size, **kwargs)``.
        description: One line for ``--help`` and listings.
        default_image_size: The input side it is usually used with.
    """

    builder: Callable[..., nn.Module]
    description: str
    default_image_size: int


ARCHITECTURES: dict[str, Architecture] = {
    "target_cnn": Architecture(TargetCNN, "GMI-style 4-conv+BN, 2-linear target", 28),
    "eval_cnn": Architecture(EvalCNN, "evaluation CNN: 3 convs, no BN, 2 linear", 28),
    "vgg16_bn_small": Architecture(_vgg16_bn, "torchvision VGG16-bn for small inputs", 64),
    "resnet18_cifar": Architecture(_resnet18, "torchvision ResNet-18, 3x3 stem, no max-pool", 64),
    "vit_small": Architecture(SmallViT, "small ViT: patch embed, 4 blocks", 28),
    "lenet5": Architecture(LeNet5, "LeNet-5: two 5x5 convs with average pooling, 3 linear", 28),
    "mlp": Architecture(MLP, "multilayer perceptron: 512 and 256 hidden units", 28),
}

RENAMED: dict[str, str] = {"vgg16_bn": "vgg16_bn_small", "resnet18": "resnet18_cifar"}
"""Old registry name -> new name; checkpoints that record an old name load as the new one."""


def available() -> list[str]:
    """Names accepted by :func:`build_model` and ``--arch``."""
    return list(ARCHITECTURES)


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 1,
    image_size: int = 28,
    **kwargs,
) -> nn.Module:
    """Build a freshly initialised model of a registered architecture.

    Args:
        arch: One of :func:`available`.
        num_classes: Number of outputs of the head.
        in_channels: 1 (grey) or 3 (RGB).
        image_size: Side of the square input.
        **kwargs: Architecture-specific options (e.g. ``depth`` for ``vit_small``).

    Returns:
        The model, in train mode, with ``model.fisherlab_meta`` recording the
        architecture and its arguments.

    Raises:
        FisherlabError: For an unknown architecture or invalid arguments,
            including ``num_classes`` above :data:`~fisherlab.data.limits.MAX_CLASSES`
            and ``image_size`` above :data:`~fisherlab.data.limits.MAX_IMAGE_SIZE`.

    Example:
        >>> model = build_model("target_cnn", num_classes=5)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 5])
    """
    if arch in RENAMED:
        raise FisherlabError(
            f"fisherlab's {arch!r} is now {RENAMED[arch]!r} (small-input variant); for "
            f"torchvision's own architecture use torchvision:{arch}"
        )
    if arch not in ARCHITECTURES:
        raise FisherlabError(
            f"unknown architecture {arch!r}: expected one of {', '.join(available())}"
        )
    for name, value in (("num_classes", num_classes), ("image_size", image_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise FisherlabError(f"{name} must be an integer, got {value!r}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise FisherlabError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    if in_channels not in (1, 3):
        raise FisherlabError(f"in_channels must be 1 or 3, got {in_channels!r}")
    if not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise FisherlabError(f"image_size must be in 1..{MAX_IMAGE_SIZE}, got {image_size}")
    try:
        model = ARCHITECTURES[arch].builder(
            num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
        )
    except TypeError as exc:
        raise FisherlabError(f"{arch}: invalid arguments {kwargs}: {exc}") from None
    arch_kwargs = dict(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
    )
    model.fisherlab_meta = ModelMeta(arch=arch, arch_kwargs=arch_kwargs)
    return model

"""The model zoo of the float64 Fisher tests: small models of many kinds.

Each case is a dict:

* ``name``: the pytest id;
* ``build``: a zero-argument factory of a float64, eval-mode model (seeded;
  BatchNorm running statistics and the affines of every norm layer randomised,
  all-zero parameters such as torchvision's zero-initialised heads and class
  tokens given small random values, so that every parameter gets a gradient);
* ``input``: the shape of one sample (float inputs, drawn from a standard
  normal), or a factory ``(n, generator) -> batch`` (integer inputs);
* ``classes``: the number of outputs (labels are drawn from ``0..classes-1``);
* ``objective`` (optional): the objective to profile, default ``"classification"``;
* ``covers``: what the case is there for (one line);
* ``fallback``: ``{parameter-name pattern (fnmatch): reason substring}`` for the
  parameters that must use the torch.func fallback, with a word of their
  reason; every other parameter must use a fast path (so a silent switch to
  the fallback, or a silent use of a fast path, fails a test).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.nn.utils import parametrizations
from torchvision.models import convnext, efficientnet, mobilenetv3, regnet, swin_transformer
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from fisherlab.models import build_model

SEED = 0


# --------------------------------------------------------------------------- helpers
def finish(model: nn.Module, seed: int = SEED) -> nn.Module:
    """float64, eval mode, randomised norm statistics/affines, no all-zero parameters."""
    gen = torch.Generator().manual_seed(seed + 1)
    model = model.double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
            if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.4 - 0.2)
        for p in model.parameters():
            if p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)
    return model.eval()


def seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """A ``build`` that seeds torch before calling ``factory`` and finishes the model."""

    def build() -> nn.Module:
        torch.manual_seed(SEED)
        return finish(factory())

    return build


def tokens(vocab: int, length: int) -> Callable[[int, torch.Generator], Tensor]:
    """A batch factory of int64 token ids."""

    def make(n: int, gen: torch.Generator) -> Tensor:
        return torch.randint(0, vocab, (n, length), generator=gen)

    return make


def registry(arch: str, size: int, channels: int, classes: int, **kwargs: Any) -> dict:
    return {
        "name": arch,
        "build": seeded(
            lambda: build_model(arch, classes, in_channels=channels, image_size=size, **kwargs)
        ),
        "input": (channels, size, size),
        "classes": classes,
    }


# --------------------------------------------------------------------------- torchvision
def tiny_resnet(block: type, widths: tuple[int, ...], classes: int, **kwargs: Any) -> ResNet:
    """torchvision's ResNet (its stem, blocks and forward) with small stage widths."""
    model = ResNet(block, [1, 1, 1, 1], num_classes=classes, **kwargs)
    model.inplanes = widths[0]
    model.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(widths[0])
    model.layer1 = model._make_layer(block, widths[0], 2)
    model.layer2 = model._make_layer(block, widths[1], 1, stride=2)
    model.layer3 = model._make_layer(block, widths[2], 1, stride=2)
    model.layer4 = model._make_layer(block, widths[3], 1, stride=2)
    model.fc = nn.Linear(widths[3] * block.expansion, classes)
    return model


def tiny_vgg(classes: int) -> nn.Module:
    features = torchvision.models.vgg.make_layers([8, "M", 16, "M", 32, 32, "M"], batch_norm=True)
    model = torchvision.models.VGG(features, num_classes=classes)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(
        nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, classes)
    )
    return model


def tiny_mobilenet_v3(classes: int) -> nn.Module:
    setting, last = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.5)
    return torchvision.models.MobileNetV3(setting[:5], last // 4, num_classes=classes)


def tiny_efficientnet(classes: int) -> nn.Module:
    setting, _ = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.5)
    return torchvision.models.EfficientNet(setting[:4], dropout=0.2, num_classes=classes)


def tiny_regnet(classes: int) -> nn.Module:
    params = regnet.BlockParams.from_init_params(
        depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=4, se_ratio=0.25
    )
    return torchvision.models.RegNet(params, num_classes=classes, stem_width=8)


def tiny_convnext(classes: int) -> nn.Module:
    blocks = [convnext.CNBlockConfig(16, 32, 1), convnext.CNBlockConfig(32, None, 1)]
    # layer_scale 0.5 instead of 1e-6, so that the blocks' gradients are not negligible
    return torchvision.models.ConvNeXt(blocks, layer_scale=0.5, num_classes=classes)


def tiny_swin(classes: int, v2: bool = False) -> nn.Module:
    extra: dict[str, Any] = {}
    if v2:
        extra = {
            "block": swin_transformer.SwinTransformerBlockV2,
            "downsample_layer": swin_transformer.PatchMergingV2,
        }
    return torchvision.models.SwinTransformer(
        patch_size=[2, 2],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[2, 2],
        window_size=[2, 2],
        stochastic_depth_prob=0.0,
        num_classes=classes,
        **extra,
    )


def tiny_vit(classes: int) -> nn.Module:
    return torchvision.models.VisionTransformer(
        image_size=16,
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=classes,
    )


# --------------------------------------------------------------------------- custom models
class SeqFirstTransformer(nn.Module):
    """nn.TransformerEncoder with torch's default batch_first=False inside a classifier."""

    def __init__(self, d_in: int, classes: int, dim: int = 16):
        super().__init__()
        self.proj = nn.Linear(d_in, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=24, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x).transpose(0, 1)  # (T, N, dim): sequence first
        return self.head(self.encoder(h).mean(0))


class CropsInBatch(nn.Module):
    """Four crops per sample folded into the batch before a shared trunk, averaged back."""

    def __init__(self, classes: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(24, 12),
            nn.ReLU(),
        )
        self.head = nn.Linear(12, classes)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]  # x: (N, 4, C, H, W)
        features = self.trunk(x.reshape(n * 4, *x.shape[2:]))
        return self.head(features.reshape(n, 4, -1).mean(1))


class NoGradFeatures(nn.Module):
    """A feature extractor run under torch.no_grad() (its parameters get no gradient)."""

    def __init__(self, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()
        )
        self.fc = nn.Linear(4 * 6 * 6, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            f = self.features(x)
        return self.head(torch.tanh(self.fc(f)))


class CalledTwice(nn.Module):
    """One block applied twice in one forward: self.block(self.block(x))."""

    def __init__(self, d_in: int, classes: int, dim: int = 10):
        super().__init__()
        self.inp = nn.Linear(d_in, dim)
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.block(self.inp(x))))


class TiedEmbeddingClassifier(nn.Module):
    """Token ids -> embedding -> mixer -> logits over the vocabulary with the embedding's weight."""

    def __init__(self, vocab: int, dim: int = 12):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab)
        self.head.weight = self.embed.weight

    def forward(self, ids: Tensor) -> Tensor:
        h = torch.tanh(self.mix(self.embed(ids).mean(1)))
        return self.head(h)


class TiedLinears(nn.Module):
    """Two Linears sharing one weight (different biases)."""

    def __init__(self, d: int, classes: int):
        super().__init__()
        self.first = nn.Linear(d, d)
        self.second = nn.Linear(d, d)
        self.second.weight = self.first.weight
        self.head = nn.Linear(d, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.second(torch.tanh(self.first(x)))))


def conv_padding(padding: str, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=padding),
        nn.ReLU(),
        nn.Conv2d(6, 6, 4, padding=padding),  # even kernel: asymmetric "same" padding
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, classes),
    )


def weight_norm_hooks(classes: int) -> nn.Module:
    """The old, deprecated hook form: its computed ``weight`` is a non-leaf tensor attribute."""

    def wn(module: nn.Module) -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.nn.utils.weight_norm(module)

    return nn.Sequential(
        wn(nn.Conv2d(1, 4, 3)),
        nn.ReLU(),
        nn.Flatten(),
        wn(nn.Linear(4 * 6 * 6, 12)),
        nn.ReLU(),
        wn(nn.Linear(12, classes)),
    )


def weight_norm_parametrized(classes: int) -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 12),
        nn.ReLU(),
        nn.Linear(12, classes),
    )
    for m in model:
        if isinstance(m, nn.Conv2d | nn.Linear):
            parametrizations.weight_norm(m)
    return model


class CosineHead(nn.Module):
    """Cosine-similarity logits with a learnable 0-dim temperature."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, h: Tensor) -> Tensor:
        return self.logit_scale * F.normalize(h, dim=1) @ F.normalize(self.weight, dim=1).T


class CosineClassifier(nn.Module):
    def __init__(self, d_in: int, classes: int, dim: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(d_in, dim), nn.ReLU())
        self.head = CosineHead(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class BagOfEmbeddings(nn.Module):
    """A text classifier: mean of token embeddings, then an MLP."""

    def __init__(self, vocab: int, classes: int, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(torch.relu(self.fc(self.embed(ids).mean(1))))


def grouped_depthwise(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=8, padding=1),  # depthwise
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1),  # pointwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    )


class Conv1dGroupNorm(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.conv1 = nn.Conv1d(3, 8, 3)
        self.bn = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 8, 3, stride=2)
        self.gn = nn.GroupNorm(2, 8)
        self.head = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        h = torch.relu(self.gn(self.conv2(h)))
        return self.head(h.mean(2))


def layernorm_mlp(d_in: int, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_in, 16),
        nn.LayerNorm(16),
        nn.GELU(),
        nn.Linear(16, 16),
        nn.LayerNorm(16),
        nn.GELU(),
        nn.Linear(16, classes),
    )


def batchnorm1d_mlp(d_in: int, classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_in, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, classes),
    )


class AttentionBatchFirst(nn.Module):
    """Self-attention with nn.MultiheadAttention(batch_first=True) over a token sequence."""

    def __init__(self, d_in: int, classes: int, dim: int = 12):
        super().__init__()
        self.proj = nn.Linear(d_in, dim)
        self.attn = nn.MultiheadAttention(dim, 3, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x)
        h = self.norm(h + self.attn(h, h, h, need_weights=False)[0])
        return self.head(h.mean(1))


class LooseParameters(nn.Module):
    """Loose nn.Parameters used directly in forward: a learnable bias and a gain."""

    def __init__(self, d_in: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(d_in, 10, bias=False)
        self.shift = nn.Parameter(torch.randn(10) * 0.1)
        self.gain = nn.Parameter(torch.rand(classes) + 0.5)
        self.head = nn.Linear(10, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.tanh(self.fc(x) + self.shift)) * self.gain


def smoothed_cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    """A custom per-sample objective: label-smoothed cross-entropy."""
    return F.cross_entropy(output, target, reduction="none", label_smoothing=0.1)


class EmbeddingKinds(nn.Module):
    """Two embeddings of the same ids: with padding_idx (fast) and with
    scale_grad_by_freq (refused: fallback). (max_norm is refused too, but torch.func
    cannot vmap its in-place renorm either: see test_fast_paths.py.)"""

    def __init__(self, vocab: int, classes: int, dim: int = 6):
        super().__init__()
        self.padded = nn.Embedding(vocab, dim, padding_idx=0)
        self.scaled = nn.Embedding(vocab, dim, scale_grad_by_freq=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: Tensor) -> Tensor:
        h = self.padded(ids) + torch.tanh(self.scaled(ids))
        return self.head(h.mean(1))


def ids_with_padding(vocab: int, length: int) -> Callable[[int, torch.Generator], Tensor]:
    """Token ids with repeats and about one third padding (id 0)."""

    def make(n: int, gen: torch.Generator) -> Tensor:
        ids = torch.randint(1, vocab, (n, length), generator=gen)
        return ids * (torch.rand(n, length, generator=gen) > 0.33)

    return make


class CrossAttention(nn.Module):
    """Batch-first cross-attention with kdim/vdim (q/k/v_proj_weight), bias_k/bias_v,
    a key padding mask passed by keyword, and need_weights left at its default."""

    def __init__(self, d_in: int, classes: int, dim: int = 8):
        super().__init__()
        self.q = nn.Linear(d_in, dim)
        self.k = nn.Linear(d_in, 5)
        self.v = nn.Linear(d_in, 7)
        self.attn = nn.MultiheadAttention(
            dim, 2, kdim=5, vdim=7, add_bias_kv=True, batch_first=True
        )
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        mask = x[..., 0] > 1.0  # per sample: padded keys
        mask[:, 0] = False
        out, _ = self.attn(self.q(x), self.k(x), self.v(x), key_padding_mask=mask)
        return self.head(out.mean(1))


class CausalAttention(nn.Module):
    """Self-attention with a causal mask by keyword (fast), then one whose attention
    weights feed the output (refused: fallback)."""

    def __init__(self, d_in: int, classes: int, dim: int = 8):
        super().__init__()
        self.proj = nn.Linear(d_in, dim)
        self.causal = nn.MultiheadAttention(dim, 2, batch_first=True, bias=False)
        self.weighted = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x)
        t = h.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        h = h + self.causal(h, h, h, attn_mask=causal, need_weights=False)[0]
        out, weights = self.weighted(h, h, h)
        return self.head((out + weights[..., :1] * h).mean(1))


class NormKinds(nn.Module):
    """LayerNorm over two dims and without bias on tokens; GroupNorm on 2-D maps."""

    def __init__(self, classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.ln2 = nn.LayerNorm((8, 4))
        self.ln_nobias = nn.LayerNorm(4, bias=False)
        self.head = nn.Linear(4, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.gn(self.conv(x)))  # (N, 8, 4, 4)
        tokens = h.mean(3)  # (N, 8, 4)
        tokens = torch.tanh(self.ln2(tokens))
        return self.head(self.ln_nobias(tokens).mean(1))


class ConvKinds(nn.Module):
    """Conv1d (groups 2, dilation 2, 'same'); depthwise Conv2d on a 16x16 map (per-sample
    gradients as one grouped convolution); a grouped Conv2d on a 4x4 map (Gram form)."""

    def __init__(self, classes: int):
        super().__init__()
        self.c1 = nn.Conv1d(4, 6, 3, groups=2, dilation=2, padding="same")
        self.stem = nn.Conv2d(3, 8, 1)
        self.dw = nn.Conv2d(8, 16, 3, groups=8, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.grouped = nn.Conv2d(16, 32, 3, groups=2, padding=1, bias=False)
        self.head = nn.Linear(32 + 6, classes)

    def forward(self, x: Tensor) -> Tensor:
        rows = torch.cat([x.mean(2), x[:, :1].mean(3)], 1)  # (N, 4, 16)
        seq = torch.tanh(self.c1(rows))  # (N, 6, 16)
        h = torch.relu(self.dw(self.stem(x)))
        h = torch.relu(self.grouped(self.pool(h)))
        return self.head(torch.cat([h.mean((2, 3)), seq.mean(2)], 1))


class BroadcastParameters(nn.Module):
    """Leading-dim-1 parameters: a class token and a position embedding used per sample
    (fast: per-sample copies), one averaged over dim 0 and one repeated to the batch size
    (both break per-sample copies: the probe or the pass finds it, fallback)."""

    def __init__(self, d_in: int, classes: int, dim: int = 6, length: int = 3):
        super().__init__()
        self.proj = nn.Linear(d_in, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, length + 1, dim))
        self.averaged = nn.Parameter(torch.randn(1, dim))
        self.repeated = nn.Parameter(torch.randn(1, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        h = torch.cat([self.cls.expand(n, -1, -1), self.proj(x)], 1) + self.pos
        h = torch.tanh(h).mean(1) + self.averaged.mean(0)
        return self.head(torch.tanh(h * self.repeated.repeat(n, 1)))


# --------------------------------------------------------------------------- the zoo
def case(
    name: str, factory: Callable[[], nn.Module], input: Any, classes: int, covers: str, **extra: Any
) -> dict:
    return {
        "name": name,
        "build": seeded(factory),
        "input": input,
        "classes": classes,
        "covers": covers,
        **extra,
    }


CASES: list[dict] = [
    # fisherlab's registry
    {**registry("target_cnn", 16, 1, 5), "covers": "registry: 4 conv+BN blocks, 2 linear"},
    {
        **registry("eval_cnn", 16, 3, 4),
        "objective": "logit",
        "covers": "registry: convs without BN, dropout; logit objective",
    },
    {**registry("vgg16_bn_small", 8, 1, 5), "covers": "registry: VGG16-bn, in-place ReLUs"},
    {**registry("resnet18_cifar", 8, 3, 6), "covers": "registry: ResNet-18, in-place adds"},
    {
        **registry("vit_small", 16, 1, 5, dim=32, depth=2, heads=2, mlp_dim=48),
        "covers": "registry: small ViT, patch embedding, MHA blocks",
    },
    # torchvision families, tiny
    case(
        "tv_resnet_basic",
        lambda: tiny_resnet(BasicBlock, (8, 16, 32, 64), 5),
        (3, 32, 32),
        5,
        "torchvision ResNet, BasicBlock, 7x7 stem + max-pool",
    ),
    case(
        "tv_resnext_bottleneck",
        lambda: tiny_resnet(Bottleneck, (8, 16, 16, 16), 5, groups=2, width_per_group=32),
        (3, 32, 32),
        5,
        "torchvision ResNeXt-style Bottleneck, grouped 3x3 convs",
    ),
    case("tv_vgg_bn", lambda: tiny_vgg(5), (3, 16, 16), 5, "torchvision VGG-bn, small classifier"),
    case(
        "tv_mobilenet_v2",
        lambda: torchvision.models.MobileNetV2(
            num_classes=5,
            width_mult=0.5,
            inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 1, 2]],
        ),
        (3, 32, 32),
        5,
        "torchvision MobileNetV2: depthwise convs, ReLU6, inverted residuals",
    ),
    case(
        "tv_mobilenet_v3_small",
        lambda: tiny_mobilenet_v3(5),
        (3, 32, 32),
        5,
        "torchvision MobileNetV3-small: hardswish, squeeze-excitation",
    ),
    case(
        "tv_efficientnet_b0",
        lambda: tiny_efficientnet(5),
        (3, 32, 32),
        5,
        "torchvision EfficientNet-B0 (first 4 stages, width 0.25): SiLU, SE, stochastic depth",
    ),
    case(
        "tv_shufflenet_v2",
        lambda: torchvision.models.ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 128], num_classes=5),
        (3, 32, 32),
        5,
        "torchvision ShuffleNetV2: channel split/shuffle, depthwise convs",
    ),
    case(
        "tv_regnet",
        lambda: tiny_regnet(5),
        (3, 32, 32),
        5,
        "torchvision RegNet: grouped bottlenecks with SE",
    ),
    case(
        "tv_convnext",
        lambda: tiny_convnext(5),
        (3, 16, 16),
        5,
        "torchvision ConvNeXt: 7x7 depthwise, LayerNorm2d, layer scale",
    ),
    case(
        "tv_swin",
        lambda: tiny_swin(5),
        (3, 16, 16),
        5,
        "torchvision Swin: shifted windows, relative position bias, F.linear on weights",
    ),
    case(
        "tv_swin_v2",
        lambda: tiny_swin(5, v2=True),
        (3, 16, 16),
        5,
        "torchvision Swin-V2: cosine attention with logit scale, continuous position MLP",
    ),
    case(
        "tv_vit",
        lambda: tiny_vit(5),
        (3, 16, 16),
        5,
        "torchvision VisionTransformer: EncoderBlock units, class token, zero-init head",
    ),
    case(
        "tv_densenet",
        lambda: torchvision.models.DenseNet(
            growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=5
        ),
        (3, 32, 32),
        5,
        "torchvision DenseNet: concatenations, pre-activation BN",
    ),
    # the cases an audit found broken
    case(
        "transformer_seq_first",
        lambda: SeqFirstTransformer(6, 4),
        (5, 6),
        4,
        "nn.TransformerEncoder with batch_first=False (Linears see (T, N, d))",
    ),
    case(
        "crops_in_batch",
        lambda: CropsInBatch(4),
        (4, 3, 8, 8),
        4,
        "crops folded into the batch (N*4) before a shared trunk, averaged back",
    ),
    case(
        "no_grad_features",
        lambda: NoGradFeatures(4),
        (1, 8, 8),
        4,
        "feature extractor under torch.no_grad() (zero Fisher there)",
    ),
    case(
        "module_called_twice",
        lambda: CalledTwice(6, 4),
        (6,),
        4,
        "self.block(self.block(x)): one Linear used twice",
    ),
    case(
        "tied_embedding_classifier",
        lambda: TiedEmbeddingClassifier(7),
        tokens(7, 5),
        7,
        "nn.Embedding weight tied to the classifier's weight; integer token ids",
    ),
    case(
        "tied_linears",
        lambda: TiedLinears(6, 4),
        (6,),
        4,
        "two Linears sharing one weight",
    ),
    case(
        "conv_padding_same",
        lambda: conv_padding("same", 4),
        (3, 8, 8),
        4,
        "Conv2d(padding='same'), odd and even kernels",
    ),
    case(
        "conv_padding_valid",
        lambda: conv_padding("valid", 4),
        (3, 8, 8),
        4,
        "Conv2d(padding='valid')",
    ),
    case(
        "weight_norm_hook",
        lambda: weight_norm_hooks(4),
        (1, 8, 8),
        4,
        "torch.nn.utils.weight_norm (forward pre-hook, weight_g/weight_v)",
    ),
    case(
        "weight_norm_parametrized",
        lambda: weight_norm_parametrized(4),
        (1, 8, 8),
        4,
        "torch.nn.utils.parametrizations.weight_norm on every layer",
    ),
    case(
        "cosine_head_logit_scale",
        lambda: CosineClassifier(6, 4),
        (6,),
        4,
        "cosine-similarity head with a 0-dim learnable logit_scale",
    ),
    case(
        "bag_of_embeddings",
        lambda: BagOfEmbeddings(11, 3),
        tokens(11, 6),
        3,
        "nn.Embedding text classifier on integer token ids",
    ),
    # more module kinds
    case(
        "grouped_depthwise_conv",
        lambda: grouped_depthwise(4),
        (4, 8, 8),
        4,
        "grouped, depthwise and 1x1 Conv2d",
    ),
    case(
        "conv1d_groupnorm",
        lambda: Conv1dGroupNorm(4),
        (3, 12),
        4,
        "Conv1d, BatchNorm1d on (N, C, L), GroupNorm",
    ),
    case("layernorm_mlp", lambda: layernorm_mlp(6, 4), (6,), 4, "LayerNorm, GELU"),
    case("batchnorm1d_mlp", lambda: batchnorm1d_mlp(6, 4), (6,), 4, "BatchNorm1d on (N, C)"),
    case(
        "mha_batch_first",
        lambda: AttentionBatchFirst(5, 4),
        (4, 5),
        4,
        "nn.MultiheadAttention(batch_first=True); custom objective (label smoothing)",
        objective=smoothed_cross_entropy,
    ),
    case(
        "loose_parameters",
        lambda: LooseParameters(6, 4),
        (6,),
        4,
        "custom module with loose nn.Parameters used in forward",
    ),
    # the fast paths of issue 12's point 4, and their refusals
    case(
        "embedding_kinds",
        lambda: EmbeddingKinds(9, 3),
        ids_with_padding(9, 6),
        3,
        "nn.Embedding with padding_idx (fast), scale_grad_by_freq (fallback)",
    ),
    case(
        "mha_cross_kdim",
        lambda: CrossAttention(5, 4),
        (4, 5),
        4,
        "cross-attention: kdim/vdim (q/k/v_proj_weight), bias_k/bias_v, key_padding_mask",
    ),
    case(
        "mha_causal_weights",
        lambda: CausalAttention(5, 4),
        (4, 5),
        4,
        "attn_mask by keyword, bias=False; attention weights used downstream (fallback)",
    ),
    case(
        "norm_kinds",
        lambda: NormKinds(4),
        (3, 4, 4),
        4,
        "LayerNorm over two dims, LayerNorm(bias=False), GroupNorm on 2-D maps",
    ),
    case(
        "conv_kinds",
        lambda: ConvKinds(4),
        (3, 16, 16),
        4,
        "Conv1d groups/dilation/'same'; depthwise 16x16 map; grouped 4x4 map (Gram form)",
    ),
    case(
        "broadcast_parameters",
        lambda: BroadcastParameters(5, 4),
        (3, 5),
        4,
        "class token and position embedding (per-sample copies); misused ones (fallback)",
    ),
]
"""All cases, in the order the tests run them."""

FALLBACKS: dict[str, dict[str, str]] = {
    "tv_convnext": {
        "*.layer_scale": "no fast path for CNBlock",
        "features.0.1.*": "no fast path for LayerNorm2d",
        "features.2.0.*": "no fast path for LayerNorm2d",
        "classifier.0.*": "no fast path for LayerNorm2d",
    },
    "tv_swin": {
        "*.attn.relative_position_bias_table": "no fast path for ShiftedWindowAttention",
        "*.attn.qkv.*": "not reached",
        "*.attn.proj.*": "not reached",
    },
    "tv_swin_v2": {
        "*.attn.logit_scale": "no fast path for ShiftedWindowAttentionV2",
        "*.attn.qkv.*": "not reached",
        "*.attn.proj.*": "not reached",
        "*.attn.cpb_mlp.*": "rows on dim 0",
    },
    "transformer_seq_first": {"encoder.*": "rows on dim 0"},
    "crops_in_batch": {"trunk.*": "rows on dim 0"},
    "no_grad_features": {"features.*": "not reached"},
    "module_called_twice": {"block.0.*": "called 2 times"},
    "tied_embedding_classifier": {"embed.weight": "shared by several modules"},
    "tied_linears": {"first.weight": "shared by several modules"},
    "conv_padding_same": {"2.*": "asymmetric"},
    "weight_norm_hook": {"*.weight_g": "does not compute", "*.weight_v": "does not compute"},
    "weight_norm_parametrized": {
        "*.bias": "a parametrized module",
        "*.parametrizations.*": "no fast path for ParametrizationList",
    },
    "cosine_head_logit_scale": {"head.*": "no fast path for CosineHead"},
    "loose_parameters": {"shift": "no fast path", "gain": "no fast path"},
    "embedding_kinds": {"scaled.weight": "scale_grad_by_freq"},
    "mha_cross_kdim": {"attn.bias_k": "does not compute", "attn.bias_v": "does not compute"},
    "mha_causal_weights": {"weighted.*": "attention weights are used downstream"},
    "broadcast_parameters": {
        "averaged": "disagreed with a per-sample autograd loop",
        "repeated": "per-sample copies do not fit the model",
    },
}
"""Which parameters of each case use the fallback, and why (all others: a fast path)."""
for _case in CASES:
    _case["fallback"] = FALLBACKS.get(_case["name"], {})

CASE_IDS = [c["name"] for c in CASES]


def make_data(case: dict, n: int, seed: int = 1) -> torch.utils.data.TensorDataset:
    """``n`` inputs (float64 normal or integer ids) and labels for ``case``."""
    gen = torch.Generator().manual_seed(seed)
    shape = case["input"]
    if callable(shape):
        x = shape(n, gen)
    else:
        x = torch.randn(n, *shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, case["classes"], (n,), generator=gen)
    return torch.utils.data.TensorDataset(x, y)

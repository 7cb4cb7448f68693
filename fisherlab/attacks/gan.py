"""GAN priors for model inversion: GMI's generator and critic, KEDMI's discriminator.

The generator maps a latent ``z ~ N(0, I)`` (``z_dim`` = 100) to an image in
pixel space ``[0, 1]`` (a sigmoid output); attacks normalise it with the
target's input spec before feeding the target. Shapes follow DCGAN for square
images whose side is a multiple of 4 (28x28 MNIST-like inputs, 32, 64, ...).

* :class:`Generator`: linear to a ``4d x s/4 x s/4`` map, two transposed
  convolutions with BatchNorm, sigmoid.
* :class:`Critic` (GMI): two strided convolutions with instance norm and a
  linear score, for WGAN-GP (no BatchNorm, which would break the gradient
  penalty) or the non-saturating DCGAN loss.
* :class:`KEDMIDiscriminator`: the same trunk with ``K`` class logits; the
  probability of "real" is ``Z/(Z+1)`` with ``Z = sum_k exp(logit_k)``, i.e. a
  ``(K+1)``-way classifier whose fake logit is fixed at 0 (Salimans et al.
  2016, as used by KEDMI, Chen et al. 2021).
* :class:`ConditionalGenerator` and :class:`ProjectionDiscriminator` (PLG-MI,
  Yuan et al. 2023): the generator's BatchNorms are class-conditional (a
  per-class scale and shift, initialised to 1 and 0, after a BatchNorm
  without its own affine); the discriminator scores ``psi(h) + <embed(y), h>``
  on the critic trunk's features ``h`` (the projection discriminator of
  Miyato and Koyama 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fisherlab.errors import FisherlabError

Z_DIM = 100


def _check_size(image_size: int) -> int:
    if image_size % 4 or image_size < 8:
        raise FisherlabError(f"GAN image_size must be a multiple of 4 and >= 8, got {image_size}")
    return image_size // 4


class Generator(nn.Module):
    """DCGAN generator ``z -> image in [0, 1]``.

    Args:
        channels: Output image channels.
        image_size: Output side (multiple of 4).
        z_dim: Latent dimension.
        width: Channels of the last hidden map.
    """

    def __init__(
        self, channels: int = 1, image_size: int = 28, z_dim: int = Z_DIM, width: int = 64
    ):
        super().__init__()
        side = _check_size(image_size)
        self.z_dim, self.side, self.width = z_dim, side, width
        self.fc = nn.Linear(z_dim, 2 * width * side * side)
        self.bn0 = nn.BatchNorm1d(2 * width * side * side)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, z: Tensor) -> Tensor:
        """Images ``(N, C, S, S)`` in [0, 1] for latents ``(N, z_dim)``."""
        h = torch.relu(self.bn0(self.fc(z)))
        return self.up(h.view(-1, 2 * self.width, self.side, self.side))


class _Trunk(nn.Module):
    def __init__(self, channels: int, image_size: int, width: int):
        super().__init__()
        side = _check_size(image_size)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.InstanceNorm2d(2 * width, affine=True),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.features = 2 * width * side * side

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Critic(nn.Module):
    """GMI's discriminator: one real-valued score per image (higher = more real)."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64):
        super().__init__()
        self.trunk = _Trunk(channels, image_size, width)
        self.score = nn.Linear(self.trunk.features, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Scores ``(N,)`` for images in [0, 1]."""
        return self.score(self.trunk(x * 2 - 1)).view(-1)


class KEDMIDiscriminator(nn.Module):
    """KEDMI's inversion-specific discriminator with ``num_classes`` class logits.

    ``forward`` returns ``(logits, features)``; :meth:`real_logit` is the logit
    of ``D(x) = Z/(Z+1)``, i.e. ``logsumexp(logits)``.
    """

    def __init__(self, num_classes: int, channels: int = 1, image_size: int = 28, width: int = 64):
        super().__init__()
        self.trunk = _Trunk(channels, image_size, width)
        self.classes = nn.Linear(self.trunk.features, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits ``(N, K)`` and trunk features ``(N, F)``."""
        features = self.trunk(x * 2 - 1)
        return self.classes(features), features

    @staticmethod
    def real_logit(logits: Tensor) -> Tensor:
        """``log Z``: the logit of the probability that the image is real."""
        return torch.logsumexp(logits, dim=1)

    def score(self, x: Tensor) -> Tensor:
        """Realness logit per image, the prior term of the KEDMI attack."""
        return self.real_logit(self(x)[0])


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine, then a per-class scale (init 1) and shift (init 0).

    Args:
        features: Channels (``BatchNorm2d``) or features (``BatchNorm1d``).
        num_classes: Classes of the conditioning label.
        dims: 1 or 2, the BatchNorm's kind.
    """

    def __init__(self, features: int, num_classes: int, dims: int = 2):
        super().__init__()
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.norm = norm(features, affine=False)
        self.scale = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``scale_y * BN(x) + shift_y``."""
        shape = (-1, x.shape[1]) + (1,) * (x.dim() - 2)
        return self.scale(y).view(shape) * self.norm(x) + self.shift(y).view(shape)


class ConditionalGenerator(nn.Module):
    """PLG-MI's class-conditional generator ``(z, y) -> image in [0, 1]``.

    :class:`Generator`'s shapes with every BatchNorm made class-conditional
    (:class:`ConditionalBatchNorm`), the only way the class enters, as in
    PLG-MI's SNGAN-projection ResNet generator.

    Args:
        num_classes: Classes (the target's).
        channels: Output image channels.
        image_size: Output side (multiple of 4).
        z_dim: Latent dimension.
        width: Channels of the last hidden map.
    """

    def __init__(
        self,
        num_classes: int,
        channels: int = 1,
        image_size: int = 28,
        z_dim: int = Z_DIM,
        width: int = 64,
    ):
        super().__init__()
        side = _check_size(image_size)
        self.num_classes, self.z_dim, self.side, self.width = num_classes, z_dim, side, width
        self.fc = nn.Linear(z_dim, 2 * width * side * side)
        self.bn0 = ConditionalBatchNorm(2 * width, num_classes)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, 2, 1)
        self.bn1 = ConditionalBatchNorm(width, num_classes)
        self.up2 = nn.ConvTranspose2d(width, channels, 4, 2, 1)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Images ``(N, C, S, S)`` in [0, 1] for latents ``(N, z_dim)`` and classes ``(N,)``."""
        h = self.fc(z).view(-1, 2 * self.width, self.side, self.side)
        h = torch.relu(self.bn0(h, y))
        h = torch.relu(self.bn1(self.up1(h), y))
        return torch.sigmoid(self.up2(h))


class ProjectionDiscriminator(nn.Module):
    """PLG-MI's discriminator: a projection discriminator on :class:`Critic`'s trunk.

    The trunk's features ``h`` (two strided convolutions, instance norm,
    LeakyReLU) give the score ``psi(h) + <embed(y), h>``, one real value per
    image (Miyato and Koyama 2018). PLG-MI's own discriminator is a deep
    spectrally normalised ResNet; a two-layer spectrally normalised one
    did not learn 28x28 digits here (its generator's samples stayed a
    checkerboard after 300 steps), while this trunk, which trains GMI's
    prior, did.
    """

    def __init__(self, num_classes: int, channels: int = 1, image_size: int = 28, width: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.trunk = _Trunk(channels, image_size, width)
        self.psi = nn.Linear(self.trunk.features, 1)
        self.embed = nn.Embedding(num_classes, self.trunk.features)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores ``(N,)`` for images in [0, 1] of classes ``y``."""
        h = self.trunk(x * 2 - 1)
        return self.psi(h).view(-1) + (self.embed(y) * h).sum(1)

"""The KEDMI prior's generator loss (fisherlab.attacks.train_gan) follows KEDMI's reference code.

KEDMI's ``k+1_gan.py`` trains the generator on feature matching plus ``1e-4``
times ``HLoss`` of the discriminator's class logits on the fakes: the entropy
of their softmax over the classes, summed over the batch. The target's
predictions do not enter the generator's loss (only the discriminator's, as
soft labels).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from fisherlab.attacks.gan import Z_DIM, Generator, KEDMIDiscriminator
from fisherlab.attacks.train_gan import (
    GANConfig,
    _generator_loss,
    discriminator_entropy,
)


def _hand_entropy(logits: list[list[float]]) -> float:
    """``-sum_i sum_c p_ic log p_ic`` with ``p_i = softmax(l_i)``, written out in Python floats."""
    total = 0.0
    for row in logits:
        z = sum(math.exp(v) for v in row)
        for v in row:
            p = math.exp(v) / z
            total -= p * math.log(p)
    return total


def test_discriminator_entropy_is_the_batch_sum_of_per_image_entropies():
    logits = [[0.3, -1.2, 2.0], [0.0, 0.0, 0.0], [5.0, -3.0, 1.5]]
    got = discriminator_entropy(torch.tensor(logits, dtype=torch.float64))
    assert float(got) == pytest.approx(_hand_entropy(logits), rel=1e-12)
    # uniform logits give log K per image; the batch *sums* (KEDMI's HLoss), it does not average
    uniform = discriminator_entropy(torch.zeros(4, 3, dtype=torch.float64))
    assert float(uniform) == pytest.approx(4 * math.log(3), rel=1e-12)


def test_kedmi_generator_loss_is_feature_matching_plus_1e4_discriminator_entropy():
    torch.manual_seed(0)
    disc = KEDMIDiscriminator(3, channels=1, image_size=8, width=4).double()
    generator = Generator(1, 8).double()
    real = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    config = GANConfig(data="mnist5k:5-9", kind="kedmi", target="t.pt")
    assert config.entropy_weight == 1e-4  # KEDMI's reference weight

    loss = _generator_loss(config, disc, real, generator, torch.Generator().manual_seed(3))

    # the same fakes, by the same seeded draw
    z = torch.randn(5, Z_DIM, generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        logits_fake, feat_fake = disc(generator(z))
        _, feat_real = disc(real)
    matching = float((feat_real.mean(0) - feat_fake.mean(0)).abs().mean())
    expected = matching + 1e-4 * _hand_entropy(logits_fake.tolist())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)


def test_the_target_does_not_enter_the_generator_loss():
    # The loss above equals a value computed from the discriminator and generator alone; the
    # function is not even given the target (it only enters the discriminator's loss).
    assert "target" not in inspect.signature(_generator_loss).parameters


def test_kedmi_keys_changed_with_the_loss_and_gmi_keys_did_not():
    gmi = GANConfig(data="mnist5k:5-9", device="cpu")
    assert gmi.key() == "43a1b2f1d691"  # as before the KEDMI entropy term changed
    assert GANConfig(data="mnist5k:5-9", entropy_weight=0.5).key() == gmi.key()  # unused by GMI
    kedmi = dict(data="mnist5k:5-9", kind="kedmi", target="t.pt")
    assert GANConfig(**kedmi).key() != GANConfig(**kedmi, entropy_weight=1e-2).key()

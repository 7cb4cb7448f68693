"""Training the GAN priors of the attacks (fisherlab.attacks.train_gan)."""

from __future__ import annotations

import pytest
import torch

from fisherlab.attacks import GANConfig, load_gan, train_gan
from fisherlab.errors import FisherlabError


def test_train_gan_resumes_from_its_last_epoch(tmp_path):
    out = tmp_path / "g.pt"
    base = dict(data="mnist5k:5-9", max_train_samples=128, batch_size=32)
    first = train_gan(GANConfig(epochs=1, **base), out, progress=False)
    w1 = first.generator.fc.weight.detach().clone()
    second = train_gan(GANConfig(epochs=2, **base), out, progress=False)
    assert second.epoch == 2 and not torch.equal(second.generator.fc.weight, w1)
    again = train_gan(GANConfig(epochs=2, **base), out, progress=False)  # nothing left to do
    assert torch.equal(again.generator.fc.weight, second.generator.fc.weight)
    assert load_gan(out).epoch == 2 and (tmp_path / "g.samples.png").is_file()
    with pytest.raises(FisherlabError, match="different GAN run"):
        train_gan(GANConfig(epochs=2, lr=1e-3, **base), out, progress=False)

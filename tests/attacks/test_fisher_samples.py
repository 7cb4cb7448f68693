"""``fisher_samples``: the Fisher is recorded on the first rows of each class of the attack's batch.

Each attack tells the recorder its batch layout: GMI's batch has ``per_class``
latents per class, KEDMI's step batch ``kedmi_samples`` draws per class. The
recorded per-layer Fisher of iteration 1 is compared with fisherlab's float64
per-sample loop (:func:`~fisherlab.fisher.reference.reference_profile`) on
exactly those rows, rebuilt from the attack's seeded draws.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from fisherlab.attacks import AttackConfig, FisherRecorder, GANPrior
from fisherlab.attacks.gan import Z_DIM, Critic, Generator, KEDMIDiscriminator
from fisherlab.attacks.gmi import run_gmi
from fisherlab.attacks.kedmi import run_kedmi
from fisherlab.attacks.method import class_labels
from fisherlab.data import InputSpec
from fisherlab.fisher.reference import reference_profile
from fisherlab.models import build_model, model_meta

SPEC = InputSpec(1, 28, (0.5,), (0.5,))
CLASSES = (0, 2)


def _target() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("target_cnn", 3, in_channels=1, image_size=28).eval()
    model_meta(model).input_spec = SPEC
    return model


def _prior(kind: str) -> GANPrior:
    torch.manual_seed(1)
    disc = KEDMIDiscriminator(3, 1, 28) if kind == "kedmi" else Critic(1, 28)
    return GANPrior(Generator(1, 28).eval(), disc.eval(), kind, InputSpec(1, 28, None, None), 0, {})


def _expected(target, images: torch.Tensor, labels: torch.Tensor, rows: list[int]):
    """The float64 per-sample-loop Fisher of the identity loss on ``rows`` of the batch."""
    chosen = TensorDataset(SPEC.normalize(images[rows].double()), labels[rows])
    return reference_profile(copy.deepcopy(target).double(), chosen)


def _recorded_first_iteration(run, target, prior, config) -> tuple:
    recorder = FisherRecorder(target, SPEC, config.fisher_every, config.fisher_samples)
    fisher = run(target, SPEC, prior, config, recorder).fisher
    return fisher[fisher["iteration"] == 1].reset_index(drop=True)


def test_kedmi_records_the_first_m_draws_of_each_class():
    target, prior = _target(), _prior("kedmi")
    draws, m = 4, 2  # per_class (2) is not the batch's layout: kedmi_samples (4) is
    config = AttackConfig(
        attack="kedmi", classes=CLASSES, per_class=2, kedmi_samples=draws, iterations=1,
        restarts=1, seed=3, fisher_every=1, fisher_samples=m,
    )  # fmt: skip
    recorded = _recorded_first_iteration(run_kedmi, target, prior, config)
    # iteration 1: mu = 0, logvar = 0, so z is the first seeded draw itself
    eps = torch.randn(len(CLASSES), draws, Z_DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        images = prior.generator(eps.reshape(-1, Z_DIM))
    labels = class_labels(CLASSES, draws)
    rows = [c * draws + j for c in range(len(CLASSES)) for j in range(m)]
    expected = _expected(target, images, labels, rows)
    assert (recorded["n_samples"] == len(CLASSES) * m).all()
    assert recorded["trace"].to_numpy() == pytest.approx(expected["trace"].to_numpy(), rel=1e-4)
    # and not the rows of the old rule (rows with index % per_class < m: every row here)
    wrong = _expected(target, images, labels, list(range(len(labels))))
    assert recorded["trace"].to_numpy() != pytest.approx(wrong["trace"].to_numpy(), rel=1e-3)


def test_gmi_records_the_first_m_latents_of_each_class():
    target, prior = _target(), _prior("gmi")
    per_class, m = 3, 1
    config = AttackConfig(
        attack="gmi", classes=CLASSES, per_class=per_class, iterations=1, restarts=1, seed=5,
        fisher_every=1, fisher_samples=m,
    )  # fmt: skip
    recorded = _recorded_first_iteration(run_gmi, target, prior, config)
    n = len(CLASSES) * per_class
    z = torch.randn(n, Z_DIM, generator=torch.Generator().manual_seed(5)).clamp_(-1, 1)
    with torch.no_grad():
        images = prior.generator(z)
    labels = class_labels(CLASSES, per_class)
    rows = [c * per_class + j for c in range(len(CLASSES)) for j in range(m)]
    expected = _expected(target, images, labels, rows)
    assert (recorded["n_samples"] == len(CLASSES) * m).all()
    assert recorded["trace"].to_numpy() == pytest.approx(expected["trace"].to_numpy(), rel=1e-4)


def test_a_batch_that_is_not_whole_class_blocks_is_refused():
    recorder = FisherRecorder(_target(), SPEC, every=1, samples=1)
    images = torch.rand(5, 1, 28, 28)
    with (
        pytest.raises(ValueError, match="not blocks of 2 rows"),
        recorder.observe(1, 0, images, torch.zeros(5, dtype=torch.long), 1.0, 2),
    ):
        pass

"""LOMMA: GMI and KEDMI with the logit loss and model augmentation (Nguyen et al., CVPR 2023).

"Re-thinking Model Inversion Attacks Against Deep Neural Networks" changes
the identity term of an existing attack and nothing else:

* **the logit loss**: the identity cross-entropy is replaced by the negative
  target logit ``-T(x)_y`` (the authors' ``NLLLoss`` on raw logits), which
  keeps pushing the class's logit up after the softmax saturates, plus a
  regulariser ``w * mean_f (f(x) - mu)^2`` on the *target's* penultimate
  features ``f``, with ``mu`` their mean over public images (the authors
  average up to 5,000; ``w = 1`` in their configs);
* **model augmentation**: the logit loss is averaged over the target and
  surrogate models of other architectures distilled from it on the public
  data (:mod:`fisherlab.attacks.surrogates`), so that the reconstructions
  do not overfit the target's decision boundary.

The identity term becomes ``mean_m -T_m(x)_y + w * mean_f (f(x) - mu)^2`` and
the attack loss ``prior + lam * identity`` with the base attack's ``lam``
(100), optimiser, step size, iterations, latent clipping and restarts: the
authors run LOMMA with each base attack's own schedule, and so does fisherlab,
so that a comparison with GMI or KEDMI isolates what LOMMA changes.

Taken from the authors' code (sutd-visual-computing-group/Re-thinking_MI):
the loss, the regulariser on the target only, the identity term averaged over
target and surrogates, the feature mean over public images, ``w = 1`` and
``lam = 100``. Scaled down for 28x28 digits: the authors distil three
EfficientNets (b0-b2) for 20 epochs at lr 0.01; fisherlab's default
surrogates are small networks of other families
(:data:`fisherlab.attacks.surrogates.DEFAULT_SURROGATES`),
distilled the same way (:func:`fisherlab.attacks.surrogates.distill`).
"""

from __future__ import annotations

from fisherlab.attacks.gmi import run_gmi
from fisherlab.attacks.identity import IdentityLoss, ModelAugmentation
from fisherlab.attacks.kedmi import run_kedmi
from fisherlab.attacks.method import AttackMethod, AttackResult, AttackSettings
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.data.specs import InputSpec


def run_lomma_gmi(
    target,
    spec: InputSpec,
    prior,
    config: AttackSettings,
    recorder: FisherRecorder,
    progress=None,
    augmentation: ModelAugmentation | None = None,
) -> AttackResult:
    """GMI with LOMMA's identity term (see module docs)."""
    return run_gmi(
        target, spec, prior, config, recorder, progress, augmentation, IdentityLoss.LOMMA
    )


def run_lomma_kedmi(
    target,
    spec: InputSpec,
    prior,
    config: AttackSettings,
    recorder: FisherRecorder,
    progress=None,
    augmentation: ModelAugmentation | None = None,
) -> AttackResult:
    """KEDMI with LOMMA's identity term (see module docs)."""
    return run_kedmi(
        target, spec, prior, config, recorder, progress, augmentation, IdentityLoss.LOMMA
    )


class LommaGMI(AttackMethod):
    """GMI with the logit loss and model augmentation (Nguyen et al., CVPR 2023)."""

    name = "lomma-gmi"
    summary = "GMI with LOMMA's logit loss and distilled surrogates (Nguyen et al., CVPR 2023)"
    default_lr = 0.01
    prior = "gmi"
    identity = IdentityLoss.LOMMA
    options = ("feature_weight",)
    run = staticmethod(run_lomma_gmi)


class LommaKEDMI(AttackMethod):
    """KEDMI with the logit loss and model augmentation (Nguyen et al., CVPR 2023)."""

    name = "lomma-kedmi"
    summary = "KEDMI with LOMMA's logit loss and distilled surrogates (Nguyen et al., CVPR 2023)"
    default_lr = 0.02
    prior = "kedmi"
    identity = IdentityLoss.LOMMA
    options = ("feature_weight",)
    run = staticmethod(run_lomma_kedmi)

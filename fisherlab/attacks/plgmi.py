"""PLG-MI, pseudo label-guided model inversion with a conditional GAN (Yuan et al., AAAI 2023).

The prior is a class-conditional generator ``G(z, y)`` trained on public
images pseudo-labelled by the target (``fisherlab train-gan --kind plgmi``,
:mod:`fisherlab.attacks.train_gan`), so the class is part of the prior and
the attack only searches the latents of its class: for latents ``z_j`` of
class ``y_j`` Adam minimises

    mean_j sum_v max-margin(T(aug_v(G(z_j, y_j))), y_j),

with ``max-margin(l, y) = -l_y + max_{k != y} l_k`` on raw logits and
``views`` independently augmented views ``aug_v`` per step
(:func:`fisherlab.attacks.augment.augment`). There is no prior term: the
conditional generator keeps the images on its class's manifold. Of
``restarts`` independent runs the reconstruction with the highest target
confidence is kept per slot, as for GMI, so that the attacks are compared
under one protocol (the authors report the mean over 5 seeds instead).

Taken from the authors' code (LetheSec/PLG-MI-Attack, ``reconstruct.py``):
Adam with lr 0.1, 600 iterations, ``z ~ N(0, I)`` without clipping, two
augmented views per step whose losses are summed. The augmentation is
theirs without the horizontal flip (digits are not mirror-symmetric).

The Fisher is recorded for the max-margin loss of one augmented view per
sample: each view is a row of the recorded batch (views of one latent are
adjacent, so the rows of a class stay together).
"""

from __future__ import annotations

import torch
from torch import nn

from fisherlab._device import autocast, grad_scaler, model_device
from fisherlab.attacks.augment import PLGMI_AUGMENT, augment
from fisherlab.attacks.gan import Z_DIM
from fisherlab.attacks.identity import IdentityLoss
from fisherlab.attacks.method import (
    AttackMethod,
    AttackResult,
    AttackSettings,
    class_labels,
    descend,
    finish,
    target_confidence,
)
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.data.specs import InputSpec


def run_plgmi(
    target: nn.Module,
    spec: InputSpec,
    prior,
    config: AttackSettings,
    recorder: FisherRecorder,
    progress=None,
    augmentation=None,
) -> AttackResult:
    """Run PLG-MI (see module docs); ``prior`` is a ``plgmi`` GAN prior."""
    device = model_device(target)
    labels = class_labels(config.classes, config.per_class, device)
    views = config.views
    view_labels = labels.repeat_interleave(views)
    gen = torch.Generator().manual_seed(config.seed)  # drawn on the CPU, then moved
    scaler = grad_scaler(config.amp, device)
    candidates, scores, rows = [], [], []
    scale = 1.0 / len(labels)  # each view's loss enters the mean over latents with 1/n
    example = prior.generator(torch.zeros(2, Z_DIM, device=device), labels[:1].repeat(2))
    term = recorder.identity_term(example, IdentityLoss.MAX_MARGIN)
    nothing = torch.full((), float("nan"), device=device)  # no prior term
    for restart in range(config.restarts):
        z = torch.randn(len(labels), Z_DIM, generator=gen).to(device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=config.step_size)
        for it in range(1, config.iterations + 1):
            with autocast(config.amp, device):  # the generator only: the target stays float32
                images = prior.generator(z, labels)
            images = images.float().repeat_interleave(views, dim=0)
            viewed = augment(images, PLGMI_AUGMENT, gen)
            identity = term(viewed, view_labels)[0]
            loss = identity.view(len(labels), views).sum(1).mean()
            observed = (it, restart, viewed, view_labels, scale, config.per_class * views)
            descend(loss, [z], opt, scaler, recorder, observed)
            rows.append((restart, it, identity.mean().detach(), nothing))
            if progress is not None:
                progress(1)
        with torch.no_grad(), autocast(config.amp, device):
            final = prior.generator(z, labels).float()
        candidates.append((final, z.detach().clone()))
        scores.append(target_confidence(target, spec, final, labels))
    return finish(candidates, scores, rows, labels, recorder)


class PLGMI(AttackMethod):
    """Latents of a class-conditional GAN with a max-margin loss (Yuan et al., AAAI 2023)."""

    name = "plgmi"
    summary = "a pseudo-label conditional GAN and a max-margin loss (Yuan et al., AAAI 2023)"
    default_lr = 0.1
    prior = "plgmi"
    identity = IdentityLoss.MAX_MARGIN
    options = ("views",)
    run = staticmethod(run_plgmi)

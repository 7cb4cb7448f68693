"""GMI, the generative model-inversion attack (Zhang et al., CVPR 2020).

For latents ``z_j`` with target classes ``y_j`` it minimises, by SGD with
momentum on ``z`` (clipped to [-1, 1] after every step),

    mean_j [ -D(G(z_j)) + lam * CE(T(G(z_j)), y_j) ],

the prior term keeping ``G(z_j)`` realistic and the identity term making the
target classify it as ``y_j``. Of ``restarts`` independent runs the one whose
reconstruction the target gives the highest confidence is kept, per slot.
Defaults: ``lam = 100``, momentum 0.9, lr 0.01 (MNIST; 0.02 for faces).
"""

from __future__ import annotations

import torch
from torch import nn

from fisherlab._device import autocast, grad_scaler, model_device
from fisherlab.attacks.gan import Z_DIM
from fisherlab.attacks.identity import IdentityLoss, ModelAugmentation
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


def run_gmi(
    target: nn.Module,
    spec: InputSpec,
    prior,
    config: AttackSettings,
    recorder: FisherRecorder,
    progress=None,
    augmentation: ModelAugmentation | None = None,
    loss: IdentityLoss = IdentityLoss.CROSS_ENTROPY,
) -> AttackResult:
    """Run GMI (see module docs); ``prior`` is a :class:`fisherlab.attacks.train_gan.GANPrior`.

    ``loss`` replaces the identity cross-entropy (LOMMA-GMI,
    :mod:`fisherlab.attacks.lomma`, passes ``IdentityLoss.LOMMA`` with its
    ``augmentation``); the schedule is GMI's either way.
    """
    device = model_device(target)
    labels = class_labels(config.classes, config.per_class, device)
    gen = torch.Generator().manual_seed(config.seed)  # drawn on the CPU, then moved
    scaler = grad_scaler(config.amp, device)
    candidates, scores, rows = [], [], []
    scale = config.lam / len(labels)  # weight of each identity loss in the mean
    example = prior.generator(torch.zeros(2, Z_DIM, device=device))
    term = recorder.identity_term(example, loss, augmentation)
    for restart in range(config.restarts):
        z = torch.randn(len(labels), Z_DIM, generator=gen).clamp_(-1, 1).to(device)
        z.requires_grad_(True)
        opt = torch.optim.SGD([z], lr=config.step_size, momentum=config.momentum)
        for it in range(1, config.iterations + 1):
            with autocast(config.amp, device):  # the prior only: the target stays float32
                images = prior.generator(z)
                prior_loss = -prior.prior_score(images)
            images, prior_loss = images.float(), prior_loss.float()
            identity = term(images, labels)[0]
            loss = (prior_loss + config.lam * identity).mean()
            observed = (it, restart, images, labels, scale, config.per_class)
            descend(loss, [z], opt, scaler, recorder, observed)
            with torch.no_grad():
                z.clamp_(-1, 1)
            rows.append((restart, it, identity.mean().detach(), prior_loss.mean().detach()))
            if progress is not None:
                progress(1)
        with torch.no_grad(), autocast(config.amp, device):
            final = prior.generator(z).float()
        candidates.append((final, z.detach().clone()))
        scores.append(target_confidence(target, spec, final, labels))
    return finish(candidates, scores, rows, labels, recorder)


class GMI(AttackMethod):
    """Latent SGD with a critic prior (Zhang et al., CVPR 2020): :func:`run_gmi`."""

    name = "gmi"
    summary = "latent SGD with a critic prior (Zhang et al., CVPR 2020)"
    default_lr = 0.01
    prior = "gmi"
    run = staticmethod(run_gmi)

"""KEDMI, knowledge-enriched distributional model inversion (Chen et al., ICCV 2021).

Instead of single latents it learns, per target class ``c``, a Gaussian
``N(mu_c, diag(exp(logvar_c)))`` over the latent space, by Adam on
``(mu_c, logvar_c)`` with the reparameterisation ``z = mu + exp(logvar/2) eps``:

    mean over draws [ softplus(-log Z(G(z))) + lam * CE(T(G(z)), c) ],

where ``log Z = logsumexp`` of the inversion-specific discriminator's class
logits (the probability of "real" is ``Z/(Z+1)``). At the end ``per_class``
latents are sampled from each learned distribution; of ``restarts``
independent runs the best reconstruction per slot is kept. Defaults:
``lam = 100``, Adam lr 0.02.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def run_kedmi(
    target: nn.Module,
    spec: InputSpec,
    prior,
    config: AttackSettings,
    recorder: FisherRecorder,
    progress=None,
    augmentation: ModelAugmentation | None = None,
    loss: IdentityLoss = IdentityLoss.CROSS_ENTROPY,
) -> AttackResult:
    """Run KEDMI (see module docs); ``prior`` is a :class:`fisherlab.attacks.train_gan.GANPrior`.

    ``loss`` replaces the identity cross-entropy (LOMMA-KEDMI,
    :mod:`fisherlab.attacks.lomma`, passes ``IdentityLoss.LOMMA`` with its
    ``augmentation``); the schedule is KEDMI's either way.
    """
    device = model_device(target)
    k = len(config.classes)
    draws = config.kedmi_samples
    step_labels = class_labels(config.classes, draws, device)
    labels = class_labels(config.classes, config.per_class, device)
    gen = torch.Generator().manual_seed(config.seed)  # drawn on the CPU, then moved
    scaler = grad_scaler(config.amp, device)
    candidates, scores, rows = [], [], []
    scale = config.lam / len(step_labels)  # weight of each identity loss in the mean
    example = prior.generator(torch.zeros(2, Z_DIM, device=device))
    term = recorder.identity_term(example, loss, augmentation)
    for restart in range(config.restarts):
        mu = torch.zeros(k, Z_DIM, device=device, requires_grad=True)
        logvar = torch.zeros(k, Z_DIM, device=device, requires_grad=True)
        opt = torch.optim.Adam([mu, logvar], lr=config.step_size)
        for it in range(1, config.iterations + 1):
            eps = torch.randn(k, draws, Z_DIM, generator=gen).to(device)
            z = (mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(-1, Z_DIM)
            with autocast(config.amp, device):  # the prior only: the target stays float32
                images = prior.generator(z)
                prior_loss = F.softplus(-prior.prior_score(images))
            images, prior_loss = images.float(), prior_loss.float()
            identity = term(images, step_labels)[0]
            loss = (prior_loss + config.lam * identity).mean()
            observed = (it, restart, images, step_labels, scale, draws)  # draws per class
            descend(loss, [mu, logvar], opt, scaler, recorder, observed)
            rows.append((restart, it, identity.mean().detach(), prior_loss.mean().detach()))
            if progress is not None:
                progress(1)
        with torch.no_grad():
            eps = torch.randn(k, config.per_class, Z_DIM, generator=gen).to(device)
            z = (mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(-1, Z_DIM)
            with autocast(config.amp, device):
                final = prior.generator(z).float()
        candidates.append((final, z))
        scores.append(target_confidence(target, spec, final, labels))
    return finish(candidates, scores, rows, labels, recorder)


class KEDMI(AttackMethod):
    """A learned latent distribution per class (Chen et al., ICCV 2021): :func:`run_kedmi`."""

    name = "kedmi"
    summary = "a learned latent distribution per class (Chen et al., ICCV 2021)"
    default_lr = 0.02
    prior = "kedmi"
    run = staticmethod(run_kedmi)

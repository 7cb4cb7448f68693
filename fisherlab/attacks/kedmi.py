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

from fisherlab.attacks.gan import Z_DIM
from fisherlab.attacks.method import (
    AttackMethod,
    AttackResult,
    AttackSettings,
    class_labels,
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
) -> AttackResult:
    """Run KEDMI (see module docs); ``prior`` is a :class:`fisherlab.attacks.train_gan.GANPrior`."""
    k = len(config.classes)
    draws = config.kedmi_samples
    step_labels = class_labels(config.classes, draws)
    labels = class_labels(config.classes, config.per_class)
    gen = torch.Generator().manual_seed(config.seed)
    candidates, scores, rows = [], [], []
    scale = config.lam / len(step_labels)  # weight of each identity loss in the mean
    net = recorder.network(prior.generator(torch.zeros(2, Z_DIM)))
    for restart in range(config.restarts):
        mu = torch.zeros(k, Z_DIM, requires_grad=True)
        logvar = torch.zeros(k, Z_DIM, requires_grad=True)
        opt = torch.optim.Adam([mu, logvar], lr=config.step_size)
        for it in range(1, config.iterations + 1):
            eps = torch.randn(k, draws, Z_DIM, generator=gen)
            z = (mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(-1, Z_DIM)
            images = prior.generator(z)
            prior_loss = F.softplus(-prior.prior_score(images))
            identity = F.cross_entropy(net(spec.normalize(images)), step_labels, reduction="none")
            loss = (prior_loss + config.lam * identity).mean()
            with recorder.observe(it, restart, images, step_labels, scale):
                grads = torch.autograd.grad(loss, [mu, logvar])
            mu.grad, logvar.grad = grads
            opt.step()
            rows.append((restart, it, identity.mean().item(), prior_loss.mean().item()))
            if progress is not None:
                progress(1)
        with torch.no_grad():
            eps = torch.randn(k, config.per_class, Z_DIM, generator=gen)
            z = (mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(-1, Z_DIM)
            final = prior.generator(z)
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

"""A white-box baseline without a generator: optimise the pixels themselves.

Pixels are ``x = sigmoid(w)`` and Adam minimises

    mean_j [ CE(T(x_j), y_j) ] + tv_weight * TV(x),

with the anisotropic total variation ``TV`` as the only image prior. It shows
what the GAN prior of GMI and KEDMI adds: such reconstructions fool the
target but rarely look like, or are classified by an evaluation model as, the
private class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fisherlab._device import grad_scaler, model_device
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


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring pixels, per image ``(N,)``."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def run_whitebox(
    target: nn.Module,
    spec: InputSpec,
    prior,
    config: AttackSettings,
    recorder: FisherRecorder,
    progress=None,
    augmentation=None,
) -> AttackResult:
    """Run the pixel-space baseline (see module docs); ``prior`` and ``augmentation`` are unused."""
    device = model_device(target)
    labels = class_labels(config.classes, config.per_class, device)
    gen = torch.Generator().manual_seed(config.seed)  # drawn on the CPU, then moved
    scaler = grad_scaler(None, device)  # no prior to run in low precision (see AttackConfig.amp)
    shape = (len(labels), spec.channels, spec.size, spec.size)
    candidates, scores, rows = [], [], []
    net = recorder.network(torch.zeros(2, *shape[1:], device=device))
    for restart in range(config.restarts):
        w = (0.1 * torch.randn(shape, generator=gen)).to(device).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=config.step_size)
        for it in range(1, config.iterations + 1):
            images = torch.sigmoid(w)
            identity = F.cross_entropy(net(spec.normalize(images)), labels, reduction="none")
            tv = total_variation(images)
            loss = (identity + config.tv_weight * tv).mean()
            observed = (it, restart, images, labels, 1.0 / len(labels), config.per_class)
            descend(loss, [w], opt, scaler, recorder, observed)
            rows.append((restart, it, identity.mean().detach(), tv.mean().detach()))
            if progress is not None:
                progress(1)
        final = torch.sigmoid(w.detach())
        candidates.append((final, None))
        scores.append(target_confidence(target, spec, final, labels))
    return finish(candidates, scores, rows, labels, recorder)


class WhiteBox(AttackMethod):
    """Pixels with a total-variation prior (no GAN): :func:`run_whitebox`."""

    name = "whitebox"
    summary = "pixels with a total-variation prior (no GAN)"
    default_lr = 0.05
    prior = None
    run = staticmethod(run_whitebox)

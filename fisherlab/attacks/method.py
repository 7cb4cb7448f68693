"""What every model-inversion attack implements and returns.

An attack searches, for each target class ``c``, inputs that the target ``T``
classifies as ``c``. Its *identity loss* for latent ``j`` with class ``y_j`` is
``L_j = CE(T(x_j), y_j)`` with ``x_j = G(z_j)`` (or the optimised pixels for
the white-box baseline), normalised with the target's input spec.

Each attack is an :class:`AttackMethod` subclass (:mod:`fisherlab.attacks.gmi`,
:mod:`~fisherlab.attacks.kedmi`, :mod:`~fisherlab.attacks.whitebox`) listed in
:data:`fisherlab.attacks.registry.ATTACKS`; it reads its settings from an
:class:`AttackSettings` (in practice :class:`fisherlab.attacks.base.AttackConfig`)
and returns an :class:`AttackResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pandas as pd
import torch
from torch import Tensor, nn

from fisherlab.attacks.identity import IdentityLoss, ModelAugmentation
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.data.specs import InputSpec


class AttackSettings(Protocol):
    """The settings an attack reads (:class:`fisherlab.attacks.base.AttackConfig` has them)."""

    classes: tuple[int, ...]
    per_class: int
    iterations: int
    restarts: int
    seed: int
    lam: float
    momentum: float
    kedmi_samples: int
    tv_weight: float
    feature_weight: float
    views: int
    amp: str | None

    @property
    def step_size(self) -> float:
        """The learning rate in effect."""
        ...


@dataclass
class AttackResult:
    """Reconstructions and what was recorded along the way.

    Attributes:
        images: ``(C * per_class, ch, S, S)`` reconstructions in pixel space [0, 1].
        labels: Target class of each reconstruction.
        restart: Which restart each kept reconstruction came from.
        confidence: Target's softmax probability of the class, per reconstruction.
        latents: Final latents of the kept restarts (GMI), or ``None``.
        fisher: One row per (iteration, layer) when recorded, else empty.
        trajectory: One row per (restart, iteration): mean identity and prior loss.
    """

    images: Tensor
    labels: Tensor
    restart: Tensor
    confidence: Tensor
    latents: Tensor | None
    fisher: pd.DataFrame = field(default_factory=pd.DataFrame)
    trajectory: pd.DataFrame = field(default_factory=pd.DataFrame)


class AttackMethod:
    """One model-inversion attack: its name, defaults and algorithm.

    Subclasses set the class attributes and implement :meth:`run`.

    Attributes:
        name: The name of ``--attack``.
        summary: One line for help texts.
        default_lr: Step size when the config gives none.
        prior: The kind of GAN prior it needs (``"gmi"``, ``"kedmi"``,
            ``"plgmi"``), or ``None`` for none.
        identity: Its identity loss (:class:`~fisherlab.attacks.identity.IdentityLoss`).
        options: The fields of :class:`~fisherlab.attacks.base.AttackConfig`
            only this attack reads (they enter its config's keys only for it).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    default_lr: ClassVar[float]
    prior: ClassVar[str | None]
    identity: ClassVar[IdentityLoss] = IdentityLoss.CROSS_ENTROPY
    options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def needs_surrogates(cls) -> bool:
        """Whether the attack averages its loss over distilled surrogates (LOMMA)."""
        return cls.identity is IdentityLoss.LOMMA

    @staticmethod
    def run(
        target: nn.Module,
        spec: InputSpec,
        prior: Any,
        config: AttackSettings,
        recorder: FisherRecorder,
        progress: Callable[[int], Any] | None = None,
        augmentation: ModelAugmentation | None = None,
    ) -> AttackResult:
        """Invert ``target``.

        The attack computes on the target's device (random numbers are drawn
        on the CPU with the seeded generator and moved, so every device sees
        the same latents); with ``config.amp`` the GAN prior runs under
        autocast while the target, the Fisher recorder's network, stays in
        full precision. The result's tensors are on the CPU.

        Args:
            target: The attacked classifier (eval mode, not modified).
            spec: Its input spec.
            prior: The GAN prior (:class:`fisherlab.attacks.train_gan.GANPrior`) or ``None``.
            config: The settings.
            recorder: Records the Fisher along the attack; the attack runs the
                target as ``recorder.network(...)``.
            progress: Called with the number of iterations done since the last call.
            augmentation: LOMMA's surrogates and feature mean (LOMMA only).

        Returns:
            The reconstructions and what was recorded.
        """
        raise NotImplementedError


def class_labels(
    classes: tuple[int, ...], per_class: int, device: torch.device | str = "cpu"
) -> Tensor:
    """``[c0]*per_class + [c1]*per_class + ...``, on ``device``."""
    return torch.tensor(classes, dtype=torch.int64).repeat_interleave(per_class).to(device)


def descend(
    loss: Tensor,
    variables: Sequence[Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    recorder: FisherRecorder,
    observed: tuple[int, int, Tensor, Tensor, float, int],
) -> None:
    """The attack's backward pass (recorded when due) and one optimiser step.

    With an enabled (fp16) ``scaler`` the loss is multiplied by its scale
    ``S`` before the backward pass, so the recorder is told that each identity
    loss weighs ``scale * S``, and its Fisher stays that of the unscaled loss;
    the step is skipped when the scaled gradients overflow.

    Args:
        loss: The attack's scalar loss.
        variables: What the attack optimises (latents, a distribution's
            parameters, pixels), the parameters of ``optimizer``.
        optimizer: Their optimiser.
        scaler: :func:`fisherlab._device.grad_scaler`'s scaler (disabled
            unless ``--amp fp16``).
        recorder: The attack's Fisher recorder.
        observed: ``(iteration, restart, images, labels, scale, per_class)`` as
            :meth:`~fisherlab.attacks.recorder.FisherRecorder.observe` takes
            them.
    """
    iteration, restart, images, labels, scale, per_class = observed
    factor = scaler.get_scale() if scaler.is_enabled() and recorder.due(iteration) else 1.0
    with recorder.observe(iteration, restart, images, labels, scale * factor, per_class):
        grads = torch.autograd.grad(scaler.scale(loss), list(variables))
    for variable, grad in zip(variables, grads, strict=True):
        variable.grad = grad
    scaler.step(optimizer)
    scaler.update()


def target_confidence(target: nn.Module, spec: InputSpec, pixels: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability the target gives each image's class."""
    with torch.no_grad():
        probs = torch.softmax(target(spec.normalize(pixels)), dim=1)
    return probs.gather(1, labels.view(-1, 1)).squeeze(1)


TRAJECTORY_COLUMNS = ["restart", "iteration", "identity_loss", "prior_loss"]


def finish(
    candidates: list[tuple[Tensor, Tensor | None]],
    scores: list[Tensor],
    rows: list[tuple],
    labels: Tensor,
    recorder: FisherRecorder,
) -> AttackResult:
    """Keep the best restart per slot and assemble the :class:`AttackResult`.

    Args:
        candidates: Per restart, ``(images, latents or None)``.
        scores: Per restart, the target's confidence per slot.
        rows: Trajectory rows ``(restart, iteration, identity_loss, prior_loss)``;
            the losses may be 0-dim tensors on any device (read back at once
            here, rather than one synchronisation per iteration).
        labels: Target class per slot.
        recorder: The attack's Fisher recorder.

    Returns:
        The result, its tensors on the CPU.
    """
    images, latents, best, confidence = keep_best(candidates, scores)
    if rows and isinstance(rows[0][2], Tensor):
        values = torch.stack([torch.stack([r[2].float(), r[3].float()]) for r in rows]).cpu()
        rows = [(r[0], r[1], a, b) for r, (a, b) in zip(rows, values.tolist(), strict=True)]
    trajectory = pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)
    return AttackResult(
        images.cpu(),
        labels.cpu(),
        best.cpu(),
        confidence.cpu(),
        latents.cpu() if latents is not None else None,
        recorder.frame(),
        trajectory,
    )


def keep_best(candidates: list[tuple[Tensor, Tensor | None]], scores: list[Tensor]):
    """Per reconstruction slot, the restart with the highest score.

    Returns:
        ``(images, latents or None, restart index, score)``.
    """
    score = torch.stack(scores)  # (R, n)
    best = score.argmax(0)
    idx = torch.arange(score.shape[1])
    images = torch.stack([c[0] for c in candidates])[best, idx]
    latents = None
    if candidates[0][1] is not None:
        latents = torch.stack([c[1] for c in candidates])[best, idx]  # type: ignore[misc]
    return images, latents, best, score[best, idx]

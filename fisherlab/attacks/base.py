"""What every attack shares: its config (:class:`AttackConfig`), result and Fisher recording.

:class:`AttackConfig` is defined here; the result
(:class:`~fisherlab.attacks.method.AttackResult`), the recorder
(:class:`~fisherlab.attacks.recorder.FisherRecorder`) and the helpers of the
attacks are re-exported from where they live, so that this module is the one
to import from when writing or running an attack.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass

from fisherlab._device import AMP_DTYPES
from fisherlab.attacks.method import (
    TRAJECTORY_COLUMNS,
    AttackMethod,
    AttackResult,
    AttackSettings,
    class_labels,
    descend,
    finish,
    keep_best,
    target_confidence,
)
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.attacks.registry import attack_method
from fisherlab.errors import FisherlabError

__all__ = [
    "TRAJECTORY_COLUMNS",
    "AttackConfig",
    "AttackMethod",
    "AttackResult",
    "AttackSettings",
    "FisherRecorder",
    "class_labels",
    "descend",
    "finish",
    "keep_best",
    "target_confidence",
]


ATTACK_OPTIONS = ("feature_weight", "views")
"""Fields that some attacks read and others ignore (each attack names its own)."""

MAX_RECONSTRUCTIONS = 100_000
"""The most reconstructions (classes x per class) one attack makes."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_count(name: str, value: object, low: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise FisherlabError(f"{_flag(name)} must be an integer >= {low}, got {value!r}")


def _check_number(name: str, value: float, allowed: str, ok: Callable[[float], bool]) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and ok(value)):
        raise FisherlabError(f"{_flag(name)} must be a finite number {allowed}, got {value!r}")


@dataclass(frozen=True)
class AttackConfig:
    """One inversion run.

    Attributes:
        attack: A name of :data:`~fisherlab.attacks.registry.ATTACKS`
            (``"gmi"``, ``"kedmi"``, ``"whitebox"``, ``"lomma-gmi"``,
            ``"lomma-kedmi"`` or ``"plgmi"``).
        classes: Target classes to invert.
        per_class: Reconstructions per class.
        iterations: Optimisation steps per restart.
        restarts: Independent restarts; the best by target confidence is kept.
        seed: Seed of the latents (and KEDMI's samples).
        lr: Step size (``None``: the attack's ``default_lr`` in the registry;
            GMI and LOMMA-GMI: 0.01 for MNIST-like data, 0.02 for faces;
            KEDMI and LOMMA-KEDMI: 0.02; PLG-MI: 0.1; white-box: 0.05).
        lam: Weight of the identity loss (100 in GMI and KEDMI).
        momentum: SGD momentum of GMI.
        kedmi_samples: Latents drawn per class and step in KEDMI.
        tv_weight: Total-variation prior weight of the white-box baseline.
        feature_weight: Weight of LOMMA's feature regulariser (1 in the
            authors' configs; ``lomma-*`` only).
        views: Augmented views per latent and step (2 in PLG-MI; ``plgmi`` only).
        fisher_every: Record the Fisher every this many iterations (0: never).
        fisher_samples: Record the Fisher on only the first this many rows
            of each class of the recorded batch (default all): GMI's latents,
            the white-box baseline's images, or KEDMI's ``kedmi_samples``
            draws of that iteration.
        amp: Mixed precision of the GAN prior on CUDA, ``"bf16"`` or ``"fp16"``
            (``None``: float32). The target always runs in full precision: it
            is the network the Fisher is recorded on. So ``amp`` needs an
            attack with a prior; it enters :meth:`to_dict` (and cache keys)
            only when set.
    """

    attack: str = "gmi"
    classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    per_class: int = 5
    iterations: int = 600
    restarts: int = 5
    seed: int = 0
    lr: float | None = None
    lam: float = 100.0
    momentum: float = 0.9
    kedmi_samples: int = 8
    tv_weight: float = 0.05
    feature_weight: float = 1.0
    views: int = 2
    fisher_every: int = 0
    fisher_samples: int | None = None
    amp: str | None = None

    def __post_init__(self) -> None:
        attack_method(self.attack)
        for name in ("per_class", "iterations", "restarts", "kedmi_samples", "views"):
            _check_count(name, getattr(self, name), 1)
        _check_count("fisher_every", self.fisher_every, 0)
        if self.fisher_samples is not None:
            _check_count("fisher_samples", self.fisher_samples, 1)
        if not self.classes:
            raise FisherlabError("give at least one class to invert")
        if len(self.classes) * self.per_class > MAX_RECONSTRUCTIONS:
            raise FisherlabError(
                f"{len(self.classes)} classes x {self.per_class} per class is more than "
                f"{MAX_RECONSTRUCTIONS:,} reconstructions: attack fewer classes at a time"
            )
        _check_number("lam", self.lam, "> 0", lambda v: v > 0)
        _check_number("momentum", self.momentum, "in [0, 1)", lambda v: 0 <= v < 1)
        _check_number("tv_weight", self.tv_weight, ">= 0", lambda v: v >= 0)
        _check_number("feature_weight", self.feature_weight, ">= 0", lambda v: v >= 0)
        if self.lr is not None:
            _check_number("lr", self.lr, "> 0", lambda v: v > 0)
        if self.amp is not None:
            if self.amp not in AMP_DTYPES:
                raise FisherlabError(f"unknown --amp {self.amp!r}: expected bf16 or fp16")
            if attack_method(self.attack).prior is None:
                raise FisherlabError(
                    f"--amp changes nothing in the {self.attack} attack (no GAN prior; the "
                    "target always runs in full precision): drop --amp"
                )

    @property
    def step_size(self) -> float:
        """The learning rate, with each attack's default."""
        if self.lr is not None:
            return self.lr
        return attack_method(self.attack).default_lr

    def to_dict(self) -> dict:
        """Plain-JSON form.

        ``amp`` only when set, and an attack's own options
        (:attr:`~fisherlab.attacks.method.AttackMethod.options`) only for that
        attack, so the keys of runs that do not use them are unchanged.
        """
        d = asdict(self)
        d["classes"] = list(self.classes)
        if d["amp"] is None:
            del d["amp"]
        own = attack_method(self.attack).options
        for name in ATTACK_OPTIONS:
            if name not in own:
                del d[name]
        return d

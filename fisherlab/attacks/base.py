"""What every model-inversion attack shares: its config, result and Fisher recording.

An attack searches, for each target class ``c``, inputs that the target ``T``
classifies as ``c``. Its *identity loss* for latent ``j`` with class ``y_j`` is
``L_j = CE(T(x_j), y_j)`` with ``x_j = G(z_j)`` (or the optimised pixels for
the white-box baseline), normalised with the target's input spec. The Fisher
information of this objective with respect to the target's parameters,
recorded every ``fisher_every`` iterations through
:class:`fisherlab.fisher.FisherEngine`, is the paper's Fig. 5 quantity: one
row per (iteration, layer). Recording works on copies of ``T`` and on detached
images, so it cannot change the attack's trajectory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from torch import Tensor, nn

from fisherlab.data import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.fisher import FisherEngine


@dataclass(frozen=True)
class AttackConfig:
    """One inversion run.

    Attributes:
        attack: ``"gmi"``, ``"kedmi"`` or ``"whitebox"``.
        classes: Target classes to invert.
        per_class: Reconstructions per class.
        iterations: Optimisation steps per restart.
        restarts: Independent restarts; the best by target confidence is kept.
        seed: Seed of the latents (and KEDMI's samples).
        lr: Step size (GMI: 0.01 for MNIST-like data, 0.02 for faces;
            KEDMI: 0.02; white-box: 0.05).
        lam: Weight of the identity loss (100 in GMI and KEDMI).
        momentum: SGD momentum of GMI.
        kedmi_samples: Latents drawn per class and step in KEDMI.
        tv_weight: Total-variation prior weight of the white-box baseline.
        fisher_every: Record the Fisher every this many iterations (0: never).
        fisher_samples: Latents per class used for recording (default all).
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
    fisher_every: int = 0
    fisher_samples: int | None = None

    def __post_init__(self) -> None:
        if self.attack not in ("gmi", "kedmi", "whitebox"):
            raise FisherlabError(f"unknown attack {self.attack!r}: expected gmi, kedmi or whitebox")
        for name in ("per_class", "iterations", "restarts"):
            if getattr(self, name) < 1:
                raise FisherlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fisher_every < 0:
            raise FisherlabError(f"fisher_every must be >= 0, got {self.fisher_every}")
        if not self.classes:
            raise FisherlabError("give at least one class to invert")

    @property
    def step_size(self) -> float:
        """The learning rate, with each attack's default."""
        if self.lr is not None:
            return self.lr
        return {"gmi": 0.01, "kedmi": 0.02, "whitebox": 0.05}[self.attack]

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


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


class FisherRecorder:
    """Records the per-layer Fisher of the identity loss along an attack.

    Args:
        target: The target model (left untouched).
        spec: The target's input spec (to normalise pixels).
        every: Record at iterations ``every, 2 every, ...`` (and the first one).
        samples: Use only this many latents per class (``None``: all).
        per_class: Latents per class in the batch.
    """

    def __init__(
        self,
        target: nn.Module,
        spec: InputSpec,
        every: int,
        samples: int | None,
        per_class: int,
    ) -> None:
        self.every, self.spec = every, spec
        self.samples, self.per_class = samples, per_class
        self.engine = FisherEngine(target, "classification", "empirical") if every else None
        self.frames: list[pd.DataFrame] = []

    def due(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (1-based) is recorded."""
        return self.engine is not None and (iteration == 1 or iteration % self.every == 0)

    def record(self, iteration: int, restart: int, pixels: Tensor, labels: Tensor) -> None:
        """Add the Fisher rows of the identity loss at this iteration."""
        assert self.engine is not None
        x, y = pixels.detach(), labels
        if self.samples is not None and self.samples < self.per_class:
            keep = (torch.arange(len(y)) % self.per_class) < self.samples
            x, y = x[keep], y[keep]
        self.engine.reset()
        self.engine.add_batch(self.spec.normalize(x), y)
        frame = self.engine.frame()
        frame.insert(0, "iteration", iteration)
        frame.insert(0, "restart", restart)
        self.frames.append(frame)

    def frame(self) -> pd.DataFrame:
        """All recorded rows."""
        return pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()


def class_labels(classes: tuple[int, ...], per_class: int) -> Tensor:
    """``[c0]*per_class + [c1]*per_class + ...``."""
    return torch.tensor(classes, dtype=torch.int64).repeat_interleave(per_class)


def target_confidence(target: nn.Module, spec: InputSpec, pixels: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability the target gives each image's class."""
    with torch.no_grad():
        probs = torch.softmax(target(spec.normalize(pixels)), dim=1)
    return probs.gather(1, labels.view(-1, 1)).squeeze(1)


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

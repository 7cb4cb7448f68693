"""What every model-inversion attack shares: its config, result and Fisher recording.

An attack searches, for each target class ``c``, inputs that the target ``T``
classifies as ``c``. Its *identity loss* for latent ``j`` with class ``y_j`` is
``L_j = CE(T(x_j), y_j)`` with ``x_j = G(z_j)`` (or the optimised pixels for
the white-box baseline), normalised with the target's input spec. The Fisher
information of this objective with respect to the target's parameters,
recorded every ``fisher_every`` iterations with fisherlab's BackPACK
extension during the attack's own backward pass (:class:`FisherRecorder`), is
the paper's Fig. 5 quantity: one row per (iteration, layer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from backpack import backpack
from torch import Tensor, nn

from fisherlab.data import InputSpec
from fisherlab.engines.backpack_engine import PerSampleFisher
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
    """Records the per-layer Fisher of the identity loss along an attack, for free.

    The attack runs the target as :meth:`network` (a hooked copy with the same
    outputs, used whether or not anything is recorded, so recording cannot change
    the trajectory). At a recorded iteration, the attack's own backward pass runs
    inside :meth:`observe` with fisherlab's BackPACK extension active: the
    gradient reaching the target's output for latent ``j`` is
    ``scale * dL_j/d output_j``, where ``scale`` is the weight of ``L_j`` in the
    attack's loss (``lam / n`` for a mean), so the per-sample squared gradient
    norms of ``L_j`` are the extension's values divided by ``scale^2``, with no
    extra forward or backward pass. Parameters without a fast path are added by
    the torch.func fallback on the same images.

    Args:
        target: The target model (left untouched; a copy is used).
        spec: The target's input spec.
        every: Record at iteration 1 and every ``every``-th (0: never).
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
        self.engine = FisherEngine(target, "classification", "empirical")
        self.rows: list[dict] = []

    def network(self, example: Tensor) -> nn.Module:
        """The target as the attack must run it (same outputs as the target)."""
        return self.engine.fast_model(self.spec.normalize(example))

    def due(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (1-based) is recorded."""
        return self.every > 0 and (iteration == 1 or iteration % self.every == 0)

    @contextlib.contextmanager
    def observe(
        self,
        iteration: int,
        restart: int,
        pixels: Tensor,
        labels: Tensor,
        scale: float,
    ) -> Iterator[None]:
        """Run the attack's backward pass inside this block to record iteration ``iteration``.

        Args:
            iteration: The 1-based iteration.
            restart: The restart.
            pixels: The images of this iteration (pixel space).
            labels: Their target classes.
            scale: Weight of each per-sample identity loss in the attack's loss.
        """
        if not self.due(iteration):
            yield
            return
        with backpack(PerSampleFisher(diagonal=False)):
            yield
        results = self.engine.take_fast_results()
        fallback = self.engine.fallback_results(self.spec.normalize(pixels.detach()), labels)
        keep = torch.ones(len(labels), dtype=torch.bool)
        if self.samples is not None and self.samples < self.per_class:
            keep = (torch.arange(len(labels)) % self.per_class) < self.samples
        n = int(keep.sum())
        per_param = {
            name: float(sq[keep].double().sum()) / scale**2 for name, (sq, _) in results.items()
        }
        per_param.update(
            {name: float(sq[keep].double().sum()) for name, (sq, _) in fallback.items()}
        )
        for layer in self.engine.layers:
            trace = sum(per_param[p] for p in layer.params) / n
            self.rows.append(
                {
                    "restart": restart,
                    "iteration": iteration,
                    "index": layer.index,
                    "name": layer.name,
                    "kind": layer.kind,
                    "n_params": layer.n_params,
                    "trace": trace,
                    "mean": trace / layer.n_params,
                    "objective": "identity",
                    "fisher": "empirical",
                    "engine": "+".join(sorted({self.engine.engines[p] for p in layer.params})),
                    "n_samples": n,
                    "mc_samples": 1,
                }
            )

    def frame(self) -> pd.DataFrame:
        """All recorded rows, one per (restart, iteration, layer), with ``share``."""
        if not self.rows:
            return pd.DataFrame()
        frame = pd.DataFrame(self.rows)
        totals = frame.groupby(["restart", "iteration"])["trace"].transform("sum")
        frame.insert(frame.columns.get_loc("mean") + 1, "share", frame["trace"] / totals)
        return frame


def class_labels(classes: tuple[int, ...], per_class: int) -> Tensor:
    """``[c0]*per_class + [c1]*per_class + ...``."""
    return torch.tensor(classes, dtype=torch.int64).repeat_interleave(per_class)


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
        rows: Trajectory rows ``(restart, iteration, identity_loss, prior_loss)``.
        labels: Target class per slot.
        recorder: The attack's Fisher recorder.
    """
    images, latents, best, confidence = keep_best(candidates, scores)
    trajectory = pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)
    return AttackResult(images, labels, best, confidence, latents, recorder.frame(), trajectory)


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

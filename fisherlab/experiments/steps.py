"""The kinds of step a reproduction runs: training, GAN priors, attacks and profiles.

Each function describes one step to the :class:`~fisherlab.experiments.cache.Runner`
(its key comes from the config of the work and the keys of its inputs) and
gives it the work to do when it is not cached.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fisherlab._io import write_atomic
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.outputs import write_outputs
from fisherlab.attacks.run import attack
from fisherlab.attacks.train_gan import GANConfig, save_samples, train_gan
from fisherlab.data.sources import DataSpec
from fisherlab.experiments.cache import Runner, Step
from fisherlab.experiments.config import ReproduceConfig
from fisherlab.fisher.profile import profile
from fisherlab.models.architectures import build_model
from fisherlab.models.checkpoint import load_model
from fisherlab.models.layers import layers
from fisherlab.training.train import TrainConfig, train


def train_step(
    runner: Runner, label: str, train_config: TrainConfig, extra: dict[str, Any]
) -> Step:
    """Train (or reuse) ``train_config``; the step keeps its history and trained layers."""
    # TrainConfig.key() hashes the init checkpoint's bytes, not its path.
    step = runner.step("train", label, {"train_key": train_config.key(), **extra})

    def work(d: Path) -> dict[str, Any]:
        result = train(train_config, d / "model.pt", progress=runner.progress)
        hist = result.history
        return {
            "natural_accuracy": float(hist["natural_accuracy"].iloc[-1]),
            "history": json.loads(hist.to_json(orient="records")),
            "n_trainable_params": result.n_trainable_params,
            "frozen_layers": result.frozen_layers,
            "trainable_layers": result.trainable_layers,
        }

    runner.run(step, work)
    return step


def checkpoint_path(step: Step, epoch: int, last: int) -> Path:
    """The checkpoint a training step wrote after ``epoch`` (``last``: the final one)."""
    return step.dir / ("model.pt" if epoch == last else f"model.epoch{epoch:03d}.pt")


def attack_step(
    runner: Runner,
    cfg: ReproduceConfig,
    label: str,
    target: Path,
    target_key: str,
    gan: Step,
    evaluator: Step,
    kind: str,
    seed: int,
) -> Step:
    """Attack (or reuse) ``target`` with GMI or KEDMI and judge it with the evaluator."""
    n_classes = len(private_classes(cfg))
    config = AttackConfig(
        attack=kind,
        classes=tuple(range(n_classes)),
        per_class=cfg.per_class,
        iterations=cfg.attack_iterations,
        restarts=cfg.attack_restarts,
        seed=seed,
        fisher_every=cfg.fisher_every,
    )
    step = runner.step(
        "attack",
        label,
        {**config.to_dict(), "target": target_key, "gan": gan.key, "eval": evaluator.key},
    )

    def work(d: Path) -> dict[str, Any]:
        outcome = attack(
            str(target),
            str(gan.dir / "gan.pt"),
            str(evaluator.dir / "model.pt"),
            config,
            private_data=cfg.private,
            progress=runner.progress,
        )
        write_outputs(outcome, d)
        return {k: v for k, v in outcome.summary.items() if k != "config"}

    runner.run(step, work)
    return step


def profile_step(runner: Runner, cfg: ReproduceConfig, label: str, model: Step) -> Step:
    """The classification profile of a trained model on the private data."""
    step = runner.step(
        "profile",
        label,
        {"model": model.key, "data": cfg.private, "max_samples": cfg.profile_samples},
    )

    def work(d: Path) -> None:
        frame = profile(
            load_model(model.dir / "model.pt"), cfg.private, max_samples=cfg.profile_samples
        )
        write_atomic(d / "profile.csv", lambda p: frame.to_csv(p, index=False))

    runner.run(step, work)
    return step


def gan_step(runner: Runner, label: str, gan_config: GANConfig, extra: dict[str, Any]) -> Step:
    """Train (or reuse) a GAN prior; its samples are kept as ``samples.png``."""
    config = {**asdict(gan_config), **extra}
    config.pop("target", None)
    step = runner.step("gan", label, config)

    def work(d: Path) -> None:
        prior = train_gan(gan_config, d / "gan.pt", progress=runner.progress)
        save_samples(prior, d / "samples.png")

    runner.run(step, work)
    return step


def private_classes(cfg: ReproduceConfig) -> list[int]:
    """The source class ids of the private data."""
    spec = DataSpec.parse(cfg.private)
    return list(spec.classes) if spec.classes else list(range(10))


def n_layers(cfg: ReproduceConfig) -> int:
    """Layers of the target architecture (with its private head)."""
    return len(layers(build_model(cfg.arch, num_classes=len(private_classes(cfg)))))

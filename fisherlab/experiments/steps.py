"""The kinds of step a reproduction runs: training, GAN priors, attacks and profiles.

Each function describes one step to the :class:`~fisherlab.experiments.cache.Runner`
(its key comes from the config of the work and the keys of its inputs) and
gives it the work to do when it is not cached.

The device is part of a step's config, and so of its key, when it is not
the CPU (its type, e.g. ``"cuda"``): a GPU result is not bitwise a CPU one,
so a reproduction on a GPU never reuses CPU steps, nor the other way round,
while the keys of CPU steps are those they had before devices existed.
``workers`` only changes how data is read, never the result, and stays out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fisherlab._device import device_key
from fisherlab._io import write_atomic
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.outputs import write_outputs
from fisherlab.attacks.run import attack
from fisherlab.attacks.surrogates import DistillConfig, distill
from fisherlab.attacks.train_gan import GANConfig, keyed, save_samples, train_gan
from fisherlab.data.sources import DataSpec
from fisherlab.experiments.cache import Runner, Step
from fisherlab.experiments.config import ReproduceConfig
from fisherlab.fisher.profile import profile
from fisherlab.models.architectures import build_model
from fisherlab.models.checkpoint import load_model
from fisherlab.models.layers import layers
from fisherlab.training.train import TrainConfig, train


def _on_device(config: dict[str, Any], device: str) -> dict[str, Any]:
    """``config`` with the device's key part added (nothing for the CPU)."""
    kind = device_key(device)
    return config if kind is None else {**config, "device": kind}


def train_step(
    runner: Runner,
    label: str,
    train_config: TrainConfig,
    extra: dict[str, Any],
    workers: int = 0,
) -> Step:
    """Train (or reuse) ``train_config``; the step keeps its history and trained layers."""
    # TrainConfig.key() hashes the init checkpoint's content (and the device off the CPU).
    step = runner.step("train", label, {"train_key": train_config.key(), **extra})

    bars = runner.bars  # the work captures a flag, never the runner (a Ray task pickles it)

    def work(d: Path) -> dict[str, Any]:
        result = train(train_config, d / "model.pt", progress=bars, workers=workers)
        hist = result.history
        return {
            "natural_accuracy": float(hist["natural_accuracy"].iloc[-1]),
            "history": json.loads(hist.to_json(orient="records")),
            "n_trainable_params": result.n_trainable_params,
            "frozen_layers": result.frozen_layers,
            "trainable_layers": result.trainable_layers,
        }

    runner.submit(step, work)
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
    device: str = "cpu",
    workers: int = 0,
    *,
    iterations: int | None = None,
    per_class: int | None = None,
    surrogates: Sequence[Step] = (),
) -> Step:
    """Attack (or reuse) ``target`` with ``kind`` and judge it with the evaluator.

    ``iterations`` and ``per_class`` override the config's (the
    reference-length check); ``surrogates`` are LOMMA's distilled models
    (:func:`distill_step`), whose feature mean is taken over ``cfg.public``.
    """
    n_classes = len(private_classes(cfg))
    config = AttackConfig(
        attack=kind,
        classes=tuple(range(n_classes)),
        per_class=per_class or cfg.per_class,
        iterations=iterations or cfg.attack_iterations,
        restarts=cfg.attack_restarts,
        seed=seed,
        fisher_every=cfg.fisher_every,
    )
    return judged_attack_step(
        runner,
        label,
        config,
        cfg.private,
        Input(target, target_key),
        Input(gan.dir / "gan.pt", gan.key),
        Input(evaluator.dir / "model.pt", evaluator.key),
        device,
        workers,
        surrogates=[Input(s.dir / "surrogate.pt", s.key) for s in surrogates],
        public=cfg.public if surrogates else None,
    )


def distill_step(
    runner: Runner,
    label: str,
    target: Path,
    target_key: str,
    config: DistillConfig,
    device: str = "cpu",
) -> Step:
    """Distil (or reuse) one of LOMMA's surrogates from ``target``; kept as ``surrogate.pt``."""
    step = runner.step(
        "distill", label, _on_device({**asdict(config), "target": target_key}, device)
    )

    bars = runner.bars  # the work captures a flag, never the runner (a Ray task pickles it)

    def work(d: Path) -> dict[str, Any]:
        model = distill(target, config, d / "surrogate.pt", progress=bars, device=device)
        return {"agreement": model.fisherlab_meta.metrics.get("agreement")}

    runner.submit(step, work)
    return step


@dataclass(frozen=True)
class Input:
    """A file a step reads, and the key it enters the step's key with.

    Attributes:
        path: The file.
        key: Its upstream step's key, or its content digest for a user's file.
    """

    path: Path
    key: str


def judged_attack_step(
    runner: Runner,
    label: str,
    config: AttackConfig,
    private: str,
    target: Input,
    gan: Input | None,
    evaluator: Input,
    device: str = "cpu",
    workers: int = 0,
    *,
    surrogates: Sequence[Input] = (),
    public: str | None = None,
) -> Step:
    """Attack (or reuse) ``target`` with ``config`` and judge it with the evaluator.

    The step's folder holds the attack's outputs (``summary.json``,
    ``attack.csv``, ``fisher.csv``, ...); ``gan`` is ``None`` for an attack
    without a prior. ``surrogates`` and ``public`` (LOMMA's) enter the key
    only when given, so the keys of other attacks are unchanged.
    """
    extra: dict[str, Any] = {}
    if surrogates:
        extra = {"surrogates": [s.key for s in surrogates], "public": public}
    step = runner.step(
        "attack",
        label,
        _on_device(
            {
                **config.to_dict(),
                "target": target.key,
                "gan": gan.key if gan is not None else None,
                "eval": evaluator.key,
                **extra,
            },
            device,
        ),
    )

    bars = runner.bars  # the work captures a flag, never the runner (a Ray task pickles it)

    def work(d: Path) -> dict[str, Any]:
        outcome = attack(
            str(target.path),
            str(gan.path) if gan is not None else None,
            str(evaluator.path),
            config,
            private_data=private,
            progress=bars,
            device=device,
            workers=workers,
            surrogates=[str(s.path) for s in surrogates],
            public_data=public,
        )
        write_outputs(outcome, d)
        return {k: v for k, v in outcome.summary.items() if k != "config"}

    runner.submit(step, work)
    return step


def profile_step(
    runner: Runner,
    cfg: ReproduceConfig,
    label: str,
    model: Step,
    device: str = "cpu",
    workers: int = 0,
) -> Step:
    """The classification profile of a trained model on the private data."""
    return data_profile_step(
        runner, label, model, cfg.private, cfg.profile_samples, device, workers
    )


def data_profile_step(
    runner: Runner,
    label: str,
    model: Step,
    data: str,
    max_samples: int | None,
    device: str = "cpu",
    workers: int = 0,
) -> Step:
    """The classification profile of a trained model on ``data`` (a stratified cap)."""
    step = runner.step(
        "profile",
        label,
        _on_device({"model": model.key, "data": data, "max_samples": max_samples}, device),
    )

    def work(d: Path) -> None:
        frame = profile(
            load_model(model.dir / "model.pt"),
            data,
            max_samples=max_samples,
            device=device,
            workers=workers,
        )
        write_atomic(d / "profile.csv", lambda p: frame.to_csv(p, index=False))

    runner.submit(step, work)
    return step


def gan_step(
    runner: Runner,
    label: str,
    gan_config: GANConfig,
    extra: dict[str, Any],
    workers: int = 0,
) -> Step:
    """Train (or reuse) a GAN prior; its samples are kept as ``samples.png``."""
    config = {**keyed(gan_config), **extra}
    config.pop("target", None)
    step = runner.step("gan", label, config)

    bars = runner.bars  # the work captures a flag, never the runner (a Ray task pickles it)

    def work(d: Path) -> None:
        prior = train_gan(gan_config, d / "gan.pt", progress=bars, workers=workers)
        save_samples(prior, d / "samples.png")

    runner.submit(step, work)
    return step


def private_classes(cfg: ReproduceConfig) -> list[int]:
    """The source class ids of the private data."""
    spec = DataSpec.parse(cfg.private)
    return list(spec.classes) if spec.classes else list(range(10))


def n_layers(cfg: ReproduceConfig, arch: str | None = None) -> int:
    """Layers of the target architecture, or of ``arch`` (with its private head)."""
    model = build_model(arch or cfg.arch, num_classes=len(private_classes(cfg)))
    return len(layers(model))

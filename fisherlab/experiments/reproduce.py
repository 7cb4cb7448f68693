"""The paper's experiments at small scale, cached step by step: :func:`reproduce`.

On the embedded default data (private: MNIST digits 0-4 of ``mnist5k``;
public: digits 5-9) it runs what stands behind the TL-DMI paper's figures:

* **Fig. 1-II** per-layer Fisher of the fully fine-tuned target, for the
  classification loss on private data and along GMI and KEDMI attacks;
* **Fig. 2** a sweep over freeze boundaries ``b = 0..L-1`` (``b = 0`` is full
  fine-tuning, ``L-1`` trains the head only), each attacked with GMI at
  several checkpoints of its fine-tuning;
* **Fig. 3** the same boundaries from a second, more similar pretraining
  domain (``mnist5k:5-9`` instead of Fashion-MNIST);
* **Fig. 4** fine-tuning the first layers versus the middle ones;
* **Fig. 5** the layer shares of the inversion Fisher at every recorded attack
  iteration;
* the planner (:func:`fisherlab.planner.recommend_freeze`) applied to each
  seed's fully fine-tuned model and checked against the measured sweep.

Every step (pretraining, evaluator, GAN prior, fine-tuning, attack, profile)
is cached under ``OUT/steps/<kind>-<key>/``, where ``key`` hashes the step's
config and the keys of the steps it depends on; a step's ``step.json`` is
written last, so an interrupted run resumes at the first unfinished step and
a rerun reuses everything. The tidy tables (``runs.csv``, ``layer_fisher.csv``,
``attack_fisher.csv``, ``profiles.csv``, ``recommendations.csv``,
``planner_validation.csv``, ``claims.csv``, ``steps.csv``) and ``config.json``
are written to ``OUT`` at the end; the figures are drawn from them by
:func:`fisherlab.plots.draw_all` (``fisherlab reproduce`` does it into
``OUT/figures``).

The parts live in their own modules: the config and presets in
:mod:`~fisherlab.experiments.config`, the step cache in
:mod:`~fisherlab.experiments.cache`, the kinds of step in
:mod:`~fisherlab.experiments.steps`, the plan in
:mod:`~fisherlab.experiments.plan`, the tables in
:mod:`~fisherlab.experiments.tables` and the claims in
:mod:`~fisherlab.experiments.claims`; this module runs the phases.

Protocol notes: the pretrained models, the evaluation model and the GAN
priors are shared by all seeds (seeds vary fine-tuning and attacks). The GMI
prior is target-independent. A KEDMI prior learns from the target's soft
labels; one is trained against seed 0's fully fine-tuned target and reused
for the other seeds' KEDMI runs, which serve the Fisher analysis (Fig. 5).
"""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fisherlab._device import check_workers, describe_device, resolve_device
from fisherlab._io import write_atomic, write_json
from fisherlab._version import versions
from fisherlab.attacks.train_gan import GANConfig
from fisherlab.errors import FisherlabError
from fisherlab.experiments.cache import Runner, Step, locked
from fisherlab.experiments.config import PRESETS, ReproduceConfig
from fisherlab.experiments.plan import (
    FineTuned,
    PlannedFineTune,
    describe,
    is_full_finetune,
    plan_finetunes,
)
from fisherlab.experiments.steps import (
    attack_step,
    checkpoint_path,
    gan_step,
    profile_step,
    train_step,
)
from fisherlab.experiments.steps import n_layers as count_layers
from fisherlab.experiments.tables import assemble_tables
from fisherlab.models.layers import check_freeze_boundary
from fisherlab.training.train import TrainConfig

__all__ = ["PRESETS", "ReproduceConfig", "reproduce"]

_Where = tuple[str, int]
"""Where the steps compute: the device's name and the data-loading workers."""


def _shared_models(
    runner: Runner, cfg: ReproduceConfig, where: _Where
) -> tuple[dict[str, Step], Step, Step]:
    """Pretraining per domain, the evaluator and the GMI prior (shared by all seeds)."""
    device, workers = where
    pretrained: dict[str, Step] = {}
    for domain, epochs, cap in zip(
        cfg.domains, cfg.pretrain_epochs, cfg.pretrain_samples, strict=True
    ):
        tc = TrainConfig(
            data=domain, arch=cfg.arch, epochs=epochs, max_train_samples=cap, device=device
        )
        label = f"pretrain {cfg.arch} on {domain}"
        pretrained[domain] = train_step(runner, label, tc, {}, workers)
    evaluator = train_step(
        runner,
        f"evaluation model {cfg.eval_arch} on {cfg.private}",
        TrainConfig(
            data=cfg.private,
            arch=cfg.eval_arch,
            epochs=cfg.eval_epochs,
            lr=cfg.eval_lr,
            seed=1,
            max_train_samples=cfg.eval_samples,
            device=device,
        ),
        {},
        workers,
    )
    gmi_gan = gan_step(
        runner,
        f"GMI prior on {cfg.public}",
        GANConfig(
            data=cfg.public,
            kind="gmi",
            epochs=cfg.gmi_gan_epochs,
            max_train_samples=cfg.gan_samples,
            device=device,
        ),
        {"epochs": cfg.gmi_gan_epochs},
        workers,
    )

    return pretrained, evaluator, gmi_gan


def _finetune_all(
    runner: Runner,
    cfg: ReproduceConfig,
    plan: list[PlannedFineTune],
    pretrained: dict[str, Step],
    where: _Where,
) -> list[FineTuned]:
    """Every planned fine-tuning, for every seed."""
    device, workers = where
    targets: list[FineTuned] = []
    for seed in cfg.seeds:
        for p in plan:
            tc = TrainConfig(
                data=cfg.private,
                init=str(pretrained[p.domain].dir / "model.pt"),
                freeze_boundary=p.boundary,
                train_layers=p.train_layers,
                epochs=cfg.finetune_epochs,
                lr=cfg.finetune_lr,
                save_every=1,
                seed=seed,
                max_train_samples=cfg.finetune_samples,
                defense=p.defense,
                device=device,
                **dict(p.strengths),
            )
            step = train_step(
                runner,
                f"fine-tune {p.setting} from {p.domain}, seed {seed}",
                tc,
                {"init_step": pretrained[p.domain].key},
                workers,
            )
            trained = tuple(step.result["trainable_layers"])
            targets.append(
                FineTuned(
                    step, p.domain, p.setting, p.boundary, trained, seed, p.experiments, p.defense
                )
            )

    return targets


def _kedmi_prior(
    runner: Runner, cfg: ReproduceConfig, targets: list[FineTuned], where: _Where
) -> Step | None:
    """The KEDMI prior, which learns from seed 0's fully fine-tuned target."""
    device, workers = where
    main_domain = cfg.domains[0]
    full = [t for t in targets if is_full_finetune(t, main_domain)]
    kedmi_gan = None
    if full:
        ref = full[0]
        kedmi_gan = gan_step(
            runner,
            f"KEDMI prior on {cfg.public} (target: full fine-tune, seed {ref.seed})",
            GANConfig(
                data=cfg.public,
                kind="kedmi",
                target=str(ref.step.dir / "model.pt"),
                epochs=cfg.kedmi_gan_epochs,
                max_train_samples=cfg.gan_samples,
                device=device,
            ),
            {"epochs": cfg.kedmi_gan_epochs, "target_step": ref.step.key},
            workers,
        )

    return kedmi_gan


def _attack_and_profile(
    runner: Runner,
    cfg: ReproduceConfig,
    targets: list[FineTuned],
    priors: tuple[Step, Step | None],
    evaluator: Step,
    n_layers: int,
    where: _Where,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], list[pd.DataFrame]]:
    """GMI on the attacked checkpoints (KEDMI too on full fine-tuning), and profiles."""
    device, workers = where
    main_domain = cfg.domains[0]
    gmi_gan, kedmi_gan = priors
    last = cfg.finetune_epochs
    sweep_epochs = sorted({e for e in cfg.checkpoint_epochs if 1 <= e < last} | {last})
    run_rows, fisher_frames, profile_frames = [], [], []
    for t in targets:
        epochs = sweep_epochs if "boundary_sweep" in t.experiments else [last]
        attacks = [("gmi", gmi_gan, e) for e in epochs]
        if is_full_finetune(t, main_domain) and kedmi_gan is not None:
            attacks.append(("kedmi", kedmi_gan, last))
        history = {r["epoch"]: r for r in t.step.result["history"]}
        for kind, gan, epoch in attacks:
            a = attack_step(
                runner,
                cfg,
                f"{kind} on {t.setting} from {t.domain}, epoch {epoch}, seed {t.seed}",
                checkpoint_path(t.step, epoch, last),
                f"{t.step.key}@{epoch}",
                gan,
                evaluator,
                kind,
                t.seed,
                device,
                workers,
            )
            summary = a.result
            run_rows.append(
                {
                    **describe(t, n_layers),
                    "epoch": epoch,
                    "final": epoch == last,
                    "attack": kind,
                    "natural_accuracy": summary["natural_accuracy"],
                    "train_natural_accuracy": history[epoch]["natural_accuracy"],
                    **{
                        m: summary.get(m)
                        for m in (
                            "attack_accuracy_top1",
                            "attack_accuracy_top5",
                            "knn_distance",
                            "fd_eval",
                            "fd_eval_n",
                            "target_confidence",
                        )
                    },
                    "attack_step": a.dir.name,
                }
            )
            if epoch == last:  # fisher_every >= 1 (ReproduceConfig): the attack wrote it
                fisher = pd.read_csv(a.dir / "fisher.csv")
                fisher_frames.append(
                    fisher.assign(**describe(t, n_layers), attack=kind, attack_step=a.dir.name)
                )
        label = f"profile {t.setting} from {t.domain}, seed {t.seed}"
        p = profile_step(runner, cfg, label, t.step, device, workers)
        profile_frames.append(
            pd.read_csv(p.dir / "profile.csv").assign(
                **describe(t, n_layers), profile_step=p.dir.name
            )
        )

    return run_rows, fisher_frames, profile_frames


def reproduce(
    preset: str | ReproduceConfig = "quick",
    out: str | Path = "results",
    *,
    seeds: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    workers: int = 0,
) -> dict[str, pd.DataFrame]:
    """Run the paper's experiments at small scale on the default data (see module docs).

    Args:
        preset: ``"quick"``, ``"default"`` or a :class:`ReproduceConfig`.
        out: Output directory (its ``steps/`` folder is the cache).
        seeds: Run seeds ``0..seeds-1`` instead of the preset's.
        progress: Print a line per step and show progress bars.
        device: Where every step computes (``None``/``"auto"``: CUDA when
            available, else the CPU). Off the CPU the device's type enters
            every step's key, so GPU and CPU steps are cached apart (see
            :mod:`fisherlab.experiments.steps`); ``config.json`` records it.
        workers: Data-loading processes for image folders (0: this one); not
            part of any key.

    Returns:
        The tidy tables by name (also written to ``OUT``).

    Raises:
        FisherlabError: For an unknown preset or bad settings, or a device
            this machine lacks.
    """
    chosen = resolve_device(device)
    where = (str(chosen), check_workers(workers))
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise FisherlabError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
        cfg = PRESETS[preset]
    else:
        cfg = preset
    if seeds is not None:
        if seeds < 1:
            raise FisherlabError(f"--seeds must be >= 1, got {seeds}")
        cfg = replace(cfg, seeds=tuple(range(seeds)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, progress)
    started = time.perf_counter()
    n_layers = count_layers(cfg)
    boundaries = cfg.boundaries if cfg.boundaries is not None else tuple(range(n_layers))
    for b in (*boundaries, *cfg.domain_boundaries):
        check_freeze_boundary(b, n_layers)

    pretrained, evaluator, gmi_gan = _shared_models(runner, cfg, where)
    targets = _finetune_all(runner, cfg, plan_finetunes(cfg, boundaries), pretrained, where)
    kedmi_gan = _kedmi_prior(runner, cfg, targets, where)
    rows, fisher, profiles = _attack_and_profile(
        runner, cfg, targets, (gmi_gan, kedmi_gan), evaluator, n_layers, where
    )
    tables = assemble_tables(cfg, rows, fisher, profiles, runner.records)
    with locked(out / ".tables.lock"):
        _write_tables(out, tables, cfg, runner, started, chosen)
    return tables


def _write_tables(
    out: Path,
    tables: dict[str, pd.DataFrame],
    cfg: ReproduceConfig,
    runner: Runner,
    started: float,
    device: torch.device,
) -> None:
    """The tables, then ``config.json`` (the manifest of the set) last."""
    (out / "config.json").unlink(missing_ok=True)
    for name, frame in tables.items():
        write_atomic(out / f"{name}.csv", lambda p, frame=frame: frame.to_csv(p, index=False))
    write_json(
        out / "config.json",
        {
            "config": cfg.to_dict(),
            "seconds_total": time.perf_counter() - started,
            "seconds_computed": float(sum(r["seconds"] for r in runner.records if not r["cached"])),
            "seconds_all_steps": float(sum(r["seconds"] for r in runner.records)),
            "n_steps": len(runner.records),
            "n_cached": sum(bool(r["cached"]) for r in runner.records),
            "versions": versions(),
            "machine": {
                "cpus": torch.get_num_threads(),
                "platform": platform.platform(),
                "device": describe_device(device),
            },
        },
    )

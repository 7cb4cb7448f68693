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
  seed's fully fine-tuned model and checked against the measured sweep;
* **C7** the stronger attacks (``strong_attacks``: LOMMA-GMI and PLG-MI) on
  the sweep's final checkpoints of the first ``strong_seeds`` seeds, each
  attacked model with its own distilled surrogates (``distill`` steps) and
  its own PLG-MI GAN (a ``gan`` step on its pseudo-labels), and the planner
  run on the Fisher recorded along each attack.

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

Protocol notes: every seed trains its own pretrained models and evaluation
model (``per_seed``), and its own fine-tunings and attacks; the GAN priors
are shared by all seeds (training one set takes about 9 minutes on 2 CPU
cores, so five would add about 35 minutes; ``per_seed`` can include
``"priors"``). The GMI prior is target-independent. A KEDMI prior learns from
the target's soft labels; one is trained against seed 0's fully fine-tuned
target and reused for the other seeds' KEDMI runs, which serve the Fisher
analysis (Fig. 5). Every attack's reconstructions are kept, one row each, in
``reconstructions.csv``: the claims' intervals resample them.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fisherlab._device import check_workers, describe_device, resolve_device
from fisherlab._io import removed_on_error, write_atomic, write_json
from fisherlab._version import versions
from fisherlab.attacks.surrogates import DistillConfig
from fisherlab.attacks.train_gan import GANConfig
from fisherlab.errors import FisherlabError
from fisherlab.experiments.cache import Runner, Step, locked, torch_threads
from fisherlab.experiments.config import PRESETS, ReproduceConfig
from fisherlab.experiments.executors import Executor, check_threads, make_executor
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
    distill_step,
    gan_step,
    private_classes,
    profile_step,
    train_step,
)
from fisherlab.experiments.steps import n_layers as count_layers
from fisherlab.experiments.tables import TABLE_NAMES, assemble_tables
from fisherlab.models.layers import check_freeze_boundary
from fisherlab.training.train import TrainConfig
from fisherlab.training.tuning import DefenseTuning, tune_defense

__all__ = ["PRESETS", "ReproduceConfig", "reproduce"]

_Where = tuple[str, int]
"""Where the steps compute: the device's name and the data-loading workers."""


_Pretrained = dict[tuple[int, str, str], Step]
"""Pretrained models by (seed, architecture, domain)."""

_Shared = tuple[_Pretrained, dict[int, Step], dict[int, Step]]
"""Pretrained models, evaluators by seed and GMI priors by seed."""


def _per_seed(cfg: ReproduceConfig, what: str) -> dict[int, int]:
    """The seed each reproduction seed uses for ``what`` (itself, or 0 when shared)."""
    return {s: (s if what in cfg.per_seed else cfg.seeds[0]) for s in cfg.seeds}


def _pretrain(
    runner: Runner, cfg: ReproduceConfig, arch: str, seeds: Sequence[int], where: _Where
) -> _Pretrained:
    """``arch`` pretrained on every domain, per seed of ``seeds`` (shared unless per_seed)."""
    device, workers = where
    own = _per_seed(cfg, "pretraining")
    out: _Pretrained = {}
    for seed in seeds:
        for domain, epochs, cap in zip(
            cfg.domains, cfg.pretrain_epochs, cfg.pretrain_samples, strict=True
        ):
            if arch != cfg.arch and domain != cfg.domains[0]:
                continue  # a second architecture needs the main domain only
            tc = TrainConfig(
                data=domain,
                arch=arch,
                epochs=epochs,
                max_train_samples=cap,
                seed=own[seed],
                device=device,
            )
            label = f"pretrain {arch} on {domain}" + (f", seed {own[seed]}" if own[seed] else "")
            out[(seed, arch, domain)] = train_step(runner, label, tc, {}, workers)
    return out


def _shared_models(runner: Runner, cfg: ReproduceConfig, where: _Where) -> _Shared:
    """Pretraining per domain, the evaluators and the GMI priors (see the protocol notes)."""
    device, workers = where
    pretrained = _pretrain(runner, cfg, cfg.arch, cfg.seeds, where)
    evaluators, priors = {}, {}
    own_eval, own_prior = _per_seed(cfg, "evaluator"), _per_seed(cfg, "priors")
    for seed in cfg.seeds:
        evaluators[seed] = train_step(
            runner,
            f"evaluation model {cfg.eval_arch} on {cfg.private}"
            + (f", seed {own_eval[seed]}" if own_eval[seed] else ""),
            TrainConfig(
                data=cfg.private,
                arch=cfg.eval_arch,
                epochs=cfg.eval_epochs,
                lr=cfg.eval_lr,
                seed=1 + own_eval[seed],
                max_train_samples=cfg.eval_samples,
                device=device,
            ),
            {},
            workers,
        )
        priors[seed] = gan_step(
            runner,
            f"GMI prior on {cfg.public}" + (f", seed {own_prior[seed]}" if own_prior[seed] else ""),
            GANConfig(
                data=cfg.public,
                kind="gmi",
                epochs=cfg.gmi_gan_epochs,
                max_train_samples=cfg.gan_samples,
                seed=own_prior[seed],
                device=device,
            ),
            {"epochs": cfg.gmi_gan_epochs},
            workers,
        )
    return pretrained, evaluators, priors


def _finetune_all(
    runner: Runner,
    cfg: ReproduceConfig,
    plan: list[PlannedFineTune],
    pretrained: _Pretrained,
    where: _Where,
) -> list[FineTuned]:
    """Every planned fine-tuning, for every seed it runs in."""
    device, workers = where
    targets: list[FineTuned] = []
    for seed in cfg.seeds:
        for p in plan:
            if p.seeds is not None and seed not in p.seeds:
                continue
            start = pretrained[(seed, p.arch or cfg.arch, p.domain)]
            tc = TrainConfig(
                data=cfg.private,
                init=str(start.dir / "model.pt"),
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
                f"fine-tune {p.setting} from {p.domain}"
                + (f" ({p.arch})" if p.arch else "")
                + f", seed {seed}",
                tc,
                {"init_step": start.key},
                workers,
            )
            targets.append(
                FineTuned(
                    step,
                    p.domain,
                    p.setting,
                    p.boundary,
                    seed,
                    p.experiments,
                    p.defense,
                    p.arch or cfg.arch,
                )
            )

    return targets


def _tune_defenses(
    runner: Runner, cfg: ReproduceConfig, pretrained: _Pretrained, where: _Where
) -> list[DefenseTuning]:
    """Each defense's strengths, tuned on a validation split (``defense_candidates``).

    The recipe is the comparison's own: full fine-tuning from the main
    domain's seed-0 pretraining. Runs are cached in ``OUT/steps/tuning/`` by
    their config key. They run here in the driver, one after another (under
    any executor), at the run's ``threads``.
    """
    device, _ = where
    main = cfg.domains[0]
    start = pretrained[(cfg.seeds[0], cfg.arch, main)]
    base = TrainConfig(
        data=cfg.private,
        init=str(start.dir / "model.pt"),
        freeze_boundary=0,
        epochs=cfg.finetune_epochs,
        lr=cfg.finetune_lr,
        max_train_samples=cfg.finetune_samples,
        device=device,
    )
    out = []
    with torch_threads(runner.threads):
        for defense, candidates in cfg.defense_candidates or ():
            if runner.progress:
                print(f"tuning {defense} on a validation split ({len(candidates)} candidates)")
            out.append(
                tune_defense(
                    base,
                    defense,
                    [dict(c) for c in candidates],
                    tolerance=cfg.tune_tolerance,
                    seeds=cfg.tune_seeds,
                    out_dir=runner.out / "steps" / "tuning",
                    progress=runner.progress,
                )
            )
    return out


def _kedmi_priors(
    runner: Runner, cfg: ReproduceConfig, targets: list[FineTuned], where: _Where
) -> dict[int, Step]:
    """KEDMI priors by seed: each learns from a fully fine-tuned target (seed 0's if shared)."""
    device, workers = where
    full = {t.seed: t for t in targets if is_full_finetune(t, cfg.domains[0], cfg.arch)}
    own = _per_seed(cfg, "priors")
    priors: dict[int, Step] = {}
    for seed in cfg.seeds:
        ref = full.get(own[seed])
        if ref is None:
            continue
        priors[seed] = gan_step(
            runner,
            f"KEDMI prior on {cfg.public} (target: full fine-tune, seed {ref.seed})",
            GANConfig(
                data=cfg.public,
                kind="kedmi",
                target=str(ref.step.dir / "model.pt"),
                epochs=cfg.kedmi_gan_epochs,
                max_train_samples=cfg.gan_samples,
                seed=own[seed],
                device=device,
            ),
            {"epochs": cfg.kedmi_gan_epochs, "target_step": ref.step.key},
            workers,
        )
    return priors


_SUMMARY_COLUMNS = (
    "attack_accuracy_top1",
    "attack_accuracy_top5",
    "knn_distance",
    "fd_eval",
    "fd_eval_n",
    "target_confidence",
)
"""The attack summary's numbers that ``runs.csv`` keeps."""

_RECONSTRUCTION_COLUMNS = ("class", "restart", "target_confidence", "correct_top1", "knn_distance")
"""The per-reconstruction columns that ``reconstructions.csv`` keeps."""


@dataclass(frozen=True)
class _Attack:
    """One attack of a fine-tuned model: which prior, which checkpoint, how long."""

    kind: str
    epoch: int
    iterations: int | None = None
    per_class: int | None = None
    experiments: str | None = None


def _attacks_of(t: FineTuned, cfg: ReproduceConfig, has_kedmi: bool) -> list[_Attack]:
    """The attacks a fine-tuned model gets (module docs)."""
    last = cfg.finetune_epochs
    sweep_epochs = sorted({e for e in cfg.checkpoint_epochs if 1 <= e < last} | {last})
    epochs = sweep_epochs if "boundary_sweep" in t.experiments else [last]
    attacks = [_Attack("gmi", e) for e in epochs]
    if has_kedmi and is_full_finetune(t, cfg.domains[0], cfg.arch):
        attacks.append(_Attack("kedmi", last))
    if (
        "boundary_sweep" in t.experiments
        and t.seed in cfg.seeds[: cfg.strong_seeds]
        and (cfg.strong_boundaries is None or t.boundary in cfg.strong_boundaries)
    ):
        attacks += [_Attack(kind, last) for kind in cfg.strong_attacks]
    checked = cfg.seeds[: cfg.reference_seeds]
    if (
        cfg.reference_iterations is not None
        and "boundary_sweep" in t.experiments
        and t.boundary in cfg.reference_boundaries
        and t.seed in checked
    ):
        for iterations in (cfg.attack_iterations, cfg.reference_iterations):
            attacks.append(
                _Attack("gmi", last, iterations, cfg.reference_per_class, "reference_length")
            )
    return attacks


_Planned = tuple[FineTuned, _Attack, Step]
"""One attack of the plan: the model, what attacks it, and its step."""


def _attack_and_profile(
    runner: Runner,
    cfg: ReproduceConfig,
    targets: list[FineTuned],
    priors: tuple[dict[int, Step], dict[int, Step]],
    evaluators: dict[int, Step],
    where: _Where,
) -> tuple[list[_Planned], list[tuple[FineTuned, Step]]]:
    """Submit the attacks of every model (:func:`_attacks_of`), and its classification profile."""
    device, workers = where
    gmi_priors, kedmi_priors = priors
    last = cfg.finetune_epochs
    attacks, profiles = [], []
    for t in targets:
        for spec in _attacks_of(t, cfg, t.seed in kedmi_priors):
            checkpoint = checkpoint_path(t.step, spec.epoch, last)
            surrogates: list[Step] = []
            if spec.kind == "plgmi":
                gan = _plgmi_prior(runner, cfg, t, checkpoint, where)
            else:
                gan = (kedmi_priors if spec.kind.endswith("kedmi") else gmi_priors)[t.seed]
            if spec.kind.startswith("lomma"):
                surrogates = _surrogates(runner, cfg, t, checkpoint, device)
            length = "" if spec.iterations is None else f", {spec.iterations} iterations"
            a = attack_step(
                runner,
                cfg,
                f"{spec.kind} on {t.setting} from {t.domain} ({t.arch}), epoch {spec.epoch}, "
                f"seed {t.seed}{length}",
                checkpoint,
                f"{t.step.key}@{spec.epoch}",
                gan,
                evaluators[t.seed],
                spec.kind,
                t.seed,
                device,
                workers,
                iterations=spec.iterations,
                per_class=spec.per_class,
                surrogates=surrogates,
            )
            attacks.append((t, spec, a))
        label = f"profile {t.setting} from {t.domain} ({t.arch}), seed {t.seed}"
        profiles.append((t, profile_step(runner, cfg, label, t.step, device, workers)))
    return attacks, profiles


def _collect(
    cfg: ReproduceConfig, attacks: list[_Planned], profiles: list[tuple[FineTuned, Step]]
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], list[pd.DataFrame], list[pd.DataFrame]]:
    """The rows of the runs, attack Fisher, profile and reconstruction tables (steps ran)."""
    last = cfg.finetune_epochs
    run_rows, fisher_frames, recon_frames = [], [], []
    for t, spec, a in attacks:
        columns = describe(t, count_layers(cfg, t.arch))
        history = {r["epoch"]: r for r in t.step.result["history"]}
        labels = {
            **columns,
            "experiments": spec.experiments or columns["experiments"],
            "epoch": spec.epoch,
            "final": spec.epoch == last,
            "attack": spec.kind,
            "iterations": spec.iterations or cfg.attack_iterations,
        }
        summary = a.result
        run_rows.append(
            {
                **labels,
                "natural_accuracy": summary["natural_accuracy"],
                "train_natural_accuracy": history[spec.epoch]["natural_accuracy"],
                **{m: summary.get(m) for m in _SUMMARY_COLUMNS},
                "chance": 1 / len(private_classes(cfg)),
                "attack_step": a.dir.name,
            }
        )
        rows = pd.read_csv(a.dir / "attack.csv")
        recon_frames.append(
            rows[list(_RECONSTRUCTION_COLUMNS)].assign(**labels, attack_step=a.dir.name)
        )
        if spec.epoch == last and spec.experiments is None:
            # fisher_every >= 1 (ReproduceConfig): the attack wrote it
            fisher = pd.read_csv(a.dir / "fisher.csv")
            fisher_frames.append(fisher.assign(**columns, attack=spec.kind, attack_step=a.dir.name))
    profile_frames = [
        pd.read_csv(p.dir / "profile.csv").assign(
            **describe(t, count_layers(cfg, t.arch)), profile_step=p.dir.name
        )
        for t, p in profiles
    ]
    return run_rows, fisher_frames, profile_frames, recon_frames


def _surrogates(
    runner: Runner, cfg: ReproduceConfig, t: FineTuned, checkpoint: Path, device: str
) -> list[Step]:
    """LOMMA's surrogates of one fine-tuned model, distilled on the public data."""
    return [
        distill_step(
            runner,
            f"distil {arch} from {t.setting} ({t.arch}), seed {t.seed}",
            checkpoint,
            t.step.key,
            DistillConfig(cfg.public, arch, epochs=cfg.surrogate_epochs),
            device,
        )
        for arch in cfg.surrogates
    ]


def _plgmi_prior(
    runner: Runner, cfg: ReproduceConfig, t: FineTuned, checkpoint: Path, where: _Where
) -> Step:
    """The PLG-MI GAN of one fine-tuned model: its pseudo-labels and its inversion loss."""
    device, workers = where
    own = _per_seed(cfg, "priors")[t.seed]
    return gan_step(
        runner,
        f"PLG-MI prior on {cfg.public} (target: {t.setting}, seed {t.seed})",
        GANConfig(
            data=cfg.public,
            kind="plgmi",
            target=str(checkpoint),
            epochs=cfg.plgmi_gan_epochs,
            n_critic=cfg.plgmi_n_critic,
            top_n=cfg.plgmi_top_n,
            max_train_samples=cfg.gan_samples,
            seed=own,
            device=device,
        ),
        {"epochs": cfg.plgmi_gan_epochs, "target_step": t.step.key},
        workers,
    )


def reproduce(
    preset: str | ReproduceConfig = "quick",
    out: str | Path = "results",
    *,
    seeds: int | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    workers: int = 0,
    executor: str | Executor | None = "local",
    threads: int | None = None,
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
        executor: Who runs the steps: ``"local"`` (or ``None``: one after
            another in this process), ``"ray"`` (a local Ray instance) or an
            executor such as :class:`~fisherlab.experiments.executors.RayExecutor`.
            The steps, their keys and the tables are the same; the steps are
            run in two batches, since the fine-tunings' keys hash their
            pretrained checkpoints (:mod:`fisherlab.experiments.executors`).
        threads: Torch threads of each step (``None``: torch's default here,
            a Ray step's CPUs on Ray). CPU numbers depend on it: a serial run
            with ``threads=1`` computes exactly what a Ray run of one CPU per
            step computes (:mod:`fisherlab.experiments.executors`).

    Returns:
        The tidy tables by name (also written to ``OUT``).

    Raises:
        FisherlabError: For an unknown preset or bad settings, or a device
            this machine lacks.
        StepFailed: A step failed; its dependent steps did not run and every
            finished step stays cached.
    """
    check_threads(threads)
    runs_on = make_executor(executor)
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
    try:
        with removed_on_error(out / "steps"):  # refused before any step: no empty folders
            runner = Runner(out, progress, runs_on, where[0], threads)
            if runs_on is not None:
                runner.bars = False  # progress bars of concurrent steps would overwrite each other
            started = time.perf_counter()
            n_layers = count_layers(cfg)
            boundaries = cfg.boundaries if cfg.boundaries is not None else tuple(range(n_layers))
            for b in (*boundaries, *cfg.domain_boundaries, *cfg.reference_boundaries):
                check_freeze_boundary(b, n_layers)

            pretrained, evaluators, gmi_priors = _shared_models(runner, cfg, where)
            if cfg.second_arch is not None:
                seeds_2 = cfg.seeds[: cfg.second_arch_seeds]
                pretrained |= _pretrain(runner, cfg, cfg.second_arch, seeds_2, where)
            runner.flush()  # the fine-tunings' keys (and the tuning) read the pretrained models
            tuning = None
            if cfg.compare_defenses and cfg.defense_candidates is not None:
                tuning = _tune_defenses(runner, cfg, pretrained, where)
                grid = tuple(g for t in tuning for g in t.chosen(cfg.defense_roles))
                cfg = replace(cfg, defense_grid=grid)
            targets = _finetune_all(runner, cfg, plan_finetunes(cfg, boundaries), pretrained, where)
            kedmi_priors = _kedmi_priors(runner, cfg, targets, where)
            attacks, profiled = _attack_and_profile(
                runner, cfg, targets, (gmi_priors, kedmi_priors), evaluators, where
            )
            runner.flush()
            rows, fisher, profiles, recon = _collect(cfg, attacks, profiled)
            tables = assemble_tables(cfg, rows, fisher, profiles, recon, runner.records)
            if tuning is not None:
                tables["defense_tuning"] = pd.concat([t.table for t in tuning], ignore_index=True)
            with locked(out / ".tables.lock"):
                _write_tables(out, tables, cfg, runner, started, chosen)
    finally:
        if runs_on is not None and isinstance(executor, str):
            runs_on.close()  # a Ray instance this run started; a caller's executor stays up
    return tables


def _write_tables(
    out: Path,
    tables: dict[str, pd.DataFrame],
    cfg: ReproduceConfig,
    runner: Runner,
    started: float,
    device: torch.device,
) -> None:
    """The tables, then ``config.json`` (the manifest of the set) last.

    A table this config does not make (e.g. ``defense_fisher.csv`` left by a
    ``full`` run in the same folder) is removed, so that every table in
    ``OUT`` belongs to the run ``config.json`` describes.
    """
    (out / "config.json").unlink(missing_ok=True)
    for name in TABLE_NAMES:
        if name not in tables:
            (out / f"{name}.csv").unlink(missing_ok=True)
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
            "executor": runner.executor.describe() if runner.executor else {"name": "local"},
            "threads": runner.threads,
            "versions": versions(),
            "machine": {
                "cpus": torch.get_num_threads(),
                "platform": platform.platform(),
                "device": describe_device(device),
            },
        },
    )

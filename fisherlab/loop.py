"""The TL-DMI loop in one call: :func:`defend`, from a pretrained model to a defended one.

Given a model pretrained on public data, the private data and public data
for the attacker's GAN prior, :func:`defend` runs the loop of the TL-DMI
paper with fisherlab's parts, each as a cached step
(:mod:`fisherlab.experiments.cache`: ``OUT/steps/<kind>-<key>/``, resumable,
one progress line per step):

1. **the reference**: full fine-tuning of the pretrained model on the private
   data (``b = 0``), the undefended model, and its natural accuracy;
2. **its evidence**: the classification profile on the private data (a
   class-balanced cap) and an attack on it with the Fisher recorded along it
   (GMI by default; its GAN prior trained on the public data, or reused with
   ``generator=``), judged by an evaluation model (``eval_model=``, or one of
   another architecture trained on the private data);
3. **the plan**: :func:`fisherlab.planner.recommend_freeze` on those two
   profiles (``lam``, ``budget``, ``aggregate``), written to
   ``OUT/recommendation/``;
4. **the defense**: TL-DMI fine-tuning at the recommended boundary (and at
   any ``compare_boundaries``), then the same attack with the same seeds on
   every fine-tuned model.

The report (written as one set, ``report.json`` last):

* ``report.csv``: one row per model: ``model`` (``reference``,
  ``defended``, ``b=<k>``), ``boundary``, ``n_trainable_params``,
  ``natural_accuracy``, ``attack_accuracy`` with its 95 % interval
  (``attack_low``, ``attack_high``: a bootstrap over the attack seeds and
  the reconstructions, :func:`fisherlab.experiments.statistics.accuracy_level`),
  ``knn_distance``, ``target_accuracy``, ``chance``, the counts, and
  ``warnings``;
* ``reconstructions.csv``: one row per reconstruction of every attack;
* ``report.md``: the recommendation's reasoning, the table and the verdict
  in one sentence (how much attack accuracy the defense removed, with its
  interval, and what it cost in natural accuracy);
* ``defend.png``: natural against attack accuracy, chance marked;
* ``defended.pt``: the defended checkpoint;
* ``report.json``: the config, the verdict's numbers, the warnings and the
  step timings.

What the intervals cover: each model is fine-tuned once (seed 0) and
attacked with every seed, so the intervals carry the attack's randomness and
the sampling of reconstructions, not the variation between fine-tunings
(``fisherlab reproduce`` measures that across seeds).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from fisherlab._device import check_workers, describe_device, resolve_device
from fisherlab._io import check_output_folder, output_set, write_atomic, write_json
from fisherlab._version import versions
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.registry import ATTACKS
from fisherlab.attacks.train_gan import GANConfig
from fisherlab.data.chance import chance_level, natural_accuracy_warning
from fisherlab.data.datasets import load_dataset
from fisherlab.errors import FisherlabError
from fisherlab.experiments.cache import Runner, Step
from fisherlab.experiments.executors import Executor, check_threads, make_executor
from fisherlab.experiments.statistics import (
    Estimate,
    accuracy_level,
    paired_difference,
    verdict,
)
from fisherlab.experiments.steps import (
    Input,
    data_profile_step,
    gan_step,
    judged_attack_step,
    train_step,
)
from fisherlab.models.checkpoint import checkpoint_digest, load_model
from fisherlab.models.layers import check_freeze_boundary, layers
from fisherlab.planner import AGGREGATIONS, check_rule, recommend_freeze, write_recommendation
from fisherlab.plots import plot_defense_report, plot_recommendation
from fisherlab.training.train import TrainConfig

__all__ = ["DEFAULT_GAN_EPOCHS", "QUICK", "DefendConfig", "DefenseReport", "defend"]

DEFAULT_GAN_EPOCHS = {"gmi": 100, "kedmi": 30}
"""GAN prior epochs by kind when ``gan_epochs`` is not set (the reproduction's)."""

REPORT_FILES = (
    "report.csv",
    "reconstructions.csv",
    "report.md",
    "defend.png",
    "defended.pt",
    "recommendation",
    "report.json",
)
"""What :func:`defend` writes into ``OUT`` besides ``steps/``, the manifest last."""


DEFEND_ATTACKS = ("gmi", "kedmi", "whitebox")
"""The attacks :func:`defend` runs: their prior (if any) is trained once, on the reference."""


@dataclass(frozen=True)
class DefendConfig:
    """The settings of :func:`defend` (defaults: the reproduction's default preset).

    Attributes:
        private: Private dataset string (fine-tuning, profiles, evaluation).
        public: Public dataset string (the GAN prior).
        attack: A registered attack (:func:`fisherlab.attacks.attack_names`).
        seeds: Attack seeds; every model is attacked with each.
        finetune_epochs: Epochs of every fine-tuning.
        finetune_lr: Learning rate of every fine-tuning.
        finetune_samples: Cap on private training images (class-balanced).
        eval_arch: Architecture of the evaluation model trained here
            (default: ``eval_cnn``, or ``target_cnn`` for an ``eval_cnn`` target).
        eval_epochs: Its epochs.
        eval_lr: Its learning rate.
        gan_epochs: GAN prior epochs (default: :data:`DEFAULT_GAN_EPOCHS`).
        gan_samples: Cap on public images for the prior (class-balanced).
        iterations: Attack iterations.
        per_class: Reconstructions per class and seed.
        fisher_every: Record the Fisher every this many attack iterations.
        profile_samples: Private images of the classification profile.
        lam: The planner's price of classification Fisher.
        budget: The planner's cap on the frozen classification share.
        aggregate: How the planner combines the attack's recorded steps.
        compare_boundaries: Boundaries fine-tuned and attacked besides the
            recommended one.
    """

    private: str
    public: str
    attack: str = "gmi"
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune_epochs: int = 5
    finetune_lr: float = 0.01
    finetune_samples: int | None = None
    eval_arch: str | None = None
    eval_epochs: int = 40
    eval_lr: float = 0.05
    gan_epochs: int | None = None
    gan_samples: int | None = None
    iterations: int = 100
    per_class: int = 20
    fisher_every: int = 10
    profile_samples: int = 500
    lam: float = 1.0
    budget: float = 1.0
    aggregate: str = "shares"
    compare_boundaries: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise FisherlabError(f"unknown attack {self.attack!r}: expected one of {list(ATTACKS)}")
        if self.attack not in DEFEND_ATTACKS:
            raise FisherlabError(
                f"defend runs {', '.join(DEFEND_ATTACKS)}: {self.attack} needs surrogates or a GAN "
                "of its own for every attacked model; run it by hand (fisherlab distill, "
                "train-gan --kind plgmi, attack) or in fisherlab reproduce"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise FisherlabError(f"give one or more distinct attack seeds, got {self.seeds}")
        if self.fisher_every < 1 or self.fisher_every > self.iterations:
            raise FisherlabError(
                f"fisher_every must be in 1..iterations ({self.iterations}), got "
                f"{self.fisher_every}: the planner needs the Fisher recorded along the attack"
            )
        for name in ("finetune_epochs", "eval_epochs", "iterations", "per_class"):
            if getattr(self, name) < 1:
                raise FisherlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gan_epochs is not None and self.gan_epochs < 1:
            raise FisherlabError(f"gan_epochs must be >= 1, got {self.gan_epochs}")
        if self.aggregate not in AGGREGATIONS:
            raise FisherlabError(
                f"unknown aggregate {self.aggregate!r}: expected one of {AGGREGATIONS}"
            )
        check_rule(self.lam, self.budget)


QUICK: dict[str, Any] = {
    "seeds": (0,),
    "finetune_epochs": 2,
    "eval_epochs": 6,
    "gan_epochs": 20,
    "gan_samples": 1500,
    "iterations": 40,
    "per_class": 10,
    "fisher_every": 5,
    "profile_samples": 200,
}
"""``quick=True``: a first look in a few minutes on a CPU (numbers with wide intervals)."""


@dataclass
class DefenseReport:
    """What :func:`defend` returns (and wrote to ``out``).

    Attributes:
        table: ``report.csv``, one row per model (module docs).
        reconstructions: One row per reconstruction of every attack.
        boundary: The recommended freeze boundary.
        verdict: The verdict in one sentence.
        removed: Reference minus defended attack accuracy, with its interval
            (an :class:`~fisherlab.experiments.statistics.Estimate` as a dict).
        cost: Reference minus defended natural accuracy.
        warnings: One line each where a result means little.
        out: The output folder.
    """

    table: pd.DataFrame
    reconstructions: pd.DataFrame
    boundary: int
    verdict: str
    removed: dict[str, Any]
    cost: float
    warnings: list[str] = field(default_factory=list)
    out: Path = field(default_factory=Path)


def _eval_arch(cfg: DefendConfig, target_arch: str | None) -> str:
    if cfg.eval_arch is not None:
        return cfg.eval_arch
    return "target_cnn" if target_arch == "eval_cnn" else "eval_cnn"


def _finetune(
    runner: Runner,
    cfg: DefendConfig,
    pretrained: str,
    boundary: int,
    device: str,
    workers: int,
    role: str,
) -> Step:
    config = TrainConfig(
        data=cfg.private,
        init=pretrained,
        freeze_boundary=boundary or None,
        epochs=cfg.finetune_epochs,
        lr=cfg.finetune_lr,
        max_train_samples=cfg.finetune_samples,
        seed=0,
        device=device,
    )
    return train_step(runner, f"fine-tune at b={boundary} ({role})", config, {}, workers)


def _attacks(
    runner: Runner,
    cfg: DefendConfig,
    model: Step,
    name: str,
    n_classes: int,
    gan: Input | None,
    evaluator: Input,
    where: tuple[str, int],
) -> list[Step]:
    device, workers = where
    steps = []
    for seed in cfg.seeds:
        config = AttackConfig(
            attack=cfg.attack,
            classes=tuple(range(n_classes)),
            per_class=cfg.per_class,
            iterations=cfg.iterations,
            restarts=1,
            seed=seed,
            fisher_every=cfg.fisher_every,
        )
        steps.append(
            judged_attack_step(
                runner,
                f"{cfg.attack} on the {name} model, seed {seed}",
                config,
                cfg.private,
                Input(model.dir / "model.pt", model.key),
                gan,
                evaluator,
                device,
                workers,
            )
        )
    return steps


def _prior(
    runner: Runner,
    cfg: DefendConfig,
    reference: Step,
    generator: str | None,
    device: str,
    workers: int,
) -> Input | None:
    kind = ATTACKS[cfg.attack].prior
    if kind is None:
        return None
    if generator is not None:
        return Input(Path(generator), checkpoint_digest(generator))
    epochs = cfg.gan_epochs or DEFAULT_GAN_EPOCHS[kind]
    target = str(reference.dir / "model.pt")
    spec = load_model(target).fisherlab_meta.input_spec
    # a KEDMI prior learns from the reference's soft labels; a GMI prior takes only its input size
    extra: dict[str, Any] = {"epochs": epochs}
    if kind == "kedmi":
        extra["target_step"] = reference.key
    else:
        extra["input_spec"] = spec.to_dict() if spec is not None else None
    step = gan_step(
        runner,
        f"{kind.upper()} prior on {cfg.public}",
        GANConfig(
            data=cfg.public,
            kind=kind,
            target=target,
            epochs=epochs,
            max_train_samples=cfg.gan_samples,
            seed=0,
            device=device,
        ),
        extra,
        workers,
    )
    return Input(step.dir / "gan.pt", step.key)


def _rows(steps: list[Step], name: str, boundary: int) -> pd.DataFrame:
    frames = []
    for in_order, step in enumerate(steps):
        frame = pd.read_csv(step.dir / "attack.csv")
        seed = int(step.config["seed"])
        frames.append(frame.assign(model=name, boundary=boundary, seed=seed, attack_run=in_order))
    return pd.concat(frames, ignore_index=True)


def _verdict_sentence(
    cfg: DefendConfig, boundary: int, table: pd.DataFrame, removed: Any, cost: float
) -> str:
    ref = table.set_index("model").loc["reference"]
    if boundary == 0:
        return (
            f"The planner recommends full fine-tuning (b=0) at lam={cfg.lam:g}: no frozen prefix "
            "holds more inversion than classification Fisher, so the defended model is the "
            f"reference and removes nothing ({cfg.attack.upper()} attack accuracy "
            f"{ref['attack_accuracy']:.3f})."
        )
    dfd = table.set_index("model").loc["defended"]
    name = cfg.attack.upper()
    n_per_model = removed.n_units // 2
    seeds = f"{removed.n_seeds} attack seed{'s' if removed.n_seeds != 1 else ''}"
    p = "p < 0.001" if removed.p_value < 0.001 else f"p = {removed.p_value:.3f}"
    interval = (
        f"[{removed.low:.3f}, {removed.high:.3f}] "
        f"({p}; {seeds}, {n_per_model} reconstructions per model)"
    )
    change = (
        f"{ref['attack_accuracy']:.3f} -> {dfd['attack_accuracy']:.3f}; natural accuracy "
        f"{ref['natural_accuracy']:.3f} -> {dfd['natural_accuracy']:.3f} (cost {cost:.3f})"
    )
    words = verdict(removed)
    lead = f"TL-DMI at the recommended b={boundary}"
    if words == "holds":
        return (
            f"{lead} reduced {name}'s attack accuracy by {removed.effect:.3f} {interval}: {change}."
        )
    if words == "reversed":
        return (
            f"{lead} raised {name}'s attack accuracy by {-removed.effect:.3f} {interval}: {change}."
        )
    return (
        f"{lead} did not measurably reduce {name}'s attack accuracy: reduction "
        f"{removed.effect:.3f} {interval}, an interval that covers 0: {change}."
    )


def _markdown(
    cfg: DefendConfig, rec: Any, table: pd.DataFrame, sentence: str, warnings: list[str]
) -> str:
    shown = table.drop(columns=["warnings", "chance", "attack"]).copy()
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)

    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    lines = [
        "# TL-DMI defense report",
        "",
        f"Private data `{cfg.private}`, public data `{cfg.public}`, attack `{cfg.attack}` "
        f"({cfg.iterations} iterations, {cfg.per_class} reconstructions per class, seeds "
        f"{list(cfg.seeds)}).",
        "",
        "## Verdict",
        "",
        sentence,
        "",
        "## Recommendation",
        "",
        rec.explanation,
        "",
        "## Models",
        "",
        header,
        rule,
        *body,
        "",
        "Attack accuracy: evaluator top-1 with a 95 % bootstrap interval over the attack seeds "
        "and reconstructions; each model was fine-tuned once (seed 0), so the interval does not "
        f"include retraining variation. Chance is {float(table['chance'].iloc[0]):.3f}.",
    ]
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in warnings]]
    return "\n".join(lines) + "\n"


def defend(
    pretrained: str | Path,
    *,
    private: str,
    public: str,
    out: str | Path,
    generator: str | Path | None = None,
    eval_model: str | Path | None = None,
    quick: bool = False,
    progress: bool = True,
    device: str | None = None,
    workers: int = 0,
    executor: str | Executor | None = "local",
    threads: int | None = None,
    **settings: Any,
) -> DefenseReport:
    """Run the TL-DMI loop on a pretrained model and write the evidence (module docs).

    Args:
        pretrained: A fisherlab checkpoint pretrained on public data (``fisherlab
            import`` turns other models into one).
        private: Private dataset string, e.g. ``"mnist5k:0-4"``.
        public: Public dataset string for the GAN prior, e.g. ``"mnist5k:5-9"``.
        out: Output folder; its ``steps/`` caches every step, so a rerun
            resumes where an interrupted one stopped.
        generator: Reuse this GAN prior (``fisherlab train-gan``) instead of
            training one.
        eval_model: Judge with this evaluation model instead of training one.
        quick: Start from :data:`QUICK` (minutes on a CPU) instead of the defaults.
        progress: Show one line per step and progress bars.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``/``None``.
        workers: Data-loading processes for image folders.
        executor: ``"local"`` (one step after another here), ``"ray"`` or an
            executor (:mod:`fisherlab.experiments.executors`); the steps run
            in three batches (the reference and the comparisons' fine-tunings;
            their prior, profile and attacks; the recommended boundary's).
        threads: Torch threads of each step (``None``: torch's default here,
            a Ray step's CPUs on Ray); CPU numbers depend on it.
        **settings: Any field of :class:`DefendConfig` (they override ``quick``).

    Returns:
        The report (also written to ``out``).

    Raises:
        FisherlabError: For bad settings, files or data, before the first step
            where possible.

    Example (minutes on a CPU; ``tests/test_loop.py`` runs it at token sizes)::

        report = fisherlab.defend(
            "runs/pretrained.pt", private="mnist5k:0-4", public="mnist5k:5-9",
            out="runs/defend", quick=True,
        )
        print(report.verdict)
    """
    names = {f.name for f in fields(DefendConfig)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise FisherlabError(f"defend() got unknown settings {unknown}: expected {sorted(names)}")
    cfg = DefendConfig(private=private, public=public, **{**(QUICK if quick else {}), **settings})
    out = check_output_folder(out)
    check_workers(workers)
    where = (str(resolve_device(device)), workers)
    dev = where[0]
    for path, what in (
        (pretrained, "pretrained model"),
        (generator, "generator"),
        (eval_model, "evaluation model"),
    ):
        if path is not None and not Path(path).is_file():
            raise FisherlabError(f"the {what} {path} is not a file")
    base = load_model(pretrained)
    n_layers = len(layers(base))
    for b in cfg.compare_boundaries:
        check_freeze_boundary(b, n_layers)
    n_classes = load_dataset(cfg.private).num_classes
    check_threads(threads)
    runs_on = make_executor(executor)
    try:
        return _defend(  # absolute paths: a Ray worker may start in another folder
            cfg,
            str(Path(pretrained).absolute()),
            out,
            None if generator is None else Path(generator).absolute(),
            None if eval_model is None else Path(eval_model).absolute(),
            where,
            n_classes,
            Runner(out, progress, runs_on, dev, threads),
            base,
        )
    finally:
        if runs_on is not None and isinstance(executor, str):
            runs_on.close()  # a Ray instance this run started; a caller's executor stays up


def _defend(
    cfg: DefendConfig,
    pretrained: str,
    out: Path,
    generator: str | Path | None,
    eval_model: str | Path | None,
    where: tuple[str, int],
    n_classes: int,
    runner: Runner,
    base: nn.Module,
) -> DefenseReport:
    """The steps and the report of :func:`defend` (its arguments checked)."""
    start = time.perf_counter()
    dev, workers = where
    if runner.executor is not None:
        runner.bars = False  # progress bars of concurrent steps would overwrite each other
    reference = _finetune(runner, cfg, pretrained, 0, *where, "reference")
    if eval_model is not None:
        evaluator = Input(Path(eval_model), checkpoint_digest(eval_model))
    else:
        arch = _eval_arch(cfg, base.fisherlab_meta.arch)
        step = train_step(
            runner,
            f"evaluation model {arch} on {cfg.private}",
            TrainConfig(
                data=cfg.private,
                arch=arch,
                epochs=cfg.eval_epochs,
                lr=cfg.eval_lr,
                seed=1,
                device=dev,
            ),
            {},
            workers,
        )
        evaluator = Input(step.dir / "model.pt", step.key)
    compared = {
        b: _finetune(runner, cfg, pretrained, b, *where, "comparison")
        for b in cfg.compare_boundaries
        if b != 0
    }
    runner.flush()  # the prior reads the reference's input spec
    gan = _prior(runner, cfg, reference, None if generator is None else str(generator), *where)
    profile = data_profile_step(
        runner,
        "classification profile of the reference",
        reference,
        cfg.private,
        cfg.profile_samples,
        *where,
    )
    attacked = {
        "reference": _attacks(runner, cfg, reference, "reference", n_classes, gan, evaluator, where)
    }
    for b, step in compared.items():
        attacked[f"b={b}"] = _attacks(runner, cfg, step, f"b={b}", n_classes, gan, evaluator, where)
    runner.flush()
    fisher_file = attacked["reference"][0].dir / "fisher.csv"
    if not fisher_file.is_file():
        raise FisherlabError(
            f"the {cfg.attack} attack recorded no Fisher, so there is no inversion profile to plan "
            "on: choose an attack that records it (gmi, kedmi)"
        )
    classification = pd.read_csv(profile.dir / "profile.csv")
    inversion = pd.read_csv(fisher_file)
    rec = recommend_freeze(
        classification, inversion, lam=cfg.lam, budget=cfg.budget, aggregate=cfg.aggregate
    )
    models = {"reference": (0, reference)}
    defended = _finetune(runner, cfg, pretrained, rec.boundary, *where, "recommended")
    models["defended"] = (rec.boundary, defended)
    if rec.boundary != 0:
        attacked["defended"] = _attacks(
            runner, cfg, defended, "defended", n_classes, gan, evaluator, where
        )
    else:
        attacked["defended"] = attacked["reference"]
    runner.flush()
    for b, step in compared.items():
        if b != rec.boundary:
            models[f"b={b}"] = (b, step)

    chance = chance_level(n_classes)
    rows, records, warnings = [], [], []
    for name, (b, step) in models.items():
        recon = _rows(attacked[name], name, b)
        rows.append(recon)
        level = accuracy_level(recon)
        summaries = [s.result for s in attacked[name]]
        found = [w for s in summaries for w in s.get("warnings", [])]
        natural = float(step.result["natural_accuracy"])
        low_natural = natural_accuracy_warning(natural, n_classes, f"the {name} model")
        found = list(dict.fromkeys(([low_natural] if low_natural else []) + found))
        warnings += [f"{name}: {w}" for w in found]
        records.append(
            {
                "model": name,
                "boundary": b,
                "n_trainable_params": int(step.result["n_trainable_params"]),
                "natural_accuracy": natural,
                "attack_accuracy": level.effect,
                "attack_low": level.low,
                "attack_high": level.high,
                "knn_distance": float(recon["knn_distance"].mean()),
                "target_accuracy": float(recon["target_correct"].mean()),
                "chance": chance,
                "attack": cfg.attack,
                "n_seeds": level.n_seeds,
                "n_reconstructions": level.n_units,
                "warnings": " | ".join(found),
            }
        )
    table = pd.DataFrame(records)
    reconstructions = pd.concat(rows, ignore_index=True)
    ref_natural = float(table.loc[table["model"] == "reference", "natural_accuracy"].iloc[0])
    def_natural = float(table.loc[table["model"] == "defended", "natural_accuracy"].iloc[0])
    cost = ref_natural - def_natural
    pair = reconstructions[reconstructions["model"].isin(["reference", "defended"])]
    if rec.boundary != 0:
        removed = paired_difference(pair, "model", ("reference", "defended"))
    else:  # the defended model is the reference: nothing removed, by construction
        ref = table.set_index("model").loc["reference"]
        removed = Estimate(
            0.0, 0.0, 0.0, math.nan, "none", int(ref["n_seeds"]), int(ref["n_reconstructions"])
        )
    sentence = _verdict_sentence(cfg, rec.boundary, table, removed, cost)
    rec.warnings = [w for w in warnings if w.startswith("reference:")]  # what the plan rests on

    with output_set(out, "report.json") as tmp:
        write_atomic(tmp / "report.csv", lambda p: table.to_csv(p, index=False))
        write_atomic(tmp / "reconstructions.csv", lambda p: reconstructions.to_csv(p, index=False))
        write_atomic(
            tmp / "report.md",
            lambda p: p.write_text(_markdown(cfg, rec, table, sentence, warnings)),
        )
        plot_defense_report(table, tmp / "defend.png")
        write_atomic(tmp / "defended.pt", lambda p: shutil.copyfile(defended.dir / "model.pt", p))
        write_recommendation(rec, tmp / "recommendation", (classification, inversion))
        plot_recommendation(
            rec.table.assign(lam=rec.lam, budget=rec.budget),
            tmp / "recommendation" / "recommendation.png",
            about=f"the reference fine-tuned on {cfg.private}",
        )
        write_json(
            tmp / "report.json",
            json.loads(
                json.dumps(
                    {
                        "config": asdict(cfg),
                        "pretrained": pretrained,
                        "pretrained_digest": checkpoint_digest(pretrained),
                        "generator": None if generator is None else str(generator),
                        "eval_model": None if eval_model is None else str(eval_model),
                        "boundary": rec.boundary,
                        "verdict": sentence,
                        "removed": removed.to_dict(),
                        "cost": cost,
                        "warnings": warnings,
                        "files": list(REPORT_FILES),
                        "steps": runner.records,
                        "executor": (
                            runner.executor.describe() if runner.executor else {"name": "local"}
                        ),
                        "threads": runner.threads,
                        "seconds": time.perf_counter() - start,
                        "device": describe_device(resolve_device(dev)),
                        "versions": versions(),
                    },
                    default=str,
                )
            ),
        )
    return DefenseReport(
        table, reconstructions, rec.boundary, sentence, removed.to_dict(), cost, warnings, out
    )

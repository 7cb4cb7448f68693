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
are written to ``OUT`` at the end, and the figures to ``OUT/figures``.

Protocol notes: the pretrained models, the evaluation model and the GAN
priors are shared by all seeds (seeds vary fine-tuning and attacks). The GMI
prior is target-independent. A KEDMI prior learns from the target's soft
labels; one is trained against seed 0's fully fine-tuned target and reused
for the other seeds' KEDMI runs, which serve the Fisher analysis (Fig. 5).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from fisherlab._io import write_atomic, write_json
from fisherlab._version import __version__
from fisherlab.errors import FisherlabError
from fisherlab.planner import check_rule, layer_shares, recommend_freeze

__all__ = ["PRESETS", "ReproduceConfig", "reproduce"]


@dataclass(frozen=True)
class ReproduceConfig:
    """What the reproduction runs; presets fill it (see :data:`PRESETS`).

    Attributes:
        preset: Name of the preset it came from.
        seeds: Seeds of fine-tuning and attacks.
        private: Private dataset (fine-tuning, evaluation, attacks).
        public: Public dataset of the GAN priors.
        domains: Pretraining domains; the first is the main one (Figs. 1, 2,
            4, 5), the others are compared in Fig. 3.
        arch: Target architecture.
        eval_arch: Evaluation-model architecture (different from ``arch``).
        pretrain_epochs: Pretraining epochs per domain, in ``domains`` order.
        pretrain_samples: Cap on pretraining images per domain (``None``: all).
        eval_epochs: Evaluation-model epochs.
        eval_lr: Evaluation-model learning rate.
        finetune_epochs: Fine-tuning epochs.
        finetune_lr: Fine-tuning learning rate.
        finetune_samples: Cap on private training images in fine-tuning
            (``None``: all).
        checkpoint_epochs: Epochs whose checkpoints are attacked in the
            boundary sweep (Fig. 2); the last epoch is always included.
        boundaries: Freeze boundaries of the sweep (``None``: all 0..L-1).
        domain_boundaries: Boundaries compared across domains (Fig. 3).
        first_layers: Layers trained in the "first" arm of Fig. 4.
        middle_layers: Layers trained in the "middle" arm of Fig. 4.
        gmi_gan_epochs: GMI prior (DCGAN) epochs.
        kedmi_gan_epochs: KEDMI prior epochs.
        attack_iterations: Iterations per attack.
        attack_restarts: Restarts per attack.
        per_class: Reconstructions per class.
        fisher_every: Record the inversion Fisher every this many iterations.
        profile_samples: Private training images in each classification profile.
        planner_lam: ``lam`` of the planner's rule.
        planner_budget: ``budget`` of the planner's rule.
        compare_defenses: Also run the defense comparison (Fig. 1-IV).
        defense_grid: ``(defense, ((strength, value), ...))`` pairs, each
            applied to full fine-tuning from the main domain.
        tl_bido_boundaries: Boundaries at which TL-DMI is combined with BiDO
            (default strengths).
    """

    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    private: str = "mnist5k:0-4"
    public: str = "mnist5k:5-9"
    domains: tuple[str, ...] = ("fashion", "mnist5k:5-9")
    arch: str = "target_cnn"
    eval_arch: str = "eval_cnn"
    pretrain_epochs: tuple[int, ...] = (1, 5)
    pretrain_samples: tuple[int | None, ...] = (None, None)
    eval_epochs: int = 40
    eval_lr: float = 0.05
    finetune_epochs: int = 5
    finetune_lr: float = 0.01
    finetune_samples: int | None = None
    checkpoint_epochs: tuple[int, ...] = (1, 3)
    boundaries: tuple[int, ...] | None = None
    domain_boundaries: tuple[int, ...] = (2, 3, 4)
    first_layers: tuple[int, ...] = (0, 1)
    middle_layers: tuple[int, ...] = (2, 3)
    gmi_gan_epochs: int = 100
    kedmi_gan_epochs: int = 30
    attack_iterations: int = 200
    attack_restarts: int = 1
    per_class: int = 5
    fisher_every: int = 10
    profile_samples: int = 1000
    planner_lam: float = 1.0
    planner_budget: float = 1.0
    compare_defenses: bool = False
    defense_grid: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
        ("mid", (("beta", 0.003),)),
        ("mid", (("beta", 0.01),)),
        ("mid", (("beta", 0.03),)),
        ("bido", (("hsic_a1", 0.05), ("hsic_a2", 0.5))),
        ("bido", (("hsic_a1", 0.1), ("hsic_a2", 1.0))),
        ("bido", (("hsic_a1", 0.2), ("hsic_a2", 2.0))),
        ("ls", (("smoothing", -0.05),)),
        ("ls", (("smoothing", -0.1),)),
        ("ls", (("smoothing", -0.2),)),
    )
    tl_bido_boundaries: tuple[int, ...] = (3, 4)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise FisherlabError("give at least one seed")
        if len(self.pretrain_epochs) != len(self.domains) or len(self.pretrain_samples) != len(
            self.domains
        ):
            raise FisherlabError("pretrain_epochs and pretrain_samples need one entry per domain")
        check_rule(self.planner_lam, self.planner_budget)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return json.loads(json.dumps(asdict(self)))


PRESETS: dict[str, ReproduceConfig] = {
    "default": ReproduceConfig(),
    "quick": ReproduceConfig(
        preset="quick",
        seeds=(0,),
        pretrain_epochs=(1, 1),
        pretrain_samples=(2000, None),
        eval_epochs=6,
        finetune_epochs=2,
        finetune_samples=640,
        checkpoint_epochs=(1,),
        domain_boundaries=(2, 4),
        gmi_gan_epochs=3,
        kedmi_gan_epochs=1,
        attack_iterations=30,
        per_class=2,
        fisher_every=5,
        profile_samples=256,
        compare_defenses=True,
        defense_grid=(
            ("mid", (("beta", 0.003),)),
            ("bido", (("hsic_a1", 0.05), ("hsic_a2", 0.5))),
            ("ls", (("smoothing", -0.05),)),
        ),
        tl_bido_boundaries=(4,),
    ),
    "full": ReproduceConfig(preset="full", compare_defenses=True),
}
"""The presets: ``quick`` (minutes, for tests and a first look), ``default``
(the paper's Figs. 1-II to 5) and ``full`` (``default`` plus the defense
comparison; run it into the same ``--out`` to reuse the default's steps)."""


# --------------------------------------------------------------------------- cache
def _key(kind: str, config: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Step:
    """One cached unit of work.

    Attributes:
        kind: What it does (``pretrain``, ``finetune``, ``attack``, ...).
        label: A readable name for progress lines.
        config: Its config (upstream steps appear by their keys).
        key: Hash of ``kind`` and ``config``.
        dir: ``OUT/steps/<kind>-<key>``.
        result: What the step recorded in its ``step.json`` (set once it ran).
    """

    kind: str
    label: str
    config: dict[str, Any]
    key: str = ""
    dir: Path = field(default_factory=Path)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the step finished (its ``step.json`` exists)."""
        return (self.dir / "step.json").is_file()


class Runner:
    """Runs steps once, caches them, and reports progress and timings."""

    def __init__(self, out: Path, progress: bool) -> None:
        self.out = out
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.count = 0

    def step(self, kind: str, label: str, config: dict[str, Any]) -> Step:
        """Describe a step (nothing runs)."""
        key = _key(kind, config)
        return Step(kind, label, config, key, self.out / "steps" / f"{kind}-{key}")

    def run(self, step: Step, work: Callable[[Path], dict[str, Any] | None]) -> None:
        """Run ``work(step.dir)`` unless cached; sets ``step.result``."""
        self.count += 1
        if step.done:
            record = json.loads((step.dir / "step.json").read_text())
            step.result = record["result"]
            self.records.append({**record["timing"], "cached": True})
            if self.progress:
                tqdm.write(f"[{self.count}] {step.label}: cached ({step.dir.name})")
            return
        if step.dir.exists():
            shutil.rmtree(step.dir)  # an interrupted attempt
        step.dir.mkdir(parents=True)
        if self.progress:
            tqdm.write(f"[{self.count}] {step.label} ...")
        start = time.perf_counter()
        result = work(step.dir) or {}
        seconds = time.perf_counter() - start
        timing = {"step": step.label, "kind": step.kind, "key": step.key, "seconds": seconds}
        record = {"config": step.config, "result": result, "timing": timing}
        record = json.loads(json.dumps(record, default=str))  # as a cached run reads it
        write_json(step.dir / "step.json", record)
        step.result = record["result"]
        self.records.append({**timing, "cached": False})
        if self.progress:
            tqdm.write(f"[{self.count}] {step.label}: {seconds:.1f} s")


# --------------------------------------------------------------------------- the steps
def _train_step(runner: Runner, label: str, train_config: Any, extra: dict[str, Any]) -> Step:
    from fisherlab.train import train

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


def _checkpoint(step: Step, epoch: int, last: int) -> Path:
    return step.dir / ("model.pt" if epoch == last else f"model.epoch{epoch:03d}.pt")


def _attack_step(
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
    from fisherlab.attacks import AttackConfig, attack, write_outputs

    n_classes = len(_private_classes(cfg))
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


def _profile_step(runner: Runner, cfg: ReproduceConfig, label: str, model: Step) -> Step:
    from fisherlab.checkpoint import load_model
    from fisherlab.fisher import profile

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


def _gan_step(runner: Runner, label: str, gan_config: Any, extra: dict[str, Any]) -> Step:
    from fisherlab.train_gan import save_samples, train_gan

    config = {**asdict(gan_config), **extra}
    config.pop("target", None)
    step = runner.step("gan", label, config)

    def work(d: Path) -> None:
        prior = train_gan(gan_config, d / "gan.pt", progress=runner.progress)
        save_samples(prior, d / "samples.png")

    runner.run(step, work)
    return step


def _private_classes(cfg: ReproduceConfig) -> list[int]:
    from fisherlab.data import DataSpec

    spec = DataSpec.parse(cfg.private)
    return list(spec.classes) if spec.classes else list(range(10))


# --------------------------------------------------------------------------- the plan
@dataclass
class _Target:
    """A fine-tuned model of the plan and where it belongs."""

    step: Step
    domain: str
    setting: str
    boundary: int | None
    trained_layers: tuple[int, ...]
    seed: int
    experiments: tuple[str, ...]
    defense: str = "none"


def _n_layers(cfg: ReproduceConfig) -> int:
    from fisherlab.layers import layers
    from fisherlab.models import build_model

    return len(layers(build_model(cfg.arch, num_classes=len(_private_classes(cfg)))))


def _shared_models(runner: Runner, cfg: ReproduceConfig) -> tuple[dict[str, Step], Step, Step]:
    """Pretraining per domain, the evaluator and the GMI prior (shared by all seeds)."""
    from fisherlab.train import TrainConfig
    from fisherlab.train_gan import GANConfig

    pretrained: dict[str, Step] = {}
    for domain, epochs, cap in zip(
        cfg.domains, cfg.pretrain_epochs, cfg.pretrain_samples, strict=True
    ):
        tc = TrainConfig(data=domain, arch=cfg.arch, epochs=epochs, max_train_samples=cap)
        pretrained[domain] = _train_step(runner, f"pretrain {cfg.arch} on {domain}", tc, {})
    evaluator = _train_step(
        runner,
        f"evaluation model {cfg.eval_arch} on {cfg.private}",
        TrainConfig(
            data=cfg.private, arch=cfg.eval_arch, epochs=cfg.eval_epochs, lr=cfg.eval_lr, seed=1
        ),
        {},
    )
    gmi_gan = _gan_step(
        runner,
        f"GMI prior on {cfg.public}",
        GANConfig(data=cfg.public, kind="gmi", epochs=cfg.gmi_gan_epochs),
        {"epochs": cfg.gmi_gan_epochs},
    )

    return pretrained, evaluator, gmi_gan


_Plan = tuple[str, str, int | None, tuple[int, ...] | None, tuple[str, ...], str, dict]


def _plan(cfg: ReproduceConfig, boundaries: tuple[int, ...]) -> list[_Plan]:
    """What to fine-tune: (domain, setting, boundary, layers, experiments, defense, strengths)."""
    main_domain = cfg.domains[0]
    plan: list[_Plan] = []
    for b in boundaries:
        exps = ("boundary_sweep",) + (("pretraining",) if b in cfg.domain_boundaries else ())
        plan.append((main_domain, f"b={b}", b, None, exps, "none", {}))
    for domain in cfg.domains[1:]:
        for b in cfg.domain_boundaries:
            plan.append((domain, f"b={b}", b, None, ("pretraining",), "none", {}))
    plan.append((main_domain, "first", None, cfg.first_layers, ("first_vs_middle",), "none", {}))
    plan.append((main_domain, "middle", None, cfg.middle_layers, ("first_vs_middle",), "none", {}))
    if cfg.compare_defenses:
        for name, strengths in cfg.defense_grid:
            label = f"{name} " + ",".join(f"{k}={v:g}" for k, v in strengths)
            plan.append((main_domain, label, 0, None, ("defenses",), name, dict(strengths)))
        for b in cfg.tl_bido_boundaries:
            plan.append((main_domain, f"b={b} + bido", b, None, ("defenses",), "bido", {}))
    return plan


def _finetune_all(
    runner: Runner, cfg: ReproduceConfig, plan: list[_Plan], pretrained: dict[str, Step]
) -> list[_Target]:
    """Every planned fine-tuning, for every seed."""
    from fisherlab.train import TrainConfig

    targets: list[_Target] = []
    for seed in cfg.seeds:
        for domain, setting, b, layer_set, exps, defense, strengths in plan:
            tc = TrainConfig(
                data=cfg.private,
                init=str(pretrained[domain].dir / "model.pt"),
                freeze_boundary=b,
                train_layers=layer_set,
                epochs=cfg.finetune_epochs,
                lr=cfg.finetune_lr,
                save_every=1,
                seed=seed,
                max_train_samples=cfg.finetune_samples,
                defense=defense,
                **strengths,
            )
            step = _train_step(
                runner,
                f"fine-tune {setting} from {domain}, seed {seed}",
                tc,
                {"init_step": pretrained[domain].key},
            )
            trained = tuple(step.result["trainable_layers"])
            targets.append(_Target(step, domain, setting, b, trained, seed, exps, defense))

    return targets


def _kedmi_prior(runner: Runner, cfg: ReproduceConfig, targets: list[_Target]) -> Step | None:
    """The KEDMI prior, which learns from seed 0's fully fine-tuned target."""
    from fisherlab.train_gan import GANConfig

    main_domain = cfg.domains[0]
    full = [t for t in targets if _is_full(t, main_domain)]
    kedmi_gan = None
    if full:
        ref = full[0]
        kedmi_gan = _gan_step(
            runner,
            f"KEDMI prior on {cfg.public} (target: full fine-tune, seed {ref.seed})",
            GANConfig(
                data=cfg.public,
                kind="kedmi",
                target=str(ref.step.dir / "model.pt"),
                epochs=cfg.kedmi_gan_epochs,
            ),
            {"epochs": cfg.kedmi_gan_epochs, "target_step": ref.step.key},
        )

    return kedmi_gan


def _attack_and_profile(
    runner: Runner,
    cfg: ReproduceConfig,
    targets: list[_Target],
    priors: tuple[Step, Step | None],
    evaluator: Step,
    n_layers: int,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], list[pd.DataFrame]]:
    """GMI on the attacked checkpoints (KEDMI too on full fine-tuning), and profiles."""
    main_domain = cfg.domains[0]
    gmi_gan, kedmi_gan = priors
    last = cfg.finetune_epochs
    sweep_epochs = sorted({e for e in cfg.checkpoint_epochs if 1 <= e < last} | {last})
    run_rows, fisher_frames, profile_frames = [], [], []
    for t in targets:
        epochs = sweep_epochs if "boundary_sweep" in t.experiments else [last]
        attacks = [("gmi", gmi_gan, e) for e in epochs]
        if _is_full(t, main_domain) and kedmi_gan is not None:
            attacks.append(("kedmi", kedmi_gan, last))
        history = {r["epoch"]: r for r in t.step.result["history"]}
        for kind, gan, epoch in attacks:
            a = _attack_step(
                runner,
                cfg,
                f"{kind} on {t.setting} from {t.domain}, epoch {epoch}, seed {t.seed}",
                _checkpoint(t.step, epoch, last),
                f"{t.step.key}@{epoch}",
                gan,
                evaluator,
                kind,
                t.seed,
            )
            summary = a.result
            run_rows.append(
                {
                    **_describe(t, n_layers),
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
                            "fid",
                            "target_confidence",
                        )
                    },
                    "attack_step": a.dir.name,
                }
            )
            if epoch == last:
                fisher = pd.read_csv(a.dir / "fisher.csv")
                fisher_frames.append(
                    fisher.assign(**_describe(t, n_layers), attack=kind, attack_step=a.dir.name)
                )
        p = _profile_step(
            runner, cfg, f"profile {t.setting} from {t.domain}, seed {t.seed}", t.step
        )
        profile_frames.append(
            pd.read_csv(p.dir / "profile.csv").assign(
                **_describe(t, n_layers), profile_step=p.dir.name
            )
        )

    return run_rows, fisher_frames, profile_frames


def _assemble(
    cfg: ReproduceConfig,
    run_rows: list[dict[str, Any]],
    fisher_frames: list[pd.DataFrame],
    profile_frames: list[pd.DataFrame],
    records: list[dict[str, Any]],
) -> dict[str, pd.DataFrame]:
    """The tidy tables, from the steps' outputs."""
    main_domain = cfg.domains[0]
    from fisherlab.claims import assess_claims, planner_validation

    tables: dict[str, pd.DataFrame] = {}
    tables["runs"] = pd.DataFrame(run_rows)
    tables["attack_fisher"] = pd.concat(fisher_frames, ignore_index=True)
    tables["profiles"] = pd.concat(profile_frames, ignore_index=True)
    tables["layer_fisher"] = _layer_fisher(tables, main_domain)
    if cfg.compare_defenses:
        tables["defense_fisher"] = _defense_fisher(tables, main_domain)
    tables["recommendations"] = _recommendations(tables, cfg, main_domain)
    tables["planner_validation"] = planner_validation(
        tables["runs"], tables["recommendations"], main_domain
    )
    tables["claims"] = assess_claims(tables, main_domain, cfg.domains[1:])
    tables["steps"] = pd.DataFrame(records)
    return tables


def reproduce(
    preset: str | ReproduceConfig = "quick",
    out: str | Path = "results",
    *,
    seeds: int | None = None,
    progress: bool = True,
    figures: bool = True,
) -> dict[str, pd.DataFrame]:
    """Run the paper's experiments at small scale on the default data (see module docs).

    Args:
        preset: ``"quick"``, ``"default"`` or a :class:`ReproduceConfig`.
        out: Output directory (its ``steps/`` folder is the cache).
        seeds: Run seeds ``0..seeds-1`` instead of the preset's.
        progress: Print a line per step and show progress bars.
        figures: Also draw the figures into ``OUT/figures``.

    Returns:
        The tidy tables by name (also written to ``OUT``).

    Raises:
        FisherlabError: For an unknown preset or bad settings.
    """
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
    n_layers = _n_layers(cfg)
    boundaries = cfg.boundaries if cfg.boundaries is not None else tuple(range(n_layers))
    bad = [b for b in (*boundaries, *cfg.domain_boundaries) if not 0 <= b < n_layers]
    if bad:
        raise FisherlabError(f"boundaries {bad} are out of range 0..{n_layers - 1}")

    pretrained, evaluator, gmi_gan = _shared_models(runner, cfg)
    targets = _finetune_all(runner, cfg, _plan(cfg, boundaries), pretrained)
    kedmi_gan = _kedmi_prior(runner, cfg, targets)
    rows, fisher, profiles = _attack_and_profile(
        runner, cfg, targets, (gmi_gan, kedmi_gan), evaluator, n_layers
    )
    tables = _assemble(cfg, rows, fisher, profiles, runner.records)
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
            "versions": {
                "fisherlab": __version__,
                "torch": str(torch.__version__),
                "python": platform.python_version(),
            },
            "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        },
    )
    if figures:
        from fisherlab.plots import draw_all

        draw_all(out, out / "figures")
    return tables


def _describe(t: _Target, n_layers: int) -> dict[str, Any]:
    return {
        "domain": t.domain,
        "setting": t.setting,
        "boundary": t.boundary if t.boundary is not None else -1,
        "trained_layers": ",".join(map(str, t.trained_layers)),
        "n_trainable_params": t.step.result["n_trainable_params"],
        "seed": t.seed,
        "experiments": ",".join(t.experiments),
        "defense": t.defense,
        "n_layers": n_layers,
    }


def _is_full(t: _Target, domain: str) -> bool:
    """Whether a target is plain full fine-tuning from the main domain."""
    return t.domain == domain and t.boundary == 0 and t.defense == "none"


def _full_rows(frame: pd.DataFrame, domain: str) -> pd.Series:
    """Rows of plain full fine-tuning from the main domain."""
    return (frame["domain"] == domain) & (frame["boundary"] == 0) & (frame["defense"] == "none")


def _shares(frame: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """:func:`~fisherlab.planner.layer_shares` of each group, labelled with its keys."""
    parts = [
        layer_shares(g).assign(**dict(zip(groups, keys, strict=True)))
        for keys, g in frame.groupby(groups)
    ]
    return pd.concat(parts, ignore_index=True)


def _objective_shares(
    profiles: pd.DataFrame, fisher: pd.DataFrame, groups: list[str]
) -> pd.DataFrame:
    """Classification shares of ``profiles`` and inversion shares of ``fisher``, per group."""
    inversion = _shares(fisher, [*groups, "attack"])
    inversion["objective"] = "inversion (" + inversion.pop("attack") + ")"
    classification = _shares(profiles, groups).assign(objective="classification")
    keep = [*groups, "objective", "index", "name", "n_params", "share", "trace"]
    return pd.concat([classification, inversion], ignore_index=True)[keep]


def _defense_fisher(tables: dict[str, pd.DataFrame], domain: str) -> pd.DataFrame:
    """Classification and GMI Fisher shares of each defended model and of full fine-tuning."""

    def defended_or_full(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["experiments"].str.contains("defenses") | _full_rows(frame, domain)]

    fisher = defended_or_full(tables["attack_fisher"])
    return _objective_shares(
        defended_or_full(tables["profiles"]),
        fisher[fisher["attack"] == "gmi"],
        ["setting", "defense", "seed"],
    )


def _layer_fisher(tables: dict[str, pd.DataFrame], domain: str) -> pd.DataFrame:
    """Per-layer shares of the fully fine-tuned models: classification and each attack."""
    profiles, fisher = tables["profiles"], tables["attack_fisher"]
    return _objective_shares(
        profiles[_full_rows(profiles, domain)], fisher[_full_rows(fisher, domain)], ["seed"]
    )


def _recommendations(
    tables: dict[str, pd.DataFrame], cfg: ReproduceConfig, domain: str
) -> pd.DataFrame:
    """The planner's table per seed, from the full fine-tune's GMI and classification Fisher."""
    prof, fish = tables["profiles"], tables["attack_fisher"]
    rows = []
    for seed in cfg.seeds:
        cls = prof[_full_rows(prof, domain) & (prof["seed"] == seed)]
        inv = fish[_full_rows(fish, domain) & (fish["seed"] == seed) & (fish["attack"] == "gmi")]
        if cls.empty or inv.empty:
            continue
        rec = recommend_freeze(cls, inv, lam=cfg.planner_lam, budget=cfg.planner_budget)
        rows.append(
            rec.table.assign(
                seed=seed,
                lam=rec.lam,
                budget=rec.budget,
                pick=rec.boundary,
                explanation=rec.explanation,
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()

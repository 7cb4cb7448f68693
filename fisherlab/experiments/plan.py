"""The plan of a reproduction: which fine-tunings it runs, and what each one is.

:func:`plan_finetunes` lists the :class:`PlannedFineTune` of a config (the
boundary sweep, the pretraining domains, first vs middle layers, the
defenses); each one becomes a :class:`FineTuned` per seed once trained, and
:func:`describe` gives the columns every results table repeats for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fisherlab.experiments.cache import Step
from fisherlab.experiments.config import ReproduceConfig


@dataclass(frozen=True)
class PlannedFineTune:
    """One fine-tuning of the plan (run once per seed).

    Attributes:
        domain: Pretraining domain it starts from.
        setting: Its label, e.g. ``"b=3"``, ``"first"`` or ``"mid beta=0.003"``.
        boundary: Freeze boundary, or ``None`` with ``train_layers``.
        train_layers: Layers trained instead of a suffix (Fig. 4), or ``None``.
        experiments: The experiments it belongs to (``boundary_sweep``,
            ``pretraining``, ``first_vs_middle``, ``defenses``).
        defense: Training-time defense.
        strengths: The defense's strengths, ``((field, value), ...)``.
        arch: Its architecture, when not the config's target (``None``).
        seeds: The seeds it runs in (``None``: all).
    """

    domain: str
    setting: str
    boundary: int | None
    train_layers: tuple[int, ...] | None
    experiments: tuple[str, ...]
    defense: str = "none"
    strengths: tuple[tuple[str, float], ...] = ()
    arch: str | None = None
    seeds: tuple[int, ...] | None = None


@dataclass
class FineTuned:
    """A fine-tuned model of the plan and where it belongs.

    Attributes:
        step: Its training step.
        domain: Pretraining domain.
        setting: Its label.
        boundary: Freeze boundary (``None`` for an explicit layer set).
        seed: Seed of fine-tuning and attacks.
        experiments: The experiments it belongs to.
        defense: Training-time defense.
        arch: Its architecture.
    """

    step: Step
    domain: str
    setting: str
    boundary: int | None
    seed: int
    experiments: tuple[str, ...]
    defense: str = "none"
    arch: str = ""

    @property
    def trained_layers(self) -> tuple[int, ...]:
        """Layers it trained (read from its step, once the step ran)."""
        return tuple(self.step.result["trainable_layers"])


def plan_finetunes(cfg: ReproduceConfig, boundaries: tuple[int, ...]) -> list[PlannedFineTune]:
    """Every fine-tuning the config asks for, in the order they run.

    Args:
        cfg: The reproduction.
        boundaries: The boundaries of the sweep.

    Returns:
        The plan.
    """
    main = cfg.domains[0]
    plan: list[PlannedFineTune] = []
    for b in boundaries:
        exps = ("boundary_sweep",) + (("pretraining",) if b in cfg.domain_boundaries else ())
        plan.append(PlannedFineTune(main, f"b={b}", b, None, exps))
    for domain in cfg.domains[1:]:
        for b in cfg.domain_boundaries:
            plan.append(PlannedFineTune(domain, f"b={b}", b, None, ("pretraining",)))
    plan.append(PlannedFineTune(main, "first", None, cfg.first_layers, ("first_vs_middle",)))
    plan.append(PlannedFineTune(main, "middle", None, cfg.middle_layers, ("first_vs_middle",)))
    if cfg.compare_defenses:
        for name, strengths in cfg.defense_grid:
            label = f"{name} " + ",".join(f"{k}={v:g}" for k, v in strengths)
            plan.append(
                PlannedFineTune(main, label, 0, None, ("defenses",), name, tuple(strengths))
            )
        for b in cfg.tl_bido_boundaries:
            plan.append(PlannedFineTune(main, f"b={b} + bido", b, None, ("defenses",), "bido"))
    if cfg.second_arch is not None:
        seeds = tuple(cfg.seeds[: cfg.second_arch_seeds])
        plan.append(
            PlannedFineTune(
                main, "b=0", 0, None, ("second_arch",), arch=cfg.second_arch, seeds=seeds
            )
        )
    return plan


def describe(t: FineTuned, n_layers: int) -> dict[str, Any]:
    """The columns that identify a fine-tuned model in every results table."""
    return {
        "arch": t.arch,
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


def is_full_finetune(t: FineTuned, domain: str, arch: str) -> bool:
    """Whether a model is plain full fine-tuning of ``arch`` from ``domain`` (the main domain)."""
    return t.domain == domain and t.boundary == 0 and t.defense == "none" and t.arch == arch

"""The tidy tables of a reproduction, assembled from its steps' outputs.

``runs`` (one row per attack), ``reconstructions`` (one row per
reconstruction), ``attack_fisher``, ``profiles``, ``layer_fisher`` (per-layer
shares of the fully fine-tuned models), ``second_arch_fisher`` (the same for
the second architecture), ``defense_fisher``, ``recommendations`` (the
planner per seed), ``recommendations_by_attack`` (the planner on each attack's Fisher),
``planner_validation``, ``planner_baselines`` (C5),
``aggregation_sensitivity`` (C1 and the planner's picks under every way of
combining an attack's recorded steps), ``reference_length``, ``claims`` and
``steps``: :func:`assemble_tables`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fisherlab.experiments.claims import (
    assess_claims,
    c1_values,
    planner_baselines,
    planner_validation,
)
from fisherlab.experiments.config import ReproduceConfig
from fisherlab.experiments.statistics import paired_difference
from fisherlab.experiments.steps import private_classes
from fisherlab.planner import AGGREGATIONS, layer_shares, recommend_freeze

TABLE_NAMES = (
    "runs",
    "reconstructions",
    "attack_fisher",
    "profiles",
    "layer_fisher",
    "second_arch_fisher",
    "defense_fisher",
    "defense_tuning",
    "recommendations",
    "recommendations_by_attack",
    "planner_validation",
    "planner_baselines",
    "aggregation_sensitivity",
    "reference_length",
    "claims",
    "steps",
)
"""Every table a reproduction can write (``<name>.csv``); a run writes those its config makes."""


def assemble_tables(
    cfg: ReproduceConfig,
    run_rows: list[dict[str, Any]],
    fisher_frames: list[pd.DataFrame],
    profile_frames: list[pd.DataFrame],
    reconstruction_frames: list[pd.DataFrame],
    records: list[dict[str, Any]],
) -> dict[str, pd.DataFrame]:
    """The tidy tables, from the steps' outputs.

    Args:
        cfg: The reproduction.
        run_rows: One row per attack (:func:`fisherlab.experiments.reproduce.reproduce`).
        fisher_frames: The Fisher recorded along the final checkpoints' attacks.
        profile_frames: The classification profiles.
        reconstruction_frames: Every attack's per-reconstruction rows.
        records: The steps' timings.

    Returns:
        The tables of the module docs, by name (``defense_fisher`` only with
        the defense comparison, ``second_arch_fisher`` only with a second
        architecture, ``reference_length`` only with that check).
    """
    main_domain = cfg.domains[0]
    tables: dict[str, pd.DataFrame] = {}
    tables["runs"] = pd.DataFrame(run_rows)
    tables["reconstructions"] = pd.concat(reconstruction_frames, ignore_index=True)
    tables["attack_fisher"] = pd.concat(fisher_frames, ignore_index=True)
    tables["profiles"] = pd.concat(profile_frames, ignore_index=True)
    tables["layer_fisher"] = _layer_fisher(tables, main_domain, cfg.arch)
    if cfg.second_arch is not None:
        tables["second_arch_fisher"] = _layer_fisher(tables, main_domain, cfg.second_arch)
    if cfg.compare_defenses:
        tables["defense_fisher"] = _defense_fisher(tables, main_domain, cfg.arch)
    tables["recommendations"] = _recommendations(tables, cfg, main_domain)
    tables["recommendations_by_attack"] = _recommendations_by_attack(tables, cfg, main_domain)
    tables["planner_validation"] = planner_validation(
        tables["runs"], tables["recommendations"], main_domain
    )
    tables["planner_baselines"] = planner_baselines(
        tables["runs"], tables["reconstructions"], tables["recommendations"], main_domain
    )
    tables["aggregation_sensitivity"] = _aggregation_sensitivity(tables, cfg, main_domain)
    if cfg.reference_iterations is not None:
        tables["reference_length"] = _reference_length(tables, cfg)
    tables["claims"] = assess_claims(
        tables, main_domain, cfg.domains[1:], len(private_classes(cfg))
    )
    tables["steps"] = pd.DataFrame(records)
    return tables


def _full_rows(frame: pd.DataFrame, domain: str, arch: str) -> pd.Series:
    """Rows of plain full fine-tuning of ``arch`` from the main domain."""
    return (
        (frame["domain"] == domain)
        & (frame["boundary"] == 0)
        & (frame["defense"] == "none")
        & (frame["arch"] == arch)
    )


def _shares(frame: pd.DataFrame, groups: list[str], aggregate: str = "shares") -> pd.DataFrame:
    """:func:`~fisherlab.planner.layer_shares` of each group, labelled with its keys."""
    parts = [
        layer_shares(g, aggregate=aggregate).assign(**dict(zip(groups, keys, strict=True)))
        for keys, g in frame.groupby(groups)
    ]
    return pd.concat(parts, ignore_index=True)


def _objective_shares(
    profiles: pd.DataFrame, fisher: pd.DataFrame, groups: list[str], aggregate: str = "shares"
) -> pd.DataFrame:
    """Classification shares of ``profiles`` and inversion shares of ``fisher``, per group."""
    inversion = _shares(fisher, [*groups, "attack"], aggregate)
    inversion["objective"] = "inversion (" + inversion.pop("attack") + ")"
    classification = _shares(profiles, groups).assign(objective="classification")
    keep = [*groups, "objective", "index", "name", "n_params", "share", "trace"]
    return pd.concat([classification, inversion], ignore_index=True)[keep]


def _defense_fisher(tables: dict[str, pd.DataFrame], domain: str, arch: str) -> pd.DataFrame:
    """Classification and GMI Fisher shares of each defended model and of full fine-tuning."""

    def defended_or_full(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[
            frame["experiments"].str.contains("defenses") | _full_rows(frame, domain, arch)
        ]

    fisher = defended_or_full(tables["attack_fisher"])
    return _objective_shares(
        defended_or_full(tables["profiles"]),
        fisher[fisher["attack"] == "gmi"],
        ["setting", "defense", "seed"],
    )


def _layer_fisher(
    tables: dict[str, pd.DataFrame], domain: str, arch: str, aggregate: str = "shares"
) -> pd.DataFrame:
    """Per-layer shares of ``arch``'s fully fine-tuned models: classification and each attack."""
    profiles, fisher = tables["profiles"], tables["attack_fisher"]
    shares = _objective_shares(
        profiles[_full_rows(profiles, domain, arch)],
        fisher[_full_rows(fisher, domain, arch)],
        ["seed"],
        aggregate,
    )
    return shares.assign(arch=arch)


def _recommendations_by_attack(
    tables: dict[str, pd.DataFrame], cfg: ReproduceConfig, domain: str
) -> pd.DataFrame:
    """The planner's pick per seed and attack: does the boundary change with the attack?

    One row per (seed, attack) whose Fisher was recorded along the fully
    fine-tuned model: the boundary, its score and the explanation.
    """
    fish = tables["attack_fisher"]
    rows = []
    for attack in fish["attack"].unique():
        recs = _recommendations(tables, cfg, domain, attack=attack)
        if recs.empty:
            continue
        firsts = recs.groupby("seed").first().reset_index()
        rows.append(firsts[["seed", "pick", "explanation"]].assign(attack=attack))
    if not rows:
        return pd.DataFrame(columns=["seed", "attack", "pick", "explanation"])
    return pd.concat(rows, ignore_index=True)[["seed", "attack", "pick", "explanation"]]


def _recommendations(
    tables: dict[str, pd.DataFrame],
    cfg: ReproduceConfig,
    domain: str,
    aggregate: str = "shares",
    attack: str = "gmi",
) -> pd.DataFrame:
    """The planner's table per seed: the full fine-tune's ``attack`` and classification Fisher."""
    prof, fish = tables["profiles"], tables["attack_fisher"]
    rows = []
    for seed in cfg.seeds:
        cls = prof[_full_rows(prof, domain, cfg.arch) & (prof["seed"] == seed)]
        inv = fish[
            _full_rows(fish, domain, cfg.arch) & (fish["seed"] == seed) & (fish["attack"] == attack)
        ]
        if cls.empty or inv.empty:
            continue
        rec = recommend_freeze(
            cls, inv, lam=cfg.planner_lam, budget=cfg.planner_budget, aggregate=aggregate
        )
        rows.append(
            rec.table.assign(
                seed=seed,
                lam=rec.lam,
                budget=rec.budget,
                aggregate=aggregate,
                pick=rec.boundary,
                explanation=rec.explanation,
            )
        )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _aggregation_sensitivity(
    tables: dict[str, pd.DataFrame], cfg: ReproduceConfig, domain: str
) -> pd.DataFrame:
    """C1 (GMI and KEDMI) and the planner's pick per seed, under every aggregation rule."""
    rows = []
    for aggregate in AGGREGATIONS:
        shares = _layer_fisher(tables, domain, cfg.arch, aggregate)
        recs = _recommendations(tables, cfg, domain, aggregate)
        picks = recs.groupby("seed")["pick"].first() if not recs.empty else pd.Series()
        seeds = sorted(shares["seed"].unique())
        by_attack = {a: c1_values(shares, a)[0] for a in ("gmi", "kedmi")}
        for i, seed in enumerate(seeds):
            rows.append(
                {
                    "aggregate": aggregate,
                    "seed": seed,
                    **{
                        f"c1_{a}": (v[i] if i < len(v) and len(v) == len(seeds) else float("nan"))
                        for a, v in by_attack.items()
                    },
                    "pick": int(picks.loc[seed]) if seed in picks.index else -1,
                }
            )
    return pd.DataFrame(rows)


def _reference_length(tables: dict[str, pd.DataFrame], cfg: ReproduceConfig) -> pd.DataFrame:
    """GMI top-1 at the reproduction's length and the reference length, and C2's drop at each."""
    runs, recon = tables["runs"], tables["reconstructions"]
    runs = runs[runs["experiments"] == "reference_length"]
    recon = recon[recon["experiments"] == "reference_length"]
    rows = []
    low, high = min(cfg.reference_boundaries), max(cfg.reference_boundaries)
    for iterations, g in runs.groupby("iterations"):
        at = recon[recon["iterations"] == iterations]
        est = paired_difference(at, "boundary", (low, high))
        by_b = g.groupby("boundary")["attack_accuracy_top1"].mean()
        rows.append(
            {
                "iterations": int(iterations),
                "seeds": ",".join(str(s) for s in sorted(g["seed"].unique())),
                "per_class": cfg.reference_per_class,
                **{f"top1_b{int(b)}": float(v) for b, v in by_b.items()},
                "comparison": f"b={low} - b={high}",
                "effect": est.effect,
                "ci_low": est.low,
                "ci_high": est.high,
                "p_value": est.p_value,
            }
        )
    return pd.DataFrame(rows)

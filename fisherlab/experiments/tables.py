"""The tidy tables of a reproduction, assembled from its steps' outputs.

``runs`` (one row per attack), ``attack_fisher``, ``profiles``,
``layer_fisher`` (per-layer shares of the fully fine-tuned models),
``defense_fisher``, ``recommendations`` (the planner per seed),
``planner_validation``, ``claims`` and ``steps``: :func:`assemble_tables`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fisherlab.experiments.claims import assess_claims, planner_validation
from fisherlab.experiments.config import ReproduceConfig
from fisherlab.planner import layer_shares, recommend_freeze


def assemble_tables(
    cfg: ReproduceConfig,
    run_rows: list[dict[str, Any]],
    fisher_frames: list[pd.DataFrame],
    profile_frames: list[pd.DataFrame],
    records: list[dict[str, Any]],
) -> dict[str, pd.DataFrame]:
    """The tidy tables, from the steps' outputs.

    Args:
        cfg: The reproduction.
        run_rows: One row per attack (:func:`fisherlab.experiments.reproduce.reproduce`).
        fisher_frames: The Fisher recorded along the final checkpoints' attacks.
        profile_frames: The classification profiles.
        records: The steps' timings.

    Returns:
        ``runs``, ``attack_fisher``, ``profiles``, ``layer_fisher``,
        ``defense_fisher`` (with the defense comparison), ``recommendations``,
        ``planner_validation``, ``claims`` and ``steps``, by name.
    """
    main_domain = cfg.domains[0]
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

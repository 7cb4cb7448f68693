"""The paper's claims, tested on the reproduction's tables: :func:`assess_claims`.

Each claim becomes an **effect** whose claimed direction is positive, with a
95 % interval and a p-value (:mod:`fisherlab.experiments.statistics`), and a
verdict read off the interval: **holds** (interval above 0), **reversed**
(below 0) or **inconclusive** (covers 0). Attack-accuracy effects are
estimated from the reconstructions themselves (``reconstructions.csv``: one
0/1 outcome each, by the evaluation model) with a two-level bootstrap over
seeds and reconstructions; one-number-per-seed effects with a t interval over
seeds. ``values`` keeps the per-seed numbers for tracing.

The claims (TL-DMI, Ho et al., CVPR 2024):

* **C1** inversion Fisher concentrates in the first layers, classification
  Fisher in the last. Effect: the Fisher-weighted depth of the classification
  Fisher minus that of the inversion (GMI) Fisher, depth
  ``sum_l l * s(l) / (L-1)`` in [0, 1], on the fully fine-tuned model; per
  seed, t interval. The inversion shares average each recorded attack step's
  shares (:func:`fisherlab.planner.layer_shares`, ``aggregate="shares"``).
  One row per architecture (``C1`` for the target, ``C1 (<arch>)`` for the
  second one).
* **C2** at matched natural accuracy, attack accuracy falls as |theta_C|
  falls. Effect: GMI top-1 of full fine-tuning (b=0) minus that of the
  largest boundary whose mean natural accuracy is within 2 points of b=0's.
  The Spearman correlation per seed is reported beside it.
* **C3** a less similar pretraining domain defends better. Effect: GMI top-1
  after pretraining on the similar domain minus after the less similar one,
  averaged over the compared boundaries.
* **C4** fine-tuning the first layers rather than the middle ones raises
  attack accuracy. Effect: GMI top-1 (first) minus (middle).
* **C5** (fisherlab) the planner's pick is on the measured Pareto front and
  no worse than any fixed rule at matched natural accuracy. The rules
  (:func:`planner_baselines`): every fixed boundary, a uniformly random
  boundary, and "freeze half" (the smallest boundary that freezes at least
  half of the parameters; the largest boundary if none does). A rule is
  *matched* when its mean natural accuracy is at most 2 points below the
  planner's. Effect: GMI top-1 of the
  best matched fixed rule minus the planner's (positive: the planner is
  better). Verdict: **reversed** when a matched rule is significantly better
  or the pick is off the front in most seeds; **holds** when the pick is on
  the front in every seed, no matched rule is better even in its point
  estimate, and the planner beats the random pick (interval above 0);
  otherwise **inconclusive**.
* **C6a** (with the defense comparison) TL-DMI dominates MID, BiDO and label
  smoothing. Effect: per seed, the fraction of those defenses' (natural,
  attack accuracy) points that some TL-DMI boundary matches or beats on both
  axes, minus 0.5; t interval.
* **C6b** TL-DMI + BiDO improves on TL-DMI. Effect: GMI top-1 of TL-DMI
  minus that of TL-DMI + BiDO at the same boundary, averaged over the
  boundaries.
* **C7** (one row per stronger attack: LOMMA-GMI, PLG-MI) TL-DMI at the
  planner's boundary reduces the stronger attack's accuracy too. Effect:
  the attack's top-1 on full fine-tuning (b=0) minus on TL-DMI at each
  seed's planner pick (from the GMI Fisher, as in C5), paired by seed; the
  natural-accuracy cost, GMI's reduction on the same models, and the
  boundary the planner picks from each attack's own Fisher are stated
  beside it.

Every attack claim also states the **floor**: chance (1 / classes) and the
head-only target's attack accuracy (the largest boundary of the sweep).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fisherlab.experiments.config import STRONG_ATTACKS
from fisherlab.experiments.statistics import (
    NOT_AVAILABLE,
    Estimate,
    paired_difference,
    per_seed_differences,
    seed_level,
    verdict,
)

ACCURACY_TOLERANCE = 0.02
"""How far (absolute) natural accuracy may fall below full fine-tuning's."""

__all__ = [
    "assess_claims",
    "pareto_front",
    "planner_baselines",
    "planner_validation",
    "select_runs",
    "verdict",
]


def _pm(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    vals = np.asarray(values, dtype=float)
    if len(vals) < 2:
        return fmt.format(vals.mean())
    return f"{fmt.format(vals.mean())} ± {fmt.format(vals.std(ddof=1))}"


def pareto_front(frame: pd.DataFrame, x: str = "natural_accuracy", y: str = "attack") -> list[int]:
    """Positions in ``frame`` that no other row dominates (higher ``x``, lower ``y``).

    Example:
        >>> f = pd.DataFrame({"natural_accuracy": [0.99, 0.98, 0.90], "attack": [0.8, 0.6, 0.7]})
        >>> pareto_front(f)
        [0, 1]
    """
    xs, ys = frame[x].to_numpy(float), frame[y].to_numpy(float)
    front = []
    for i in range(len(xs)):
        dominated = any(
            xs[j] >= xs[i] and ys[j] <= ys[i] and (xs[j] > xs[i] or ys[j] < ys[i])
            for j in range(len(xs))
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def select_runs(
    runs: pd.DataFrame,
    experiment: str,
    *,
    attack: str = "gmi",
    final: bool | None = None,
    domain: str | None = None,
) -> pd.DataFrame:
    """Rows of ``runs.csv`` that belong to one experiment.

    Args:
        runs: The reproduction's ``runs.csv``.
        experiment: ``boundary_sweep``, ``pretraining``, ``first_vs_middle`` or
            ``defenses`` (a row may belong to several).
        attack: Keep this attack's rows.
        final: Keep only final checkpoints (``True``), only earlier ones
            (``False``), or both (``None``).
        domain: Keep only this pretraining domain (``None``: all).
    """
    keep = runs["experiments"].str.contains(experiment) & (runs["attack"] == attack)
    if final is not None:
        keep &= runs["final"].astype(bool) == final
    if domain is not None:
        keep &= runs["domain"] == domain
    return runs[keep]


def _final_sweep(runs: pd.DataFrame, domain: str) -> pd.DataFrame:
    return select_runs(runs, "boundary_sweep", final=True, domain=domain)


def _sweep_points(runs: pd.DataFrame, domain: str, seed: int) -> pd.DataFrame:
    return (
        _final_sweep(runs, domain)
        .loc[lambda f: f["seed"] == seed, ["boundary", "natural_accuracy", "attack_accuracy_top1"]]
        .rename(columns={"attack_accuracy_top1": "attack"})
        .sort_values("boundary")
        .reset_index(drop=True)
    )


def planner_validation(
    runs: pd.DataFrame, recommendations: pd.DataFrame, domain: str
) -> pd.DataFrame:
    """Where each seed's planner pick lands against that seed's measured sweep.

    Returns:
        One row per seed: ``pick``, its natural and attack accuracy, full
        fine-tuning's natural and attack accuracy, ``accuracy_drop``, the
        Pareto-optimal boundaries (``front``), ``on_front``, ``adjacent``
        (a neighbouring boundary is on the front) and ``attack_gap`` (its
        attack accuracy minus the lowest one among boundaries at least as
        accurate).
    """
    if recommendations.empty:
        return pd.DataFrame()
    rows = []
    for seed, rec in recommendations.groupby("seed"):
        pick = int(rec["pick"].iloc[0])
        pts = _sweep_points(runs, domain, seed)
        if pts.empty or pick not in set(pts["boundary"]) or 0 not in set(pts["boundary"]):
            continue
        front = [int(pts["boundary"].iloc[i]) for i in pareto_front(pts)]
        by_b = pts.set_index("boundary")
        row = by_b.loc[pick]
        better = pts[pts["natural_accuracy"] >= row["natural_accuracy"]]
        rows.append(
            {
                "seed": seed,
                "pick": pick,
                "pick_natural_accuracy": float(row["natural_accuracy"]),
                "pick_attack_accuracy": float(row["attack"]),
                "full_natural_accuracy": float(by_b.loc[0, "natural_accuracy"]),
                "full_attack_accuracy": float(by_b.loc[0, "attack"]),
                "accuracy_drop": float(by_b.loc[0, "natural_accuracy"] - row["natural_accuracy"]),
                "front": ",".join(map(str, front)),
                "on_front": pick in front,
                "adjacent": pick in front or (pick - 1) in front or (pick + 1) in front,
                "attack_gap": float(row["attack"]) - float(better["attack"].min()),
            }
        )
    return pd.DataFrame(rows)


def _freeze_half(sweep: pd.DataFrame) -> int:
    """The smallest boundary that freezes at least half of the parameters (else the largest)."""
    trainable = sweep.groupby("boundary")["n_trainable_params"].first().sort_index()
    total = float(trainable.loc[0])
    frozen = total - trainable
    enough = frozen[frozen >= total / 2]
    return int(enough.index.min()) if len(enough) else int(trainable.index.max())


def _rule_rows(
    recon: pd.DataFrame, picks: dict[int, int], boundaries: list[int], half: int
) -> pd.DataFrame:
    """Reconstructions of the planner's pick and of every rule's, labelled by rule."""
    parts = []
    for seed, pick in picks.items():
        mine = recon[recon["seed"] == seed]
        parts.append(mine[mine["boundary"] == pick].assign(rule="planner"))
        parts.append(mine.assign(rule="random"))  # equal counts per boundary: its mean
        parts.append(mine[mine["boundary"] == half].assign(rule="freeze half"))
        for b in boundaries:
            parts.append(mine[mine["boundary"] == b].assign(rule=f"always b={b}"))
    return pd.concat(parts, ignore_index=True)


def planner_baselines(
    runs: pd.DataFrame, reconstructions: pd.DataFrame, recommendations: pd.DataFrame, domain: str
) -> pd.DataFrame:
    """The planner's pick against simple rules on the same sweep (C5; module docs).

    Args:
        runs: ``runs.csv``.
        reconstructions: ``reconstructions.csv``.
        recommendations: The planner's table per seed (``pick`` column).
        domain: The main pretraining domain.

    Returns:
        One row per rule: ``rule``, its ``picks`` per seed, mean ``natural_accuracy``
        and ``attack_accuracy`` over seeds, ``matched`` (natural accuracy at
        most 2 points below the planner's), and ``effect``, ``ci_low``,
        ``ci_high``, ``p_value`` of (rule's GMI top-1) - (planner's), so that
        a positive effect means the planner is better.
    """
    if recommendations.empty or reconstructions.empty:
        return pd.DataFrame()
    sweep = _final_sweep(runs, domain)
    recon = _final_sweep(reconstructions, domain)
    picks = {
        int(s): int(r["pick"].iloc[0])
        for s, r in recommendations.groupby("seed")
        if int(s) in set(sweep["seed"])
    }
    if not picks or sweep.empty:
        return pd.DataFrame()
    boundaries = sorted(int(b) for b in sweep["boundary"].unique())
    half = _freeze_half(sweep)
    natural = sweep.groupby(["seed", "boundary"])["natural_accuracy"].first()
    rules = {"planner": picks, "freeze half": {s: half for s in picks}}
    rules |= {f"always b={b}": {s: b for s in picks} for b in boundaries}
    labelled = _rule_rows(recon, picks, boundaries, half)
    mine = float(np.mean([natural.loc[(s, b)] for s, b in picks.items()]))
    rows = []
    for rule in ["planner", "random", "freeze half", *(f"always b={b}" for b in boundaries)]:
        if rule == "random":
            nat = float(np.mean([natural.loc[s].mean() for s in picks]))
            chosen = "uniform"
        else:
            nat = float(np.mean([natural.loc[(s, b)] for s, b in rules[rule].items()]))
            chosen = ",".join(str(rules[rule][s]) for s in sorted(picks))
        est = (
            paired_difference(labelled, "rule", (rule, "planner"))
            if rule != "planner"
            else Estimate(0.0, 0.0, 0.0, 1.0, "bootstrap", len(picks))
        )
        attack = labelled[labelled["rule"] == rule].groupby("seed")["correct_top1"].mean().mean()
        rows.append(
            {
                "rule": rule,
                "picks": chosen,
                "natural_accuracy": nat,
                "attack_accuracy": float(attack),
                "matched": nat >= mine - ACCURACY_TOLERANCE - 1e-12,
                "effect": est.effect,
                "ci_low": est.low,
                "ci_high": est.high,
                "p_value": est.p_value,
            }
        )
    return pd.DataFrame(rows)


def _depth(frame: pd.DataFrame) -> float:
    n = frame["index"].max()
    return float((frame["index"] * frame["share"]).sum() / n) if n > 0 else float("nan")


def c1_values(layer_fisher: pd.DataFrame, attack: str = "gmi") -> tuple[list[float], dict]:
    """Per seed, depth(classification) - depth(inversion); and every objective's depths."""
    vals, depths = [], {}
    for _, f in layer_fisher.groupby("seed"):
        d = {obj: _depth(g) for obj, g in f.groupby("objective")}
        for obj, v in d.items():
            depths.setdefault(obj, []).append(v)
        if "classification" in d and f"inversion ({attack})" in d:
            vals.append(d["classification"] - d[f"inversion ({attack})"])
    return vals, depths


def _claim(
    claim: str, paper: str, metric: str, ours: str, est: Estimate, values: Sequence[float]
) -> dict[str, Any]:
    return {
        "claim": claim,
        "paper": paper,
        "metric": metric,
        "ours": ours,
        "estimate": est,
        "values": list(values),
    }


def _c1(layer_fisher: pd.DataFrame, arch: str | None = None) -> dict:
    name = "C1" if arch is None else f"C1 ({arch})"
    paper = "MI Fisher concentrates in the first layers, classification Fisher in the last"
    metric = "depth(classification) - depth(inversion, GMI); depth = sum_l l*share/(L-1)"
    if layer_fisher.empty:
        return _claim(name, paper, metric, "n/a", NOT_AVAILABLE, [])
    vals, depths = c1_values(layer_fisher)
    n_layers = int(layer_fisher["index"].max()) + 1
    first = layer_fisher[layer_fisher["index"] < n_layers / 2]
    firsts = first.groupby(["objective", "seed"])["share"].sum().groupby("objective")
    ours = "; ".join(
        f"{obj}: depth {_pm(v)}, first-half share {_pm(firsts.get_group(obj).to_numpy())}"
        for obj, v in depths.items()
    )
    est = seed_level(vals)
    return _claim(name, paper, metric, f"{est.describe()} ({ours})", est, vals)


def _floor(runs: pd.DataFrame, domain: str, n_classes: int) -> str:
    sweep = _final_sweep(runs, domain)
    if sweep.empty:
        return f"floor: chance {1 / n_classes:.2f}"
    head = sweep[sweep["boundary"] == sweep["boundary"].max()]
    return (
        f"floor: chance {1 / n_classes:.2f}, head-only (b={int(head['boundary'].iloc[0])}) "
        f"top-1 {_pm(head['attack_accuracy_top1'])}"
    )


def _c2(runs: pd.DataFrame, recon: pd.DataFrame, domain: str, floor: str) -> dict:
    sweep = _final_sweep(runs, domain)
    mean_acc = sweep.groupby("boundary")["natural_accuracy"].mean()
    matched = [
        int(b) for b, a in mean_acc.items() if a >= mean_acc.loc[0] - ACCURACY_TOLERANCE - 1e-12
    ]
    top = max(matched)
    rhos = []
    for _, s in sweep[sweep["boundary"].isin(matched)].groupby("seed"):
        x, y = s["n_trainable_params"].rank(), s["attack_accuracy_top1"].rank()
        rhos.append(float(x.corr(y)) if x.nunique() > 1 and y.nunique() > 1 else float("nan"))
    rows = _final_sweep(recon, domain)
    est = paired_difference(rows, "boundary", (0, top)) if top > 0 else NOT_AVAILABLE
    per_seed = per_seed_differences(rows, "boundary", (0, top)) if top > 0 else []
    atk = sweep.groupby("boundary")["attack_accuracy_top1"].agg(["mean", "std"])
    curve = ", ".join(
        f"b={b}: {r['mean']:.2f}" + (f"±{r['std']:.2f}" if not math.isnan(r["std"]) else "")
        for b, r in atk.iterrows()
    )
    return _claim(
        "C2",
        "at matched natural accuracy, attack accuracy falls as |theta_C| falls",
        f"GMI top-1 (b=0) - (b={top}), the largest boundary within 2 points of b=0's "
        f"natural accuracy; matched boundaries {matched}",
        (
            f"{est.describe()}; Spearman(|theta_C|, top-1) over {matched}: {_pm(rhos)}; "
            f"GMI top-1 by boundary: {curve}; natural accuracy by boundary: "
            + ", ".join(f"b={b}: {a:.3f}" for b, a in mean_acc.items())
            + f"; {floor}"
        ),
        est,
        per_seed,
    )


def _c3(runs: pd.DataFrame, recon: pd.DataFrame, domain: str, others: Sequence[str]) -> dict:
    sub = select_runs(runs, "pretraining", final=True)
    bounds = sorted(sub["boundary"].unique().tolist())
    paper = "a less similar pretraining domain defends better"
    if not others:
        return _claim("C3", paper, "n/a (one pretraining domain)", "n/a", NOT_AVAILABLE, [])
    similar = others[0]
    rows = select_runs(recon, "pretraining", final=True)
    est = paired_difference(rows, "domain", (similar, domain), strata=("boundary",))
    parts = [
        f"{d}: top-1 {_pm(g.groupby('seed')['attack_accuracy_top1'].mean())}, "
        f"natural {_pm(g.groupby('seed')['natural_accuracy'].mean())}"
        for d in (domain, similar)
        for g in [sub[sub["domain"] == d]]
        if not g.empty
    ]
    return _claim(
        "C3",
        paper,
        f"GMI top-1 (pretrained on {similar}) - (on {domain}), mean over boundaries {bounds}",
        f"{est.describe()} ({'; '.join(parts)})",
        est,
        per_seed_differences(rows, "domain", (similar, domain), strata=("boundary",)),
    )


def _c4(runs: pd.DataFrame, recon: pd.DataFrame) -> dict:
    sub = select_runs(runs, "first_vs_middle")
    rows = select_runs(recon, "first_vs_middle")
    est = paired_difference(rows, "setting", ("first", "middle"))
    parts = []
    for setting in ("first", "middle"):
        g = sub[sub["setting"] == setting]
        if not g.empty:
            parts.append(
                f"{setting} (layers {g['trained_layers'].iloc[0]}, "
                f"|theta_C| {int(g['n_trainable_params'].iloc[0]):,}): top-1 "
                f"{_pm(g['attack_accuracy_top1'])}, natural {_pm(g['natural_accuracy'])}"
            )
    return _claim(
        "C4",
        "fine-tuning the first layers (not the middle ones) raises attack accuracy",
        "GMI top-1 (first layers trained) - (middle layers trained)",
        f"{est.describe()} ({'; '.join(parts)})",
        est,
        per_seed_differences(rows, "setting", ("first", "middle")),
    )


def _c5(validation: pd.DataFrame, baselines: pd.DataFrame) -> dict:
    paper = "(fisherlab) the planner's pick is on the Pareto front and no worse than fixed rules"
    metric = (
        "GMI top-1 (best fixed rule at matched natural accuracy) - (planner's pick); rules: "
        "every fixed boundary, random, freeze half"
    )
    if validation.empty or baselines.empty:
        return _claim("C5", paper, metric, "n/a", NOT_AVAILABLE, [])
    fixed = baselines[baselines["rule"].str.startswith("always") & baselines["matched"]]
    best = fixed.loc[fixed["attack_accuracy"].idxmin()]
    est = Estimate(
        float(best["effect"]),
        float(best["ci_low"]),
        float(best["ci_high"]),
        float(best["p_value"]),
        "bootstrap",
        len(validation),
    )
    others = baselines[(baselines["rule"] != "planner") & baselines["matched"]]
    random = baselines[baselines["rule"] == "random"].iloc[0]
    on_front = validation["on_front"].astype(bool)
    if (others["ci_high"] < 0).any() or on_front.mean() < 0.5:
        word = "reversed"
    elif on_front.all() and (others["effect"] >= 0).all() and random["ci_low"] > 0:
        word = "holds"
    else:
        word = "inconclusive"
    table = "; ".join(
        f"{r.rule} (b={r.picks}): top-1 {r.attack_accuracy:.3f}, natural "
        f"{r.natural_accuracy:.3f}{'' if r.matched else ' (not matched)'}, rule - planner "
        f"{r.effect:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        for r in baselines.itertuples()
        if r.rule != "planner"
    )
    planner = baselines[baselines["rule"] == "planner"].iloc[0]
    ours = (
        f"best matched fixed rule {best['rule']}: {est.describe()}; planner picks "
        f"{planner['picks']} (top-1 {planner['attack_accuracy']:.3f}, natural "
        f"{planner['natural_accuracy']:.3f}), on the front in {int(on_front.sum())} of "
        f"{len(on_front)} seeds; {table}"
    )
    row = _claim("C5", paper, metric, ours, est, [1.0 if f else -1.0 for f in on_front])
    row["verdict"] = word
    return row


def _defense_points(runs: pd.DataFrame) -> pd.DataFrame:
    sub = select_runs(runs, "defenses")
    return sub.assign(combined=sub["setting"].str.contains(r"\+ bido", regex=True))


def _c6(runs: pd.DataFrame, recon: pd.DataFrame, domain: str) -> list[dict]:
    defended = _defense_points(runs)
    sweep = _final_sweep(runs, domain)
    fractions, parts = [], []
    for seed, d in defended[~defended["combined"]].groupby("seed"):
        tl = sweep[sweep["seed"] == seed]
        beaten = [
            bool(
                (
                    (tl["natural_accuracy"] >= r.natural_accuracy)
                    & (tl["attack_accuracy_top1"] <= r.attack_accuracy_top1)
                ).any()
            )
            for r in d.itertuples()
        ]
        fractions.append(float(np.mean(beaten)))
    for name, g in defended[~defended["combined"]].groupby("defense"):
        parts.append(
            f"{name}: top-1 {_pm(g['attack_accuracy_top1'])}, natural {_pm(g['natural_accuracy'])}"
        )
    combined = defended[defended["combined"]]
    bounds = sorted(combined["boundary"].unique().tolist())
    nat_change = []
    for seed, c in combined.groupby("seed"):
        tl = sweep[sweep["seed"] == seed].set_index("boundary")
        pairs = c[c["boundary"].isin(tl.index)]
        alone = tl.loc[pairs["boundary"]]
        nat_change += (pairs["natural_accuracy"].to_numpy() - alone["natural_accuracy"]).tolist()
    recon_sweep = _final_sweep(recon, domain)
    recon_def = select_runs(recon, "defenses")
    arms = pd.concat(
        [
            recon_sweep[recon_sweep["boundary"].isin(bounds)].assign(arm="tl-dmi"),
            recon_def[recon_def["setting"].str.contains(r"\+ bido", regex=True)].assign(
                arm="tl-dmi + bido"
            ),
        ],
        ignore_index=True,
    )
    est_b = paired_difference(arms, "arm", ("tl-dmi", "tl-dmi + bido"), strata=("boundary",))
    est_a = seed_level([f - 0.5 for f in fractions])
    return [
        _claim(
            "C6a",
            "TL-DMI beats MID, BiDO and LS on the robustness/utility trade-off",
            "share of MID/BiDO/LS points matched or beaten by a TL-DMI boundary, - 0.5",
            f"{est_a.describe()}; dominated share {_pm(fractions)} ({'; '.join(parts)})",
            est_a,
            [f - 0.5 for f in fractions],
        ),
        _claim(
            "C6b",
            "TL-DMI combined with BiDO improves on TL-DMI",
            f"GMI top-1 (TL-DMI) - (TL-DMI + BiDO) at boundaries {bounds}",
            f"{est_b.describe()}; natural accuracy change "
            f"{_pm(nat_change) if nat_change else 'n/a'}",
            est_b,
            per_seed_differences(arms, "arm", ("tl-dmi", "tl-dmi + bido"), strata=("boundary",)),
        ),
    ]


CLAIM_COLUMNS = [
    "claim",
    "paper",
    "metric",
    "ours",
    "verdict",
    "effect",
    "ci_low",
    "ci_high",
    "p_value",
    "method",
    "n_seeds",
    "n_reconstructions",
    "values",
]
"""The columns of ``claims.csv``."""


def _c7(
    runs: pd.DataFrame,
    recon: pd.DataFrame,
    recommendations: pd.DataFrame,
    by_attack: pd.DataFrame,
    domain: str,
    attack: str,
) -> dict:
    name = f"C7 ({attack})"
    paper = "TL-DMI (the planner's boundary) reduces the stronger attacks' accuracy too"
    metric = f"{attack} top-1 (b=0) - (b = the seed's planner pick), paired by seed"
    picks = (
        recommendations.groupby("seed")["pick"].first().astype(int)
        if not recommendations.empty
        else pd.Series(dtype=int)
    )

    def labelled(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
        rows = select_runs(frame, "boundary_sweep", attack=kind, final=True, domain=domain)
        parts = []
        for seed, pick in picks.items():
            if pick == 0:
                continue
            mine = rows[rows["seed"] == seed]
            parts.append(mine[mine["boundary"] == 0].assign(role="full"))
            parts.append(mine[mine["boundary"] == pick].assign(role="planner"))
        return pd.concat(parts, ignore_index=True) if parts else rows.iloc[:0].assign(role="")

    rows = labelled(recon, attack)
    seeds = sorted(
        set(rows.loc[rows["role"] == "full", "seed"])
        & set(rows.loc[rows["role"] == "planner", "seed"])
    )
    if not seeds:
        return _claim(
            name,
            paper,
            metric,
            "n/a: no seed has the attack at b=0 and at its "
            "planner pick (pick 0, or the attack did not run there)",
            NOT_AVAILABLE,
            [],
        )
    est = paired_difference(rows, "role", ("full", "planner"))
    gmi = paired_difference(
        labelled(recon, "gmi").loc[lambda f: f["seed"].isin(seeds)], "role", ("full", "planner")
    )
    summary = labelled(runs, attack).loc[lambda f: f["seed"].isin(seeds)]
    top = summary.groupby("role")["attack_accuracy_top1"].apply(list)
    natural = summary.pivot_table(index="seed", columns="role", values="natural_accuracy")
    cost = (natural["full"] - natural["planner"]).tolist()
    changed = ""
    if not by_attack.empty:
        table = by_attack.pivot_table(index="seed", columns="attack", values="pick")
        if attack in table and "gmi" in table:
            both = table[[attack, "gmi"]].dropna()
            differ = int((both[attack] != both["gmi"]).sum())
            changed = (
                f"; the planner on {attack}'s own Fisher picks "
                + ", ".join(f"b={int(v)}" for v in both[attack])
                + f" (GMI's: {', '.join(f'b={int(v)}' for v in both['gmi'])}; differs in "
                f"{differ} of {len(both)} seeds)"
            )
    ours = (
        f"{est.describe()}; {attack} top-1 full {_pm(top['full'])} vs planner "
        f"{_pm(top['planner'])} (picks {', '.join(f'b={int(picks[s])}' for s in seeds)}); "
        f"natural-accuracy cost {_pm(cost)}; GMI on the same models: {gmi.describe()}{changed}"
    )
    per_seed = per_seed_differences(rows, "role", ("full", "planner"))
    return _claim(name, paper, metric, ours, est, per_seed)


def assess_claims(
    tables: dict[str, pd.DataFrame],
    domain: str,
    other_domains: Sequence[str],
    n_classes: int,
) -> pd.DataFrame:
    """The claims from the reproduction's tables (see the module docs).

    Args:
        tables: ``runs``, ``reconstructions``, ``layer_fisher``,
            ``planner_validation`` and ``planner_baselines``; optionally
            ``second_arch_fisher`` (C1 on a second architecture).
        domain: The main pretraining domain.
        other_domains: The other pretraining domains (the first is "similar").
        n_classes: Private classes (chance = 1 / n_classes).

    Returns:
        One row per claim, columns :data:`CLAIM_COLUMNS`: the effect with its
        95 % interval, p-value and method, the verdict, the seeds and
        reconstructions behind it and the per-seed numbers (``values``, JSON).
    """
    runs, recon = tables["runs"], tables["reconstructions"]
    floor = _floor(runs, domain, n_classes)
    rows = [_c1(tables["layer_fisher"])]
    second = tables.get("second_arch_fisher")
    if second is not None and not second.empty:
        rows.append(_c1(second, str(second["arch"].iloc[0])))
    rows += [
        _c2(runs, recon, domain, floor),
        _c3(runs, recon, domain, other_domains),
        _c4(runs, recon),
        _c5(tables["planner_validation"], tables["planner_baselines"]),
    ]
    if "defense" in runs and runs["experiments"].str.contains("defenses").any():
        rows += _c6(runs, recon, domain)
    recommendations = tables.get("recommendations", pd.DataFrame())
    by_attack = tables.get("recommendations_by_attack", pd.DataFrame())
    for attack in STRONG_ATTACKS:
        if (runs["attack"] == attack).any():
            rows.append(_c7(runs, recon, recommendations, by_attack, domain, attack))
    out = []
    for row in rows:
        est: Estimate = row.pop("estimate")
        row.setdefault("verdict", verdict(est))
        row.update(
            effect=est.effect,
            ci_low=est.low,
            ci_high=est.high,
            p_value=est.p_value,
            method=est.method,
            n_seeds=est.n_seeds,
            n_reconstructions=est.n_units,
            values=json.dumps([round(float(v), 6) for v in row["values"]]),
        )
        out.append(row)
    return pd.DataFrame(out)[CLAIM_COLUMNS]

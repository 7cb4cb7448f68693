"""The paper's claims, tested on the reproduction's tables: :func:`assess_claims`.

Each claim becomes one number per seed whose sign is the claim's direction,
and a verdict over seeds:

* **holds**: the number has the claimed sign (> 0) in every seed;
* **does not hold**: it is <= 0 in every seed;
* **inconclusive**: mixed signs, an undefined number, or a single seed.

The claims (TL-DMI, Ho et al., CVPR 2024):

* **C1** inversion Fisher concentrates in the first layers, classification
  Fisher in the last. Number: the Fisher-weighted depth of the classification
  Fisher minus that of the inversion (GMI) Fisher, depth ``sum_l l * s(l) / (L-1)``
  in [0, 1], on the fully fine-tuned model.
* **C2** at matched natural accuracy, attack accuracy falls as |theta_C|
  falls. Number: Spearman correlation between |theta_C| and GMI top-1 attack
  accuracy over the boundaries whose mean natural accuracy is within 2 points
  of full fine-tuning (final checkpoints).
* **C3** a less similar pretraining domain defends better. Number: attack
  accuracy after pretraining on the similar domain minus after the less similar
  one, averaged over the compared boundaries.
* **C4** fine-tuning the first layers rather than the middle ones raises
  attack accuracy. Number: attack accuracy (first) minus (middle).
* **C5** the planner's pick is on the measured Pareto front of (natural
  accuracy up, attack accuracy down) or adjacent to it, and within 2 points of
  full fine-tuning's natural accuracy. Number: 1 if both hold, else -1.
* **C6a** (with the defense comparison) TL-DMI dominates MID, BiDO and label
  smoothing. Number: the fraction of those defenses' (natural, attack
  accuracy) points that some TL-DMI boundary matches or beats on both axes,
  minus 0.5 (so "holds" means a majority in every seed).
* **C6b** TL-DMI + BiDO improves on TL-DMI. Number: GMI top-1 of TL-DMI minus
  that of TL-DMI + BiDO at the same boundary, averaged over the boundaries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

ACCURACY_TOLERANCE = 0.02
"""How far (absolute) natural accuracy may fall below full fine-tuning's."""

__all__ = ["assess_claims", "pareto_front", "planner_validation", "select_runs", "verdict"]


def verdict(values: Sequence[float]) -> str:
    """The verdict on per-seed numbers whose claimed sign is positive (module docs).

    Example:
        >>> verdict([0.1, 0.3, 0.02]), verdict([0.1, -0.2, 0.3]), verdict([-0.1, 0.0, -0.2])
        ('holds', 'inconclusive', 'does not hold')
    """
    vals = [float(v) for v in values]
    if len(vals) < 2:
        return "inconclusive (one seed)"
    if any(math.isnan(v) for v in vals):
        return "inconclusive"
    if all(v > 0 for v in vals):
        return "holds"
    if all(v <= 0 for v in vals):
        return "does not hold"
    return "inconclusive"


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


def planner_validation(
    runs: pd.DataFrame, recommendations: pd.DataFrame, domain: str
) -> pd.DataFrame:
    """Where each seed's planner pick lands against that seed's measured sweep.

    Returns:
        One row per seed: ``pick``, its natural and attack accuracy, full
        fine-tuning's natural accuracy, ``accuracy_drop``, the Pareto-optimal
        boundaries (``front``), ``on_front``, ``adjacent`` (on the front or a
        neighbouring boundary is), ``attack_gap`` (its attack accuracy minus
        the lowest one among boundaries at least as accurate) and ``ok``.
    """
    if recommendations.empty:
        return pd.DataFrame()
    sweep = _final_sweep(runs, domain)
    rows = []
    for seed, rec in recommendations.groupby("seed"):
        pick = int(rec["pick"].iloc[0])
        pts = (
            sweep.loc[
                sweep["seed"] == seed, ["boundary", "natural_accuracy", "attack_accuracy_top1"]
            ]
            .rename(columns={"attack_accuracy_top1": "attack"})
            .sort_values("boundary")
            .reset_index(drop=True)
        )
        if pts.empty or pick not in set(pts["boundary"]) or 0 not in set(pts["boundary"]):
            continue
        front = [int(pts["boundary"].iloc[i]) for i in pareto_front(pts)]
        row = pts.set_index("boundary").loc[pick]
        full = float(pts.set_index("boundary").loc[0, "natural_accuracy"])
        better = pts[pts["natural_accuracy"] >= row["natural_accuracy"]]
        on_front = pick in front
        adjacent = on_front or (pick - 1) in front or (pick + 1) in front
        drop = full - float(row["natural_accuracy"])
        rows.append(
            {
                "seed": seed,
                "pick": pick,
                "pick_natural_accuracy": float(row["natural_accuracy"]),
                "pick_attack_accuracy": float(row["attack"]),
                "full_natural_accuracy": full,
                "full_attack_accuracy": float(pts.set_index("boundary").loc[0, "attack"]),
                "accuracy_drop": drop,
                "front": ",".join(map(str, front)),
                "on_front": on_front,
                "adjacent": adjacent,
                "attack_gap": float(row["attack"]) - float(better["attack"].min()),
                "ok": adjacent and drop <= ACCURACY_TOLERANCE + 1e-12,
            }
        )
    return pd.DataFrame(rows)


def _depth(frame: pd.DataFrame) -> float:
    n = frame["index"].max()
    return float((frame["index"] * frame["share"]).sum() / n) if n > 0 else float("nan")


def _c1(layer_fisher: pd.DataFrame) -> dict:
    vals, depths = [], {}
    for _, f in layer_fisher.groupby("seed"):
        d = {obj: _depth(g) for obj, g in f.groupby("objective")}
        for obj, v in d.items():
            depths.setdefault(obj, []).append(v)
        if "classification" in d and "inversion (gmi)" in d:
            vals.append(d["classification"] - d["inversion (gmi)"])
    n_layers = int(layer_fisher["index"].max()) + 1
    first = layer_fisher[layer_fisher["index"] < n_layers / 2]
    firsts = first.groupby(["objective", "seed"])["share"].sum().groupby("objective")
    ours = "; ".join(
        f"{obj}: depth {_pm(v)}, first-half share {_pm(firsts.get_group(obj).to_numpy())}"
        for obj, v in depths.items()
    )
    return {
        "claim": "C1",
        "paper": "MI Fisher concentrates in the first layers, classification Fisher in the last",
        "metric": "depth(classification) - depth(inversion, GMI); depth = sum_l l*share/(L-1)",
        "ours": f"{_pm(vals)} ({ours})",
        "values": vals,
    }


def _c2(runs: pd.DataFrame, domain: str) -> dict:
    sweep = _final_sweep(runs, domain)
    mean_acc = sweep.groupby("boundary")["natural_accuracy"].mean()
    matched = [
        int(b) for b, a in mean_acc.items() if a >= mean_acc.loc[0] - ACCURACY_TOLERANCE - 1e-12
    ]
    vals, drops = [], []
    for _, s in sweep[sweep["boundary"].isin(matched)].groupby("seed"):
        x = s["n_trainable_params"].rank()
        y = s["attack_accuracy_top1"].rank()
        vals.append(float(x.corr(y)) if x.nunique() > 1 and y.nunique() > 1 else float("nan"))
        by_b = s.set_index("boundary")["attack_accuracy_top1"]
        drops.append(float(by_b.loc[0] - by_b.loc[max(matched)]))
    atk = sweep.groupby("boundary")["attack_accuracy_top1"].agg(["mean", "std"])
    curve = ", ".join(
        f"b={b}: {r['mean']:.2f}" + (f"±{r['std']:.2f}" if not math.isnan(r["std"]) else "")
        for b, r in atk.iterrows()
    )
    return {
        "claim": "C2",
        "paper": "at matched natural accuracy, attack accuracy falls as |theta_C| falls",
        "metric": f"Spearman(|theta_C|, GMI top-1) over matched boundaries {matched}",
        "ours": (
            f"rho {_pm(vals)}; top-1 drop from b=0 to b={max(matched)}: {_pm(drops)}; "
            f"GMI top-1 by boundary: {curve}; natural accuracy by boundary: "
            + ", ".join(f"b={b}: {a:.3f}" for b, a in mean_acc.items())
        ),
        "values": vals,
    }


def _c3(runs: pd.DataFrame, domain: str, others: Sequence[str]) -> dict:
    sub = select_runs(runs, "pretraining", final=True)
    vals, parts = [], []
    if others:
        similar = others[0]
        piv = sub.pivot_table(
            index=["seed", "boundary"], columns="domain", values="attack_accuracy_top1"
        )
        if similar in piv and domain in piv:
            per_seed = (piv[similar] - piv[domain]).groupby("seed").mean()
            vals = [float(v) for v in per_seed]
        for d in (domain, similar):
            g = sub[sub["domain"] == d]
            parts.append(
                f"{d}: top-1 {_pm(g.groupby('seed')['attack_accuracy_top1'].mean())}, "
                f"natural {_pm(g.groupby('seed')['natural_accuracy'].mean())}"
            )
    bounds = sorted(sub["boundary"].unique().tolist())
    return {
        "claim": "C3",
        "paper": "a less similar pretraining domain defends better",
        "metric": f"GMI top-1 (similar domain) - (less similar), mean over boundaries {bounds}",
        "ours": f"{_pm(vals) if vals else 'n/a'} ({'; '.join(parts)})",
        "values": vals,
    }


def _c4(runs: pd.DataFrame) -> dict:
    sub = select_runs(runs, "first_vs_middle")
    piv = sub.pivot_table(index="seed", columns="setting", values="attack_accuracy_top1")
    vals = [float(v) for v in (piv["first"] - piv["middle"])] if len(piv.columns) == 2 else []
    parts = []
    for setting in ("first", "middle"):
        g = sub[sub["setting"] == setting]
        if not g.empty:
            parts.append(
                f"{setting} (layers {g['trained_layers'].iloc[0]}, "
                f"|theta_C| {int(g['n_trainable_params'].iloc[0]):,}): top-1 "
                f"{_pm(g['attack_accuracy_top1'])}, natural {_pm(g['natural_accuracy'])}"
            )
    return {
        "claim": "C4",
        "paper": "fine-tuning the first layers (not the middle ones) raises attack accuracy",
        "metric": "GMI top-1 (first layers trained) - (middle layers trained)",
        "ours": f"{_pm(vals) if vals else 'n/a'} ({'; '.join(parts)})",
        "values": vals,
    }


def _c5(validation: pd.DataFrame) -> dict:
    if validation.empty:
        return {
            "claim": "C5",
            "paper": "(fisherlab) the planner's pick is on or next to the Pareto front",
            "metric": "pick on/adjacent to the front and within 2 points of full fine-tuning",
            "ours": "n/a",
            "values": [],
        }
    vals = [1.0 if ok else -1.0 for ok in validation["ok"]]
    picks = ", ".join(
        f"seed {r.seed}: b={r.pick} (front {r.front}, natural {r.pick_natural_accuracy:.3f} vs "
        f"{r.full_natural_accuracy:.3f}, top-1 {r.pick_attack_accuracy:.2f} vs "
        f"{r.full_attack_accuracy:.2f})"
        for r in validation.itertuples()
    )
    return {
        "claim": "C5",
        "paper": "(fisherlab) the planner's pick is on or next to the Pareto front",
        "metric": "pick on/adjacent to the front and within 2 points of full fine-tuning",
        "ours": (
            f"accuracy drop {_pm(validation['accuracy_drop'])}, attack gap to front "
            f"{_pm(validation['attack_gap'])}; {picks}"
        ),
        "values": vals,
    }


def _defense_points(runs: pd.DataFrame) -> pd.DataFrame:
    sub = select_runs(runs, "defenses")
    return sub.assign(combined=sub["setting"].str.contains(r"\+ bido", regex=True))


def _c6(runs: pd.DataFrame, domain: str) -> list[dict]:
    defended = _defense_points(runs)
    sweep = _final_sweep(runs, domain)
    fractions, gains, parts = [], [], []
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
    nat_change = []
    for seed, c in combined.groupby("seed"):
        tl = sweep[sweep["seed"] == seed].set_index("boundary")
        pairs = c[c["boundary"].isin(tl.index)]
        if pairs.empty:
            continue
        alone = tl.loc[pairs["boundary"]]
        gains.append(
            float(np.mean(alone["attack_accuracy_top1"].to_numpy() - pairs["attack_accuracy_top1"]))
        )
        nat_change += (pairs["natural_accuracy"].to_numpy() - alone["natural_accuracy"]).tolist()
    bounds = sorted(combined["boundary"].unique().tolist())
    return [
        {
            "claim": "C6a",
            "paper": "TL-DMI beats MID, BiDO and LS on the robustness/utility trade-off",
            "metric": "share of MID/BiDO/LS points matched or beaten by a TL-DMI boundary, - 0.5",
            "ours": (f"{_pm(fractions)} of the defense points dominated ({'; '.join(parts)})"),
            "values": [f - 0.5 for f in fractions],
        },
        {
            "claim": "C6b",
            "paper": "TL-DMI combined with BiDO improves on TL-DMI",
            "metric": f"GMI top-1 (TL-DMI) - (TL-DMI + BiDO) at boundaries {bounds}",
            "ours": (
                f"{_pm(gains) if gains else 'n/a'}; natural accuracy change "
                f"{_pm(nat_change) if nat_change else 'n/a'}"
            ),
            "values": gains,
        },
    ]


def assess_claims(
    tables: dict[str, pd.DataFrame], domain: str, other_domains: Sequence[str]
) -> pd.DataFrame:
    """Claims C1-C5 from the reproduction's tables (see the module docs).

    Args:
        tables: ``runs``, ``layer_fisher`` and ``planner_validation``.
        domain: The main pretraining domain.
        other_domains: The other pretraining domains (the first is "similar").

    Returns:
        One row per claim: ``claim``, ``paper``, ``metric``, ``ours``,
        ``verdict``, ``n_seeds``, ``values`` (per-seed numbers, JSON).
    """
    rows = [
        _c1(tables["layer_fisher"]),
        _c2(tables["runs"], domain),
        _c3(tables["runs"], domain, other_domains),
        _c4(tables["runs"]),
        _c5(tables["planner_validation"]),
    ]
    if "defense" in tables["runs"] and tables["runs"]["experiments"].str.contains("defenses").any():
        rows += _c6(tables["runs"], domain)
    for row in rows:
        row["verdict"] = verdict(row["values"])
        row["n_seeds"] = len(row["values"])
        row["values"] = json.dumps([round(v, 6) for v in row["values"]])
    return pd.DataFrame(rows)[["claim", "paper", "metric", "ours", "verdict", "n_seeds", "values"]]

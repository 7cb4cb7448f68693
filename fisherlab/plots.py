"""Figures drawn from fisherlab's tidy result frames; nothing is recomputed here.

All figures share one seaborn style (:func:`use_style`) and take frames as
written to CSV by the pipeline (e.g. ``profile.csv``). Every function returns
its figure, so that it shows inline in a notebook; this module never chooses
a matplotlib backend (the command line selects Agg, a notebook keeps its own).
:func:`results_folder` finds a reproduction's tables for the notebooks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import fisherlab
from fisherlab._io import write_atomic
from fisherlab.errors import FisherlabError
from fisherlab.experiments.claims import pareto_front, select_runs


def use_style() -> None:
    """The shared look of fisherlab figures."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def _label(frame: pd.DataFrame) -> pd.Series:
    return frame["index"].astype(str) + " " + frame["name"].astype(str)


def plot_profile(frame: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Trace share and mean Fisher per parameter, per layer.

    Args:
        frame: A profile frame (columns ``index``, ``name``, ``share``,
            ``mean``, ``objective``, ``fisher``); several objectives are drawn
            side by side when present.
        path: Save the figure here (PNG), atomically.

    Returns:
        The figure.
    """
    use_style()
    data = frame.assign(layer=_label(frame))
    hue = "objective" if data["objective"].nunique() > 1 else None
    n = data["layer"].nunique()
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.55 * n + 4), 4.2))
    sns.barplot(data=data, x="layer", y="share", hue=hue, ax=axes[0])
    axes[0].set_title("share of the Fisher trace")
    sns.barplot(data=data, x="layer", y="mean", hue=hue, ax=axes[1])
    axes[1].set_yscale("log")
    axes[1].set_title("mean Fisher per parameter")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.tick_params(axis="x", rotation=60)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    fisher = ", ".join(sorted(data["fisher"].astype(str).unique()))
    fig.suptitle(f"per-layer {fisher} Fisher, n = {int(data['n_samples'].iloc[0])} samples")
    fig.tight_layout()
    if path is not None:
        write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=120))
    return fig


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    fig.tight_layout()
    if path is not None:
        write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=120))
    return fig


def plot_recommendation(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """The planner's cumulative frozen Fisher shares against the boundary, pick marked.

    Args:
        table: A recommendation table (:attr:`fisherlab.planner.Recommendation.table`,
            or ``recommendations.csv`` of one seed): ``boundary``,
            ``inversion_share``, ``classification_share``, ``score``, ``chosen``,
            and optionally ``budget``.
        path: Save the figure here (PNG), atomically.

    Returns:
        The figure.
    """
    use_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(table["boundary"], table["inversion_share"], "o-", label="inversion Fisher frozen I(b)")
    ax.plot(
        table["boundary"],
        table["classification_share"],
        "s-",
        label="classification Fisher frozen C(b)",
    )
    ax.plot(table["boundary"], table["score"], "^:", color="grey", label="score I(b) - lam C(b)")
    pick = int(table.loc[table["chosen"].astype(bool), "boundary"].iloc[0])
    ax.axvline(pick, color="black", lw=1.2, ls="--")
    ax.annotate(f"pick b={pick}", (pick, 1.0), xytext=(4, -12), textcoords="offset points")
    if "budget" in table and float(table["budget"].iloc[0]) < 1:
        ax.axhline(float(table["budget"].iloc[0]), color="red", lw=0.8, ls=":", label="budget")
    ax.set_xlabel("freeze boundary b (layers 0..b-1 frozen)")
    ax.set_ylabel("cumulative share")
    ax.set_xticks(table["boundary"])
    ax.set_ylim(min(0.0, float(table["score"].min())) - 0.05, 1.08)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title("which boundary freezes the most inversion Fisher")
    return _save(fig, path)


def plot_defense_report(report: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """``fisherlab defend``'s models: natural against attack accuracy, chance marked.

    Args:
        report: ``report.csv`` of :func:`fisherlab.defend`: ``model``,
            ``boundary``, ``natural_accuracy``, ``attack_accuracy``,
            ``attack_low``, ``attack_high``, ``chance``, ``attack``.
        path: Save the figure here (PNG), atomically.

    Returns:
        The figure.
    """
    use_style()
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    styles = {"reference": ("o", "tab:red"), "defended": ("*", "tab:green")}
    for row in report.itertuples():
        marker, colour = styles.get(row.model, ("s", "tab:grey"))
        ax.errorbar(
            row.natural_accuracy,
            row.attack_accuracy,
            yerr=[[row.attack_accuracy - row.attack_low], [row.attack_high - row.attack_accuracy]],
            fmt=marker,
            color=colour,
            ms=12 if marker == "*" else 7,
            capsize=3,
            label=f"{row.model} (b={row.boundary})",
        )
    chance = float(report["chance"].iloc[0])
    ax.axhline(chance, color="black", lw=0.8, ls=":", label=f"chance ({chance:.2f})")
    ax.set_xlabel("natural accuracy on private test data")
    ax.set_ylabel(f"{report['attack'].iloc[0].upper()} attack accuracy\n(evaluator top-1, 95% CI)")
    ax.set_ylim(0, 1.05)
    natural = report["natural_accuracy"]
    pad = max(0.02, 0.15 * float(natural.max() - natural.min()))
    ax.set_xlim(float(natural.min()) - pad, min(1.0 + pad / 4, float(natural.max()) + pad))
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", frameon=False)
    ax.set_title("TL-DMI: accuracy kept against attack accuracy", fontsize="medium")
    fig.tight_layout()
    return _save(fig, path)


def plot_layer_fisher(frame: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Fig. 1-II: per-layer Fisher share by objective, mean and sd over seeds.

    Args:
        frame: ``layer_fisher.csv`` (``index``, ``name``, ``objective``,
            ``share``, ``seed``).
        path: Save the figure here.
    """
    use_style()
    data = frame.assign(layer=_label(frame))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * data["layer"].nunique() + 3), 4.2))
    sns.barplot(data=data, x="layer", y="share", hue="objective", errorbar="sd", ax=ax)
    ax.set_title(f"share of the Fisher trace per layer ({data['seed'].nunique()} seeds)")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def _mean_runs(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    agg = runs.groupby(by, as_index=False).agg(
        natural_accuracy=("natural_accuracy", "mean"),
        natural_sd=("natural_accuracy", "std"),
        attack=("attack_accuracy_top1", "mean"),
        attack_sd=("attack_accuracy_top1", "std"),
        n_trainable_params=("n_trainable_params", "first"),
    )
    return agg.fillna({"natural_sd": 0.0, "attack_sd": 0.0})


def plot_tradeoff(runs: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Fig. 2: GMI attack accuracy against natural accuracy, a line per |theta_C|.

    Each line is one freeze boundary; its points are checkpoints of the
    fine-tuning (epochs), averaged over seeds with sd error bars. The attack
    floor is drawn beside them: chance (1 / classes, dotted) and the
    head-only target (the largest boundary's final attack accuracy, dashed).

    Args:
        runs: ``runs.csv``.
        path: Save the figure here.
    """
    use_style()
    sweep = select_runs(runs, "boundary_sweep")
    agg = _mean_runs(sweep, ["boundary", "epoch"])
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    palette = sns.color_palette("viridis", agg["boundary"].nunique())
    for color, (b, g) in zip(palette, agg.groupby("boundary"), strict=True):
        g = g.sort_values("epoch")
        ax.errorbar(
            g["natural_accuracy"],
            g["attack"],
            xerr=g["natural_sd"],
            yerr=g["attack_sd"],
            fmt="o-",
            color=color,
            capsize=2,
            label=f"b={b}, |θ_C|={int(g['n_trainable_params'].iloc[0]):,}",
        )
        last = g.iloc[-1]
        ax.annotate(
            f"ep {int(last['epoch'])}",
            (last["natural_accuracy"], last["attack"]),
            fontsize="x-small",
            xytext=(3, 3),
            textcoords="offset points",
        )
    if "chance" in sweep:
        ax.axhline(float(sweep["chance"].iloc[0]), color="grey", ls=":", lw=1, label="chance")
    final = sweep[sweep["final"].astype(bool)]
    head = final[final["boundary"] == final["boundary"].max()]["attack_accuracy_top1"]
    ax.axhline(float(head.mean()), color="grey", ls="--", lw=1, label="head-only target")
    ax.set_xlabel("natural accuracy (private test)")
    ax.set_ylabel("GMI attack accuracy (top-1)")
    ax.set_title(f"trade-off per freeze boundary ({sweep['seed'].nunique()} seeds)")
    ax.legend(fontsize="x-small", loc="best")
    return _save(fig, path)


def plot_pretraining(runs: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Fig. 3: attack and natural accuracy by pretraining domain and boundary.

    Args:
        runs: ``runs.csv``.
        path: Save the figure here.
    """
    use_style()
    sub = select_runs(runs, "pretraining", final=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, col, title in (
        (axes[0], "attack_accuracy_top1", "GMI attack accuracy (top-1)"),
        (axes[1], "natural_accuracy", "natural accuracy"),
    ):
        sns.barplot(data=sub, x="boundary", y=col, hue="domain", errorbar="sd", ax=ax)
        ax.set_title(title)
        ax.set_xlabel("freeze boundary b")
    axes[1].set_ylim(max(0.0, float(sub["natural_accuracy"].min()) - 0.05), 1.0)
    fig.suptitle(f"pretraining domain ({sub['seed'].nunique()} seeds)")
    return _save(fig, path)


def plot_first_vs_middle(runs: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Fig. 4: training the first layers versus the middle ones.

    Args:
        runs: ``runs.csv``.
        path: Save the figure here.
    """
    use_style()
    sub = select_runs(runs, "first_vs_middle")
    sub = sub.assign(arm=sub["setting"] + " (layers " + sub["trained_layers"].astype(str) + ")")
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.0))
    sns.barplot(data=sub, x="arm", y="attack_accuracy_top1", errorbar="sd", ax=axes[0])
    axes[0].set_title("GMI attack accuracy (top-1)")
    sns.barplot(data=sub, x="arm", y="natural_accuracy", errorbar="sd", ax=axes[1])
    axes[1].set_title("natural accuracy")
    axes[1].set_ylim(max(0.0, float(sub["natural_accuracy"].min()) - 0.05), 1.0)
    for ax in axes:
        ax.set_xlabel("")
    fig.suptitle(f"first vs middle layers fine-tuned ({sub['seed'].nunique()} seeds)")
    return _save(fig, path)


def plot_fisher_along_attack(frame: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Fig. 5: layer shares of the inversion Fisher at every recorded iteration.

    Args:
        frame: ``attack_fisher.csv`` restricted to one target setting (all
            seeds and restarts are averaged), with an ``attack`` column.
        path: Save the figure here.
    """
    use_style()
    kinds = sorted(frame["attack"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.6 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        sub = frame[frame["attack"] == kind]
        share = sub.groupby(["iteration", "index"])["share"].mean().unstack("index")
        share = share.div(share.sum(axis=1), axis=0)
        names = sub.groupby("index")["name"].first()
        ax.stackplot(
            share.index,
            share.T.to_numpy(),
            labels=[f"{i} {names[i]}" for i in share.columns],
            alpha=0.9,
        )
        ax.set_xlim(share.index.min(), share.index.max())
        ax.set_ylim(0, 1)
        ax.set_xlabel("attack iteration")
        ax.set_ylabel("share of the inversion Fisher")
        ax.set_title(f"{kind.upper()} ({sub['seed'].nunique()} seeds)")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return _save(fig, path)


def plot_pareto(
    runs: pd.DataFrame, validation: pd.DataFrame, path: str | Path | None = None
) -> plt.Figure:
    """The sweep's Pareto front (natural accuracy up, attack accuracy down) and the picks.

    Args:
        runs: ``runs.csv`` (final GMI checkpoints of the boundary sweep are used).
        validation: ``planner_validation.csv`` (one pick per seed).
        path: Save the figure here.
    """
    use_style()
    sweep = select_runs(runs, "boundary_sweep", final=True)
    agg = _mean_runs(sweep, ["boundary"]).reset_index(drop=True)
    front = agg.iloc[pareto_front(agg)].sort_values("natural_accuracy")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.errorbar(
        agg["natural_accuracy"],
        agg["attack"],
        xerr=agg["natural_sd"],
        yerr=agg["attack_sd"],
        fmt="o",
        color="grey",
        capsize=2,
        label="boundary (mean ± sd over seeds)",
    )
    ax.plot(front["natural_accuracy"], front["attack"], "-", color="black", lw=1, label="front")
    for r in agg.itertuples():
        ax.annotate(
            f"b={r.boundary}",
            (r.natural_accuracy, r.attack),
            fontsize="small",
            xytext=(4, 4),
            textcoords="offset points",
        )
    if not validation.empty:
        picks = validation["pick"].value_counts()
        chosen = agg[agg["boundary"].isin(picks.index)]
        ax.scatter(
            chosen["natural_accuracy"],
            chosen["attack"],
            s=160,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label="planner pick ("
            + ", ".join(f"b={b}: {n} seed{'s' if n > 1 else ''}" for b, n in picks.items())
            + ")",
        )
    ax.set_xlabel("natural accuracy")
    ax.set_ylabel("GMI attack accuracy (top-1)")
    ax.set_title("planner pick against the measured sweep")
    ax.legend(fontsize="x-small")
    return _save(fig, path)


def plot_defense_tradeoff(runs: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Fig. 1-IV: every defense's trade-off curve on one plot (GMI, mean over seeds).

    TL-DMI's points are the freeze boundaries of the sweep; MID, BiDO and LS
    are full fine-tuning at each strength; TL-DMI + BiDO combines both.

    Args:
        runs: ``runs.csv`` of a reproduction with the defense comparison.
        path: Save the figure here.
    """
    use_style()
    sweep = select_runs(runs, "boundary_sweep", final=True)
    defended = select_runs(runs, "defenses", final=True)
    combined = defended["setting"].str.contains(r"\+ bido", regex=True)
    series = [("TL-DMI (boundary b)", sweep, "boundary")]
    for name, g in defended[~combined].groupby("defense"):
        series.append((name.upper() if name != "ls" else "LS (negative)", g, "setting"))
    if combined.any():
        series.append(("TL-DMI + BiDO", defended[combined], "setting"))
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    markers = iter("os^DvP*X")
    for label, g, by in series:
        agg = _mean_runs(g, [by]).sort_values("natural_accuracy")
        ax.errorbar(
            agg["natural_accuracy"],
            agg["attack"],
            xerr=agg["natural_sd"],
            yerr=agg["attack_sd"],
            fmt=next(markers) + "-",
            capsize=2,
            label=label,
        )
        for r in agg.itertuples():
            text = f"b={getattr(r, by)}" if by == "boundary" else str(getattr(r, by))
            ax.annotate(
                text.split(" ", 1)[-1],
                (r.natural_accuracy, r.attack),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("natural accuracy")
    ax.set_ylabel("GMI attack accuracy (top-1)")
    ax.set_title(f"defenses on one trade-off plot ({sweep['seed'].nunique()} seeds)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_defense_fisher(frame: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Per-layer Fisher shares under each defense: classification and inversion heatmaps.

    One row per trained model (defense and strength, or TL-DMI + BiDO at a
    boundary; ``b=0`` is the undefended full fine-tuning), one column per
    layer, the share averaged over seeds.

    Args:
        frame: ``defense_fisher.csv`` (``setting``, ``objective``, ``index``,
            ``share``, ``seed``).
        path: Save the figure here.
    """
    use_style()
    objectives = sorted(frame["objective"].unique())
    order = sorted(frame["setting"].unique(), key=lambda v: (v != "b=0", v))
    fig, axes = plt.subplots(
        1,
        len(objectives),
        figsize=(5.8 * len(objectives), 0.42 * len(order) + 1.8),
        squeeze=False,
        sharey=True,
    )
    for ax, objective in zip(axes[0], objectives, strict=True):
        table = (
            frame[frame["objective"] == objective]
            .pivot_table(index="setting", columns="index", values="share", aggfunc="mean")
            .reindex(order)
        )
        sns.heatmap(
            table,
            annot=True,
            fmt=".2f",
            cmap="mako_r",
            vmin=0,
            vmax=0.6,
            cbar=ax is axes[0][-1],
            annot_kws={"fontsize": 7},
            ax=ax,
        )
        ax.set_title(f"{objective} Fisher, share per layer")
        ax.set_xlabel("layer index")
        ax.set_ylabel("")
    fig.suptitle(
        f"where each defense moves the Fisher information ({frame['seed'].nunique()} seeds)"
    )
    return _save(fig, path)


def _full_fine_tuning(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of plain full fine-tuning of the main target from the main pretraining domain.

    The main domain and architecture are those listed first.
    """
    keep = (
        (frame["domain"] == frame["domain"].iloc[0])
        & (frame["boundary"] == 0)
        & (frame["defense"] == "none")
    )
    if "arch" in frame:
        keep &= frame["arch"] == frame["arch"].iloc[0]
    return frame[keep]


def _first_seed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["seed"] == frame["seed"].min()]


Tables = dict[str, pd.DataFrame]

FIGURES: dict[str, tuple[tuple[str, ...], Callable[[Tables, Path | None], plt.Figure]]] = {
    "fig1_layer_fisher": (("layer_fisher",), lambda t, p: plot_layer_fisher(t["layer_fisher"], p)),
    "fig2_tradeoff": (("runs",), lambda t, p: plot_tradeoff(t["runs"], p)),
    "fig3_pretraining": (("runs",), lambda t, p: plot_pretraining(t["runs"], p)),
    "fig4_first_vs_middle": (("runs",), lambda t, p: plot_first_vs_middle(t["runs"], p)),
    "fig5_fisher_along_attack": (
        ("attack_fisher",),
        lambda t, p: plot_fisher_along_attack(_full_fine_tuning(t["attack_fisher"]), p),
    ),
    "planner_pareto": (
        ("runs", "planner_validation"),
        lambda t, p: plot_pareto(t["runs"], t["planner_validation"], p),
    ),
    "recommendation": (
        ("recommendations",),
        lambda t, p: plot_recommendation(_first_seed(t["recommendations"]), p),
    ),
    # defense_fisher.csv exists only when the reproduction ran the defense comparison
    "fig1iv_defenses": (
        ("runs", "defense_fisher"),
        lambda t, p: plot_defense_tradeoff(t["runs"], p),
    ),
    "defense_fisher": (
        ("defense_fisher",),
        lambda t, p: plot_defense_fisher(t["defense_fisher"], p),
    ),
}
"""Figure name -> (the tables it reads, from ``<name>.csv``; how it draws them)."""


def results_folder(given: str | Path | None = None, *runs: str) -> Path:
    """A reproduction's results folder: ``given``, else the first ``results/<run>`` found.

    ``runs`` are the folder names to try in order (default: ``"default"``).

    Without ``given``, it looks in the working directory, its parent (a
    notebook in ``notebooks/``) and the checkout fisherlab is installed from,
    so that a notebook copied elsewhere still finds the results.

    Raises:
        FisherlabError: When no folder holds a ``claims.csv``.
    """
    if given is not None:
        folder = Path(given)
        if not (folder / "claims.csv").is_file():
            raise FisherlabError(
                f"{folder} holds no claims.csv: give the --out folder of fisherlab reproduce"
            )
        return folder
    checkout = Path(fisherlab.__file__).resolve().parents[1]
    names = runs or ("default",)
    for run in names:
        for base in (Path.cwd(), Path.cwd().parent, checkout):
            if (base / "results" / run / "claims.csv").is_file():
                return base / "results" / run
    raise FisherlabError(
        f"no results/{' or results/'.join(names)} found here, one folder up or in the "
        "fisherlab checkout: set RESULTS to the --out folder of fisherlab reproduce"
    )


def draw_figure(name: str, results: str | Path, out: str | Path | None = None) -> plt.Figure:
    """Draw one named figure from a reproduction's results directory.

    Args:
        name: A key of :data:`FIGURES`.
        results: The ``--out`` directory of ``fisherlab reproduce``.
        out: Directory to save ``<name>.png`` into (``None``: do not save).

    Returns:
        The figure.
    """
    needs, draw = FIGURES[name]
    tables = {t: pd.read_csv(Path(results) / f"{t}.csv") for t in needs}
    return draw(tables, Path(out) / f"{name}.png" if out is not None else None)


def draw_all(results: str | Path, out: str | Path) -> list[Path]:
    """Draw every figure of :data:`FIGURES` whose tables exist into ``out``.

    Returns:
        The PNG paths written (the defense figures need the defense comparison).
    """
    paths = []
    for name, (needs, _) in FIGURES.items():
        if all((Path(results) / f"{t}.csv").is_file() for t in needs):
            plt.close(draw_figure(name, results, out))
            paths.append(Path(out) / f"{name}.png")
    return paths

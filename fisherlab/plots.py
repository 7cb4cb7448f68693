"""Figures drawn from fisherlab's tidy result frames; nothing is recomputed here.

All figures share one seaborn style (:func:`use_style`) and take frames as
written to CSV by the pipeline (e.g. ``profile.csv``). Every function returns
its figure, so that it shows inline in a notebook; this module never chooses
a matplotlib backend (the command line selects Agg, a notebook keeps its own).
:func:`results_folder` finds a reproduction's tables for the notebooks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from fisherlab._io import write_atomic
from fisherlab.errors import FisherlabError
from fisherlab.experiments.claims import pareto_front, select_runs

COLUMN_WIDTH = 3.5
"""A single journal column, in inches; figures are drawn at one or two columns."""

DPI = 300
"""Resolution of saved PNGs."""

FORMATS = ("png", "pdf", "svg")
"""What :func:`save` writes; the format follows the path's suffix (PNG without one)."""

NAMES = {
    "mid": "MID",
    "bido": "BiDO",
    "ls": "LS",
    "none": "none",
    "gmi": "GMI",
    "kedmi": "KEDMI",
    "lomma-gmi": "LOMMA-GMI",
    "lomma-kedmi": "LOMMA-KEDMI",
    "plgmi": "PLG-MI",
    "whitebox": "white-box",
    "fashion": "Fashion-MNIST",
    "mnist5k:5-9": "MNIST digits 5-9",
    "mnist5k:0-4": "MNIST digits 0-4",
}
"""How names from the tables are spelt in figures (one spelling per defense)."""


def style() -> None:
    """Set the one look of every fisherlab figure.

    Seaborn's whitegrid with the colour-blind palette, 7.5-9.5 pt type
    (readable at a single column, :data:`COLUMN_WIDTH`), saved at :data:`DPI` dpi.
    """
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.0)
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "xtick.labelsize": 7.5,
            "ytick.labelsize": 7.5,
            "legend.fontsize": 7.5,
            "legend.title_fontsize": 8,
            "figure.titlesize": 9.5,
        }
    )


use_style = style  # the name before 0.3


def pretty(name: object) -> str:
    """A table's name (defense, attack, dataset) as figures spell it (:data:`NAMES`)."""
    text = str(name)
    return NAMES.get(text, text)


def save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Lay out ``fig`` and, with ``path``, save it atomically in the format its suffix names.

    ``.png`` (or no suffix) at :data:`DPI` dpi, ``.pdf`` or ``.svg`` as vectors.
    """
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    if path is not None:
        target = Path(path)
        kind = target.suffix.lstrip(".").lower() or "png"
        if kind not in FORMATS:
            raise FisherlabError(f"cannot save a figure as .{kind}: use one of {FORMATS}")
        write_atomic(target, lambda p: fig.savefig(p, format=kind, dpi=DPI))
    return fig


def _title(ax_or_fig, what: str, about: str | None) -> None:
    """A title naming what is shown and, on a second line, the model, data and objective."""
    text = what if not about else f"{what}\n{about}"
    if isinstance(ax_or_fig, plt.Figure):
        ax_or_fig.suptitle(text)
    else:
        ax_or_fig.set_title(text)


def _label(frame: pd.DataFrame) -> pd.Series:
    return frame["index"].astype(str) + " " + frame["name"].astype(str)


def plot_profile(
    frame: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Trace share and mean Fisher per parameter, per layer.

    Above 20 layers the bars turn horizontal (layers down the page), so that
    the figure keeps a readable size for deep models.

    Args:
        frame: A profile frame (columns ``index``, ``name``, ``share``,
            ``mean``, ``objective``, ``fisher``, ``n_samples``); several
            objectives are drawn side by side when present.
        path: Save the figure here (PNG, PDF or SVG by suffix), atomically.
        about: The model and data, for the title (default: the profile's
            ``model`` attribute if any).

    Returns:
        The figure.
    """
    style()
    data = frame.assign(layer=_label(frame))
    hue = "objective" if data["objective"].nunique() > 1 else None
    n = data["layer"].nunique()
    horizontal = n > 20
    if horizontal:
        fig, axes = plt.subplots(
            1,
            2,
            figsize=(2 * COLUMN_WIDTH, min(30.0, 1.2 + 0.16 * n)),
            sharey=True,
            layout="constrained",
        )
        sns.barplot(data=data, y="layer", x="share", hue=hue, ax=axes[0], orient="h")
        sns.barplot(data=data, y="layer", x="mean", hue=hue, ax=axes[1], orient="h")
        axes[1].set_xscale("log")
        axes[0].set_xlabel("share of the layer in the Fisher trace")
        axes[1].set_xlabel("mean Fisher per parameter (log scale)")
        axes[0].set_ylabel("layer (index and module)")
        axes[1].set_ylabel("")
        axes[0].tick_params(axis="y", labelsize=6)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH, 3.0), layout="constrained")
        sns.barplot(data=data, x="layer", y="share", hue=hue, ax=axes[0])
        sns.barplot(data=data, x="layer", y="mean", hue=hue, ax=axes[1])
        axes[1].set_yscale("log")
        axes[0].set_ylabel("share of the layer in the Fisher trace")
        axes[1].set_ylabel("mean Fisher per parameter (log scale)")
        for ax in axes:
            ax.set_xlabel("layer (index and module)")
            ax.tick_params(axis="x", rotation=60)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
    if hue is not None:
        for ax in axes:
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)))
    fisher = ", ".join(sorted(data["fisher"].astype(str).unique()))
    objective = ", ".join(sorted(data["objective"].astype(str).unique()))
    about = about or frame.attrs.get("about")
    what = (
        f"Per-layer {fisher} Fisher of the {objective} objective, "
        f"n = {int(data['n_samples'].iloc[0])} samples"
    )
    _title(fig, what, about)
    return save(fig, path)


def plot_recommendation(
    table: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """The planner's cumulative frozen Fisher shares against the boundary, pick marked.

    Args:
        table: A recommendation table (:attr:`fisherlab.planner.Recommendation.table`,
            or ``recommendations.csv`` of one seed): ``boundary``,
            ``inversion_share``, ``classification_share``, ``score``, ``chosen``,
            and optionally ``lam`` and ``budget``.
        path: Save the figure here (PNG, PDF or SVG by suffix), atomically.
        about: The model and data, for the title.

    Returns:
        The figure.
    """
    style()
    lam = float(table["lam"].iloc[0]) if "lam" in table else 1.0
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH * 1.5, 3.0))
    ax.plot(
        table["boundary"], table["inversion_share"], "o-", label="inversion Fisher frozen, I(b)"
    )
    ax.plot(
        table["boundary"],
        table["classification_share"],
        "s-",
        label="classification Fisher frozen, C(b)",
    )
    ax.plot(
        table["boundary"], table["score"], "^:", color="grey", label=f"score I(b) − {lam:g}·C(b)"
    )
    pick = int(table.loc[table["chosen"].astype(bool), "boundary"].iloc[0])
    ax.axvline(pick, color="black", lw=1.0, ls="--", label=f"recommended boundary b = {pick}")
    if "budget" in table and float(table["budget"].iloc[0]) < 1:
        ax.axhline(
            float(table["budget"].iloc[0]), color="red", lw=0.8, ls=":", label="budget on C(b)"
        )
    ax.set_xlabel("freeze boundary b (layers 0 .. b−1 frozen)")
    ax.set_ylabel("cumulative share of the Fisher trace")
    ax.set_xticks(table["boundary"])
    ax.set_ylim(min(0.0, float(table["score"].min())) - 0.05, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    _title(ax, f"Which boundary freezes the most inversion Fisher (λ = {lam:g})", about)
    return save(fig, path)


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
    style()
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
    return save(fig, path)


def plot_layer_fisher(
    frame: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Fig. 1-II: per-layer Fisher share by objective, mean and sd over seeds.

    Args:
        frame: ``layer_fisher.csv`` (``index``, ``name``, ``objective``,
            ``share``, ``seed``).
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    data = frame.assign(
        layer=_label(frame),
        objective=frame["objective"].str.replace(
            r"\((\w+)\)", lambda m: f"({pretty(m.group(1))})", regex=True
        ),
    )
    fig, ax = plt.subplots(figsize=(2 * COLUMN_WIDTH, 2.8))
    sns.barplot(
        data=data, x="layer", y="share", hue="objective", errorbar="sd", ax=ax, err_kws={"lw": 1}
    )
    ax.set_xlabel("layer (index and module)")
    ax.set_ylabel("share of the Fisher trace")
    ax.legend(title="objective", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.tick_params(axis="x", rotation=20)
    _title(
        ax,
        f"Fig. 1-II: where the Fisher information sits (mean ± sd, {data['seed'].nunique()} seeds)",
        about,
    )
    return save(fig, path)


def _mean_runs(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    agg = runs.groupby(by, as_index=False).agg(
        natural_accuracy=("natural_accuracy", "mean"),
        natural_sd=("natural_accuracy", "std"),
        attack=("attack_accuracy_top1", "mean"),
        attack_sd=("attack_accuracy_top1", "std"),
        n_trainable_params=("n_trainable_params", "first"),
    )
    return agg.fillna({"natural_sd": 0.0, "attack_sd": 0.0})


def plot_tradeoff(
    runs: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Fig. 2: GMI attack accuracy against natural accuracy, one series per |theta_C|.

    Each series is one freeze boundary; its points are checkpoints of the
    fine-tuning (epochs, labelled only when there are several), averaged over
    seeds with sd error bars. The attack floor is drawn as lines: chance
    (1 / classes, dotted) and the head-only target (the largest boundary's
    final attack accuracy, dashed).

    Args:
        runs: ``runs.csv``.
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    sweep = select_runs(runs, "boundary_sweep")
    agg = _mean_runs(sweep, ["boundary", "epoch"])
    several_epochs = agg["epoch"].nunique() > 1
    fig, ax = plt.subplots(figsize=(2 * COLUMN_WIDTH, 3.2))
    palette = sns.color_palette("viridis", agg["boundary"].nunique())
    markers = iter("osD^vP*X<>")
    for color, (b, g) in zip(palette, agg.groupby("boundary"), strict=True):
        g = g.sort_values("epoch")
        ax.errorbar(
            g["natural_accuracy"],
            g["attack"],
            xerr=g["natural_sd"],
            yerr=g["attack_sd"],
            fmt=next(markers) + ("-" if several_epochs else ""),
            color=color,
            capsize=2,
            ms=5,
            label=f"b = {b}  (|θ_C| = {int(g['n_trainable_params'].iloc[0]):,})",
        )
        if several_epochs:
            last = g.iloc[-1]
            ax.annotate(
                f"epoch {int(last['epoch'])}",
                (last["natural_accuracy"], last["attack"]),
                fontsize=6.5,
                xytext=(4, -8),
                textcoords="offset points",
            )
    if "chance" in sweep:
        chance = float(sweep["chance"].iloc[0])
        ax.axhline(chance, color="black", ls=":", lw=1, label=f"chance ({chance:.2f})")
    final = sweep[sweep["final"].astype(bool)]
    head = final[final["boundary"] == final["boundary"].max()]["attack_accuracy_top1"]
    ax.axhline(float(head.mean()), color="grey", ls="--", lw=1, label="head-only target (floor)")
    ax.set_xlabel("natural accuracy on private test data")
    ax.set_ylabel("GMI attack accuracy\n(evaluator top-1)")
    ax.set_ylim(0, 1.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="freeze boundary")
    _title(
        ax,
        f"Fig. 2: attack against natural accuracy per freeze boundary "
        f"(mean ± sd, {sweep['seed'].nunique()} seeds)",
        about,
    )
    return save(fig, path)


def _dot_panels(
    data: pd.DataFrame, x: str, hue: str | None, order: list | None, about: str | None, what: str
) -> plt.Figure:
    """Attack accuracy (from 0) and natural accuracy as dot plots with sd intervals."""
    fig, axes = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH, 3.0), layout="constrained")
    for ax, col, label in (
        (axes[0], "attack_accuracy_top1", "GMI attack accuracy (evaluator top-1)"),
        (axes[1], "natural_accuracy", "natural accuracy on private test data"),
    ):
        sns.pointplot(
            data=data,
            x=x,
            y=col,
            hue=hue,
            order=order,
            errorbar="sd",
            dodge=0.3 if hue else False,
            linestyle="none",
            capsize=0.1,
            markersize=5,
            err_kws={"linewidth": 1},
            ax=ax,
        )
        ax.set_ylabel(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[0].set_ylim(0, 1.0)
    low = float(data["natural_accuracy"].min())
    axes[1].set_ylim(max(0.0, low - 0.03), 1.0)
    axes[1].text(
        0.02, 0.02, "(axis zoomed)", transform=axes[1].transAxes, fontsize=6.5, color="grey"
    )
    if hue:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles,
            [pretty(v) for v in labels],
            loc="outside lower center",
            ncols=len(labels),
            title=hue.replace("_", " "),
        )
    _title(fig, what, about)
    return fig


def plot_pretraining(
    runs: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Fig. 3: attack and natural accuracy by pretraining domain and boundary (dot plots).

    Args:
        runs: ``runs.csv``.
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    sub = select_runs(runs, "pretraining", final=True)
    sub = sub.assign(pretraining=sub["domain"].map(pretty))
    fig = _dot_panels(
        sub.rename(columns={"boundary": "freeze boundary b"}),
        "freeze boundary b",
        "pretraining",
        None,
        about,
        f"Fig. 3: the pretraining domain (mean ± sd, {sub['seed'].nunique()} seeds)",
    )
    for ax in fig.axes:
        ax.set_xlabel("freeze boundary b")
    return save(fig, path)


def plot_first_vs_middle(
    runs: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Fig. 4: training the first layers versus the middle ones (dot plots).

    Args:
        runs: ``runs.csv``.
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    sub = select_runs(runs, "first_vs_middle")
    arm = sub["setting"] + " layers " + sub["trained_layers"].astype(str).str.replace(",", ", ")
    sub = sub.assign(arm=arm + "\n|θ_C| = " + sub["n_trainable_params"].map("{:,}".format))
    fig = _dot_panels(
        sub,
        "arm",
        None,
        sorted(sub["arm"].unique()),
        about,
        f"Fig. 4: fine-tuning the first or the middle layers "
        f"(mean ± sd, {sub['seed'].nunique()} seeds)",
    )
    for ax in fig.axes:
        ax.set_xlabel("trained layers (and the head)")
    return save(fig, path)


def plot_fisher_along_attack(
    frame: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Fig. 5: layer shares of the inversion Fisher at every recorded iteration.

    Args:
        frame: ``attack_fisher.csv`` restricted to one target setting (all
            seeds and restarts are averaged), with an ``attack`` column.
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    kinds = sorted(frame["attack"].unique())
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(COLUMN_WIDTH * 1.1 * len(kinds) + 1.2, 2.8), squeeze=False
    )
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
        ax.set_title(f"{pretty(kind)} ({sub['seed'].nunique()} seeds)")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, title="layer")
    _title(fig, "Fig. 5: the inversion Fisher at every recorded attack iteration", about)
    return save(fig, path)


def _label_column(
    ax: plt.Axes,
    xs: pd.Series,
    ys: pd.Series,
    texts: list[str],
    colors: Sequence | None = None,
) -> None:
    """Label points from a column right of the axes, with leader lines (clusters stay legible)."""
    ax.figure.canvas.draw()  # the axes' limits are final
    low, high = ax.get_ylim()
    order = sorted(range(len(texts)), key=lambda i: -float(ys.iloc[i]))
    gap, placed = 0.075, []
    for i in order:
        y = (float(ys.iloc[i]) - low) / (high - low)
        if placed:
            y = min(y, placed[-1] - gap)
        placed.append(y)
        ax.annotate(
            texts[i],
            (float(xs.iloc[i]), float(ys.iloc[i])),
            xytext=(1.03, y),
            textcoords="axes fraction",
            va="center",
            fontsize=7,
            color="black" if colors is None else colors[i],
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey", "shrinkB": 3},
        )


def plot_pareto(
    runs: pd.DataFrame,
    validation: pd.DataFrame,
    path: str | Path | None = None,
    *,
    about: str | None = None,
) -> plt.Figure:
    """The sweep's Pareto front (natural accuracy up, attack accuracy down) and the picks.

    Args:
        runs: ``runs.csv`` (final GMI checkpoints of the boundary sweep are used).
        validation: ``planner_validation.csv`` (one pick per seed).
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    sweep = select_runs(runs, "boundary_sweep", final=True)
    agg = _mean_runs(sweep, ["boundary"]).reset_index(drop=True)
    front = agg.iloc[pareto_front(agg)].sort_values("natural_accuracy")
    fig, ax = plt.subplots(figsize=(2 * COLUMN_WIDTH, 3.2), layout="constrained")
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
    _label_column(ax, agg["natural_accuracy"], agg["attack"], [f"b={b}" for b in agg["boundary"]])
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
    ax.set_xlabel("natural accuracy on private test data")
    ax.set_ylabel("GMI attack accuracy\n(evaluator top-1)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", frameon=False, ncols=2)
    _title(ax, "The planner's pick against the measured sweep's Pareto front", about)
    return save(fig, path)


def plot_defense_tradeoff(
    runs: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Fig. 1-IV: every defense's trade-off on one plot (GMI, mean ± sd over seeds).

    TL-DMI's points are the freeze boundaries of the sweep; MID, BiDO and LS
    are full fine-tuning at each strength; TL-DMI + BiDO combines both. The
    left panel shows every model; the right one zooms on natural accuracy
    >= 0.95, where the usable models cluster, and labels each point with its
    boundary or strength.

    Args:
        runs: ``runs.csv`` of a reproduction with the defense comparison.
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    sweep = select_runs(runs, "boundary_sweep", final=True)
    defended = select_runs(runs, "defenses", final=True)
    combined = defended["setting"].str.contains(r"\+ bido", regex=True)
    series = [("TL-DMI (boundary b)", sweep, "boundary")]
    for name, g in defended[~combined].groupby("defense"):
        label = f"{pretty(name)} (negative)" if name == "ls" else pretty(name)
        series.append((label, g, "setting"))
    if combined.any():
        series.append(("TL-DMI + BiDO", defended[combined], "setting"))
    fig, axes = plt.subplots(
        1, 2, figsize=(2 * COLUMN_WIDTH, 3.4), layout="constrained", sharey=True
    )
    markers = "os^DvP*X"
    colors = sns.color_palette("colorblind", len(series))
    zoom_low = 0.95
    labels: dict[str, list] = {"x": [], "y": [], "text": [], "color": []}
    for ax, zoom in zip(axes, (False, True), strict=True):
        for (label, g, by), marker, color in zip(series, markers, colors, strict=False):
            agg = _mean_runs(g, [by]).sort_values("natural_accuracy")
            shown = agg[agg["natural_accuracy"] >= zoom_low] if zoom else agg
            ax.errorbar(
                shown["natural_accuracy"],
                shown["attack"],
                xerr=shown["natural_sd"],
                yerr=shown["attack_sd"],
                fmt=marker + "-",
                color=color,
                capsize=2,
                ms=4,
                lw=1,
                label=label,
            )
            if zoom:
                for r in shown.itertuples():
                    value = str(getattr(r, by))
                    if by == "boundary":
                        text = f"b={value}"
                    elif " + " in value:
                        text = value.split(" + ")[0]  # TL-DMI + BiDO: its boundary
                    else:
                        text = value.split(" ", 1)[-1]  # a strength
                    labels["x"].append(r.natural_accuracy)
                    labels["y"].append(r.attack)
                    labels["text"].append(text)
                    labels["color"].append(color)
        ax.set_xlabel("natural accuracy on private test data")
        ax.set_ylim(0, 1.0)
    axes[1].set_xlim(zoom_low, 1.0)
    _label_column(
        axes[1], pd.Series(labels["x"]), pd.Series(labels["y"]), labels["text"], labels["color"]
    )
    axes[0].set_ylabel("GMI attack accuracy (evaluator top-1)")
    axes[0].set_title("all models")
    axes[1].set_title(f"natural accuracy ≥ {zoom_low}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    _title(
        fig,
        f"Fig. 1-IV: TL-DMI against MID, BiDO and LS (mean ± sd, {sweep['seed'].nunique()} seeds)",
        about,
    )
    return save(fig, path)


def plot_defense_fisher(
    frame: pd.DataFrame, path: str | Path | None = None, *, about: str | None = None
) -> plt.Figure:
    """Per-layer Fisher shares under each defense: classification and inversion heatmaps.

    One row per trained model (defense and strength, or TL-DMI + BiDO at a
    boundary; ``b=0`` is the undefended full fine-tuning), one column per
    layer, the share averaged over seeds.

    Args:
        frame: ``defense_fisher.csv`` (``setting``, ``objective``, ``index``,
            ``share``, ``seed``).
        path: Save the figure here.
        about: The model and data, for the title.
    """
    style()
    objectives = sorted(frame["objective"].unique())
    order = sorted(frame["setting"].unique(), key=lambda v: (v != "b=0", v))
    fig, axes = plt.subplots(
        1,
        len(objectives),
        figsize=(COLUMN_WIDTH * len(objectives), 0.28 * len(order) + 1.4),
        squeeze=False,
        sharey=True,
    )
    for ax, objective in zip(axes[0], objectives, strict=True):
        table = (
            frame[frame["objective"] == objective]
            .pivot_table(index="setting", columns="index", values="share", aggfunc="mean")
            .reindex(order)
        )
        table.index = [pretty_setting(v) for v in table.index]
        sns.heatmap(
            table,
            annot=True,
            fmt=".2f",
            cmap="mako_r",
            vmin=0,
            vmax=0.6,
            cbar=ax is axes[0][-1],
            annot_kws={"fontsize": 6},
            ax=ax,
        )
        name = re.sub(r"\((\w+)\)", lambda m: f"({pretty(m.group(1))})", objective)
        ax.set_title(f"{name} Fisher")
        ax.set_xlabel("layer index")
        ax.set_ylabel("")
    _title(
        fig,
        f"Where each defense moves the Fisher information: share per layer "
        f"(mean, {frame['seed'].nunique()} seeds)",
        about,
    )
    return save(fig, path)


def pretty_setting(setting: str) -> str:
    """A defense setting (``mid beta=0.01``, ``b=4 + bido ...``) spelt as in figures."""
    if setting == "b=0":
        return "no defense (b=0)"
    out = setting
    for raw in ("mid", "bido", "ls"):
        out = out.replace(f"{raw} ", f"{pretty(raw)} ").replace(f"+ {raw}", f"+ {pretty(raw)}")
    return out


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

FIGURES: dict[
    str, tuple[tuple[str, ...], Callable[[Tables, Path | None, str | None], plt.Figure]]
] = {
    "fig1_layer_fisher": (
        ("layer_fisher",),
        lambda t, p, a: plot_layer_fisher(t["layer_fisher"], p, about=a),
    ),
    "fig2_tradeoff": (("runs",), lambda t, p, a: plot_tradeoff(t["runs"], p, about=a)),
    "fig3_pretraining": (("runs",), lambda t, p, a: plot_pretraining(t["runs"], p, about=a)),
    "fig4_first_vs_middle": (
        ("runs",),
        lambda t, p, a: plot_first_vs_middle(t["runs"], p, about=a),
    ),
    "fig5_fisher_along_attack": (
        ("attack_fisher",),
        lambda t, p, a: plot_fisher_along_attack(_full_fine_tuning(t["attack_fisher"]), p, about=a),
    ),
    "planner_pareto": (
        ("runs", "planner_validation"),
        lambda t, p, a: plot_pareto(t["runs"], t["planner_validation"], p, about=a),
    ),
    "recommendation": (
        ("recommendations",),
        lambda t, p, a: plot_recommendation(_first_seed(t["recommendations"]), p, about=a),
    ),
    # defense_fisher.csv exists only when the reproduction ran the defense comparison
    "fig1iv_defenses": (
        ("runs", "defense_fisher"),
        lambda t, p, a: plot_defense_tradeoff(t["runs"], p, about=a),
    ),
    "defense_fisher": (
        ("defense_fisher",),
        lambda t, p, a: plot_defense_fisher(t["defense_fisher"], p, about=a),
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
    checkout = Path(__file__).resolve().parents[1]  # fisherlab/plots.py -> the checkout
    names = runs or ("default",)
    for run in names:
        for base in (Path.cwd(), Path.cwd().parent, checkout):
            if (base / "results" / run / "claims.csv").is_file():
                return base / "results" / run
    raise FisherlabError(
        f"no results/{' or results/'.join(names)} found here, one folder up or in the "
        "fisherlab checkout: set RESULTS to the --out folder of fisherlab reproduce"
    )


def about_run(results: str | Path) -> str | None:
    """The model and data of a reproduction, for titles (from its ``config.json``)."""
    path = Path(results) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text()).get("config", {})
    arch, private, public = config.get("arch"), config.get("private"), config.get("public")
    if not arch or not private:
        return None
    prior = f"; GAN prior on {pretty(public)}" if public else ""
    return f"{arch} fine-tuned on private {pretty(private)}{prior}"


def draw_figure(
    name: str,
    results: str | Path,
    out: str | Path | None = None,
    formats: Sequence[str] = ("png",),
) -> plt.Figure:
    """Draw one named figure from a reproduction's results directory.

    Args:
        name: A key of :data:`FIGURES`.
        results: The ``--out`` directory of ``fisherlab reproduce``.
        out: Directory to save ``<name>.<format>`` into (``None``: do not save).
        formats: Which of :data:`FORMATS` to save (PNG by default; add ``"pdf"``
            or ``"svg"`` for vector copies).

    Returns:
        The figure.
    """
    needs, draw = FIGURES[name]
    tables = {t: pd.read_csv(Path(results) / f"{t}.csv") for t in needs}
    fig = draw(tables, None, about_run(results))
    if out is not None:
        for kind in formats:
            save(fig, Path(out) / f"{name}.{kind}")
    return fig


def draw_all(results: str | Path, out: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Draw every figure of :data:`FIGURES` whose tables exist into ``out``.

    Returns:
        The paths written (the defense figures need the defense comparison).
    """
    paths = []
    for name, (needs, _) in FIGURES.items():
        if all((Path(results) / f"{t}.csv").is_file() for t in needs):
            plt.close(draw_figure(name, results, out, formats))
            paths += [Path(out) / f"{name}.{kind}" for kind in formats]
    return paths

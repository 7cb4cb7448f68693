"""Figures drawn from fisherlab's tidy result frames; nothing is recomputed here.

All figures share one seaborn style (:func:`use_style`) and take frames as
written to CSV by the pipeline (e.g. ``profile.csv``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from fisherlab._io import write_atomic


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

"""Write the thin figure notebooks of notebooks/ (run once after changing their text).

Each notebook reads a reproduction's tables (``FISHERLAB_RESULTS``, default
``../results/default``), draws one figure with :func:`fisherlab.plots.draw_figure`
into ``FISHERLAB_FIGURES`` (default ``../figures``) and shows the claim it bears on.

Usage: python scripts/make_notebooks.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = """import os
import warnings
from pathlib import Path

import pandas as pd

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a bare kernel
from fisherlab import plots

RESULTS = Path(os.environ.get("FISHERLAB_RESULTS", "../results/default"))
FIGURES = Path(os.environ.get("FISHERLAB_FIGURES", "../figures"))
claims = pd.read_csv(RESULTS / "claims.csv").set_index("claim")"""

NOTEBOOKS = {
    "fig1_layer_fisher": (
        "Fig. 1-II: where the Fisher information sits",
        "Per-layer share of the Fisher trace of the fully fine-tuned target: the "
        "classification loss on private data, and the inversion objective along GMI and "
        "KEDMI (averaged over the recorded iterations). Bars: mean over seeds, whiskers: sd.",
        ["fig1_layer_fisher"],
        ["C1"],
        'pd.read_csv(RESULTS / "layer_fisher.csv").pivot_table(\n'
        '    index=["index", "name"], columns="objective", values="share", aggfunc="mean"\n'
        ").round(3)",
    ),
    "fig2_tradeoff": (
        "Fig. 2: attack accuracy against natural accuracy, one line per |theta_C|",
        "Each line is one freeze boundary b (layers 0..b-1 frozen at their pretrained "
        "values); its points are checkpoints of the fine-tuning, attacked with GMI.",
        ["fig2_tradeoff"],
        ["C2"],
        'runs = pd.read_csv(RESULTS / "runs.csv")\n'
        'sweep = runs[runs["experiments"].str.contains("boundary_sweep")]\n'
        'cols = ["natural_accuracy", "attack_accuracy_top1", "knn_distance"]\n'
        'by = ["boundary", "n_trainable_params", "epoch"]\n'
        'sweep.groupby(by)[cols].agg(["mean", "std"]).round(3)',
    ),
    "fig3_pretraining": (
        "Fig. 3: the pretraining domain",
        "The same freeze boundaries after pretraining on Fashion-MNIST (less similar to "
        "the private digits) and on the public digits 5-9 (more similar).",
        ["fig3_pretraining"],
        ["C3"],
        'runs = pd.read_csv(RESULTS / "runs.csv")\n'
        'runs[runs["experiments"].str.contains("pretraining") & runs["final"]].groupby(\n'
        '    ["boundary", "domain"]\n'
        ')[["natural_accuracy", "attack_accuracy_top1"]].agg(["mean", "std"]).round(3)',
    ),
    "fig4_first_vs_middle": (
        "Fig. 4: fine-tuning the first layers versus the middle ones",
        "Both arms also train the new head; the other layers stay frozen.",
        ["fig4_first_vs_middle"],
        ["C4"],
        'runs = pd.read_csv(RESULTS / "runs.csv")\n'
        'runs[runs["experiments"].str.contains("first_vs_middle")].groupby(\n'
        '    ["setting", "trained_layers", "n_trainable_params"]\n'
        ')[["natural_accuracy", "attack_accuracy_top1"]].agg(["mean", "std"]).round(3)',
    ),
    "fig5_fisher_along_attack": (
        "Fig. 5: the inversion Fisher at every attack iteration",
        "Layer shares of the Fisher of the identity loss CE(T(G(z)), y), recorded during "
        "the attacks' own backward passes on the fully fine-tuned target (mean over seeds).",
        ["fig5_fisher_along_attack"],
        [],
        'fisher = pd.read_csv(RESULTS / "attack_fisher.csv")\n'
        'main = fisher["domain"] == fisher["domain"].iloc[0]\n'
        'full = fisher[main & (fisher["boundary"] == 0) & (fisher["defense"] == "none")]\n'
        'full.pivot_table(index=["attack", "iteration"], columns="index", values="share").round(3)',
    ),
    "planner": (
        "The planner: recommended freeze boundary against the measured sweep",
        "`fisherlab recommend-freeze` on each seed's fully fine-tuned model (classification "
        "profile on private data, GMI inversion Fisher), and where its pick lands against "
        "the sweep's Pareto front of (natural accuracy, attack accuracy).",
        ["recommendation", "planner_pareto"],
        ["C5"],
        'pd.read_csv(RESULTS / "planner_validation.csv")',
    ),
    "fig1iv_defenses": (
        "Fig. 1-IV: TL-DMI against MID, BiDO and negative label smoothing",
        "Every defense's trade-off between natural accuracy and GMI attack accuracy on one "
        "plot (TL-DMI: one point per freeze boundary; the others: one point per strength, "
        "full fine-tuning; TL-DMI + BiDO: BiDO at a freeze boundary), then where each "
        "defense moves the classification and inversion Fisher. Needs a reproduction with "
        "the defense comparison (`--preset full`, or `quick`).",
        ["fig1iv_defenses", "defense_fisher"],
        ["C6a", "C6b"],
        'pd.read_csv(RESULTS / "defense_fisher.csv").pivot_table(\n'
        '    index=["objective", "setting"], columns="index", values="share", aggfunc="mean"\n'
        ").round(3)",
    ),
}


def notebook(title: str, text: str, figures: list[str], claims: list[str], table: str):
    """One thin notebook."""
    cells = [
        new_markdown_cell(
            f"# {title}\n\n{text}\n\nThe tables come from `fisherlab reproduce --preset default "
            "--out results/default`; this notebook only reads them (set `FISHERLAB_RESULTS` "
            "to read another run)."
        ),
        new_code_cell(SETUP),
    ]
    if "defense_fisher" in figures:
        cells.append(
            new_code_cell(
                'if not (RESULTS / "defense_fisher.csv").is_file():\n'
                "    raise FileNotFoundError(\n"
                '        f"{RESULTS} has no defense comparison: run fisherlab reproduce "\n'
                '        "--preset full --out results/default"\n'
                "    )"
            )
        )
    cells += [new_code_cell(f'plots.draw_figure("{name}", RESULTS, FIGURES);') for name in figures]
    cells.append(new_code_cell(table))
    if claims:
        cells.append(
            new_code_cell(
                f"for claim in {claims!r}:\n"
                "    row = claims.loc[claim]\n"
                '    print(f"{claim} [{row.verdict}] {row.paper}\\n  {row.metric}\\n  {row.ours}")'
            )
        )
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def main() -> None:
    """Write every notebook."""
    out = Path(__file__).resolve().parents[1] / "notebooks"
    for name, spec in NOTEBOOKS.items():
        nbformat.write(notebook(*spec), out / f"{name}.ipynb")
        print(out / f"{name}.ipynb")


if __name__ == "__main__":
    main()

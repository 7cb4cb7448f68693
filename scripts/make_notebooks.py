"""Write the thin figure notebooks of notebooks/ (run once after changing their text).

Each notebook reads a reproduction's tables (the ``RESULTS`` parameter, default
this checkout's ``results/default``), draws its figures inline with
:func:`fisherlab.plots.draw_figure` (saving them only when the ``FIGURES``
parameter names a folder) and shows the claims they bear on.

Usage: python scripts/make_notebooks.py && ruff format notebooks
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

PARAMETERS = """# parameters (papermill-style: `make figures` and scripts/run_notebooks.py set them)
RESULTS = None  # a `fisherlab reproduce --out` folder; None: this checkout's results/
FIGURES = None  # save the PNGs into this folder; None: show them here only (figures/ untouched)"""

SETUP = """from pathlib import Path

import pandas as pd

from fisherlab import plots

RESULTS = plots.results_folder(RESULTS, {runs})
claims = pd.read_csv(RESULTS / "claims.csv").set_index("claim")
print(f"results: {RESULTS}" + (f", figures saved to {Path(FIGURES)}" if FIGURES else ""))"""

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


DEFENSE_CHECK = """HAS_DEFENSES = (RESULTS / "defense_fisher.csv").is_file()
if not HAS_DEFENSES:
    print(
        f"{RESULTS} has no defense comparison, so this notebook draws nothing: run "
        "fisherlab reproduce --preset full --out results/full (tunes MID, BiDO and LS on "
        "a validation split first)"
    )"""


def notebook(title: str, text: str, figures: list[str], claims: list[str], table: str):
    """One thin notebook (the defense notebook reads ``results/full`` and may draw nothing)."""
    defenses = "defense_fisher" in figures
    run = "full" if defenses else "default"
    cells = [
        new_markdown_cell(
            f"# {title}\n\n{text}\n\nThe tables come from `fisherlab reproduce --preset {run} "
            f"--out results/{run}`; this notebook only reads them. Set `RESULTS` in the "
            "parameters cell to read another run, and `FIGURES` to save the PNGs."
        ),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell(
            SETUP.replace("{runs}", '"full", "defenses", "default"' if defenses else '"default"')
        ),
    ]
    guard = "if HAS_DEFENSES:\n    " if defenses else ""
    if defenses:
        cells.append(new_code_cell(DEFENSE_CHECK))
        table = "display(\n    " + table.replace("\n", "\n    ") + "\n)"
    cells += [
        new_code_cell(
            f'{guard}plots.draw_figure("{name}", RESULTS, FIGURES)' + ("" if guard else ";")
        )
        for name in figures
    ]
    cells.append(new_code_cell(guard + table.replace("\n", "\n    " if guard else "\n")))
    if claims:
        cells.append(
            new_code_cell(
                f"for claim in [c for c in {json.dumps(claims)} if c in claims.index]:\n"
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

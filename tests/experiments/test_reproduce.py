"""A reproduction end to end (fisherlab.experiments.reproduce): tables, resume, notebooks.

The ``smoke`` preset runs every step and table of ``quick`` on tiny data; the
claims recomputed from its tables are in ``test_claims.py``; the run itself is
the session fixture ``reproduced`` of ``tests/conftest.py``. The ``quick``
preset itself (the README's main job, about 3 minutes) runs in a test marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, full_target, read, run

from fisherlab import plots
from fisherlab.errors import FisherlabError
from fisherlab.experiments import PRESETS, reproduce
from fisherlab.models import layers, load_model

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("run_notebooks", REPO / "scripts/run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)
TABLES = [
    "runs",
    "reconstructions",
    "attack_fisher",
    "profiles",
    "layer_fisher",
    "recommendations",
    "recommendations_by_attack",
    "planner_validation",
    "planner_baselines",
    "aggregation_sensitivity",
    "second_arch_fisher",
    "reference_length",
    "claims",
    "steps",
    "defense_fisher",
]
FIGURES = [
    "fig1_layer_fisher",
    "fig2_tradeoff",
    "fig3_pretraining",
    "fig4_first_vs_middle",
    "fig5_fisher_along_attack",
    "planner_pareto",
    "recommendation",
    "fig1iv_defenses",
    "defense_fisher",
]


@pytest.mark.slow
def test_quick_preset_writes_every_table_and_claim(tmp_path):
    """The README's main job, ``quick``: the same tables as ``smoke``, every claim judged."""
    out = tmp_path / "quick"
    reproduce("quick", out, progress=False)
    for name in TABLES:
        assert not read(out, name).empty, name
    claims = read(out, "claims").set_index("claim")
    assert len(claims) >= 6
    # quick runs one seed: no interval over seeds for the seed-level claims
    assert claims.loc["C1", "verdict"] == "inconclusive (no numbers)"


def test_tables_and_config_are_written_and_no_figures(reproduced):
    for name in TABLES:
        assert not read(reproduced, name).empty, name
    config = json.loads((reproduced / "config.json").read_text())
    assert config["config"] == json.loads(json.dumps(PRESETS["smoke"].to_dict()))
    assert config["n_cached"] == 0
    # reproduce() computes; drawing is the CLI's job (fisherlab.plots.draw_all)
    assert not (reproduced / "figures").exists()


def test_runs_cover_every_experiment(reproduced):
    runs = read(reproduced, "runs")
    sweep = runs[runs["experiments"].str.contains("boundary_sweep")]
    assert sorted(sweep["boundary"].unique()) == [0, 1, 2, 3, 4, 5]
    # Fig. 2: two checkpoints (epochs 1 and 2) per boundary
    assert sweep.groupby("boundary")["epoch"].nunique().eq(2).all()
    pre = runs[runs["experiments"].str.contains("pretraining") & runs["final"]]
    assert set(pre["domain"]) == {"fashion", "mnist5k:5-9"}
    assert sorted(pre["boundary"].unique()) == [2, 4]
    fvm = runs[runs["experiments"].str.contains("first_vs_middle")]
    assert dict(zip(fvm["setting"], fvm["trained_layers"], strict=True)) == {
        "first": "0,1,5",
        "middle": "2,3,5",
    }
    assert set(runs["attack"]) == {"gmi", "kedmi", "lomma-gmi", "plgmi"}
    strong = runs[runs["attack"].isin(["lomma-gmi", "plgmi"])]
    smoke = PRESETS["smoke"]
    assert set(strong["boundary"]) == set(smoke.strong_boundaries) and strong["final"].all()
    fisher = read(reproduced, "attack_fisher")
    losses = fisher.groupby("attack")["identity_loss"].unique().map(list).to_dict()
    assert losses == {
        "gmi": ["cross-entropy"],
        "kedmi": ["cross-entropy"],
        "lomma-gmi": ["lomma"],
        "plgmi": ["max-margin"],
    }
    picks = read(reproduced, "recommendations_by_attack")
    assert set(picks["attack"]) == {"gmi", "kedmi", "lomma-gmi", "plgmi"}
    for col in ["natural_accuracy", "attack_accuracy_top1"]:
        assert runs[col].between(0, 1).all(), col
    # 5 private classes: top-5 would be 1.0 whatever the attack did, so it is left empty
    assert runs["attack_accuracy_top5"].isna().all()
    checked = runs["experiments"] == "reference_length"
    assert (runs.loc[~checked, "fd_eval_n"] == 5 * smoke.per_class).all()
    assert (runs.loc[checked, "fd_eval_n"] == 5 * smoke.reference_per_class).all()


def test_reconstructions_trace_back_to_the_runs(reproduced):
    """Every run's top-1 is the mean of its reconstructions' outcomes; counts per attack."""
    runs, recon = read(reproduced, "runs"), read(reproduced, "reconstructions")
    smoke = PRESETS["smoke"]
    outcomes = {
        step: [int(v) for v in g["correct_top1"]] for step, g in recon.groupby("attack_step")
    }
    assert set(outcomes) == set(runs["attack_step"])
    for r in runs.to_dict("records"):
        mine = outcomes[r["attack_step"]]
        assert sum(mine) / len(mine) == pytest.approx(r["attack_accuracy_top1"], abs=1e-12)
        checked = r["experiments"] == "reference_length"
        assert len(mine) == 5 * (smoke.reference_per_class if checked else smoke.per_class)
    ref = runs[runs["experiments"] == "reference_length"]
    assert sorted(ref["iterations"].unique()) == [smoke.attack_iterations, 20]
    assert sorted(ref["boundary"].unique()) == list(smoke.reference_boundaries)
    second = runs[runs["arch"] == smoke.second_arch]
    assert set(second["experiments"]) == {"second_arch"} and set(second["boundary"]) == {0}
    fisher = read(reproduced, "second_arch_fisher")
    assert set(fisher["objective"]) == {"classification", "inversion (gmi)"}
    assert fisher.groupby(["seed", "objective"])["share"].sum().to_numpy() == pytest.approx(1.0)


def test_trainable_parameters_match_the_checkpoints(reproduced):
    """|theta_C| in runs.csv equals the parameters of the trained layers, recounted."""
    runs = read(reproduced, "runs")
    for step in sorted((reproduced / "steps").glob("train-*")):
        meta = json.loads((step / "step.json").read_text())["result"]
        if "trainable_layers" not in meta or not (step / "model.pt").exists():
            continue
        model = load_model(step / "model.pt")
        recount = sum(layers(model)[i].n_params for i in meta["trainable_layers"])
        assert recount == meta["n_trainable_params"]
    main = f"boundary == 0 and defense == 'none' and arch == '{PRESETS['smoke'].arch}'"
    full = runs.query(main)["n_trainable_params"].iloc[0]
    assert full == sum(p.numel() for p in load_model(full_target(reproduced)).parameters())


def test_defense_comparison_rows_and_fisher_shares(reproduced):
    runs = read(reproduced, "runs")
    defended = runs[runs["experiments"].str.contains("defenses")]
    assert sorted(defended["setting"]) == [
        "b=4 + bido",
        "bido hsic_a1=0.05,hsic_a2=0.5",
        "ls smoothing=-0.05",
        "mid beta=0.003",
    ]
    fisher = read(reproduced, "defense_fisher")
    assert set(fisher["objective"]) == {"classification", "inversion (gmi)"}
    sums = fisher.groupby(["setting", "objective", "seed"])["share"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)
    assert "b=0" in set(fisher["setting"])  # the undefended reference


def test_cli_reuses_every_step_and_draws_the_figures(reproduced, tmp_path):
    """``fisherlab reproduce`` on finished results: nothing recomputed, every figure drawn."""
    out = tmp_path / "copy"
    shutil.copytree(reproduced, out)
    before = read(out, "runs")
    proc = run("reproduce", "--preset", "smoke", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    steps = read(out, "steps")
    assert steps["cached"].all()
    assert f"{len(steps)} steps, {len(steps)} cached, 0 s computed" in proc.stdout
    pd.testing.assert_frame_equal(read(out, "runs"), before)
    claims = read(out, "claims")
    for row in claims.itertuples():
        assert f"{row.claim} [{row.verdict}]" in proc.stdout
    for png in FIGURES:
        assert (out / "figures" / f"{png}.png").stat().st_size > 10_000, png


def test_rerun_reuses_every_step_and_resumes_a_lost_one(reproduced, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reproduced, out)
    before = read(out, "runs")
    # a table of another preset's run in the same folder (smoke tunes no defense) goes
    (out / "defense_tuning.csv").write_text("defense,rank\nmid,0\n")
    reproduce("smoke", out, progress=False)
    assert not (out / "defense_tuning.csv").exists()
    steps = read(out, "steps")
    assert steps["cached"].all()
    pd.testing.assert_frame_equal(read(out, "runs"), before)
    # An interrupted attack (no step.json yet) is redone, and only it.
    lost = out / "steps" / before["attack_step"].iloc[-1]
    (lost / "step.json").unlink()
    (lost / "attack.csv").unlink()
    reproduce("smoke", out, progress=False)
    steps = read(out, "steps")
    assert (~steps["cached"]).sum() == 1
    assert steps.loc[~steps["cached"], "key"].iloc[0] == lost.name.split("-", 1)[1]
    pd.testing.assert_frame_equal(read(out, "runs"), before)


# One notebook runs in the default suite; the others (about 20 s each) are marked slow
# to keep the default suite under 10 minutes (``make test-all`` runs them all).
@pytest.mark.parametrize(
    "notebook",
    [pytest.param(nb, marks=[pytest.mark.slow] if i else []) for i, nb in enumerate(NOTEBOOKS)],
    ids=lambda p: p.stem,
)
def test_notebook_runs_on_the_results(reproduced, notebook, tmp_path):
    """Every drawing cell shows its figure inline; PNGs are saved only when FIGURES is set.

    The default-suite notebook runs as a user would, with RESULTS only (nothing
    saved, nothing of figures/ touched); the slow ones also set FIGURES, as
    ``make figures`` does.
    """
    saving = notebook != NOTEBOOKS[0]
    parameters = {"RESULTS": str(reproduced)}
    if saving:
        parameters["FIGURES"] = str(tmp_path)
    before = {p: p.stat().st_mtime for p in (REPO / "figures").glob("*.png")}
    nb = run_notebooks.execute(notebook, parameters)
    assert bool(list(tmp_path.glob("*.png"))) == saving
    assert {p: p.stat().st_mtime for p in (REPO / "figures").glob("*.png")} == before
    drawing = [c for c in nb.cells if c.cell_type == "code" and "draw_figure(" in c.source]
    assert drawing
    for cell in drawing:
        kinds = [o.get("data", {}).keys() for o in cell.outputs]
        assert any("image/png" in k for k in kinds), cell.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.get("output_type") == "error"]
            streams = "".join(o.get("text", "") for o in cell.outputs)
            assert "IProgress" not in streams and "TqdmWarning" not in streams


def test_notebooks_find_their_results_from_anywhere(reproduced, tmp_path, monkeypatch):
    """A copied notebook finds the checkout's results; a wrong RESULTS names the fix."""
    monkeypatch.chdir(tmp_path)  # a folder with no results/ above it
    found = plots.results_folder(None, "default")
    assert found == REPO / "results" / "default"
    assert plots.results_folder(reproduced) == Path(reproduced)
    with pytest.raises(FisherlabError, match=r"holds no claims\.csv"):
        plots.results_folder(tmp_path)
    with pytest.raises(FisherlabError, match="no results/nothing"):
        plots.results_folder(None, "nothing")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--preset", "huge"], 2, "invalid choice"),
        (["--seeds", "0"], 1, "--seeds must be >= 1"),
    ],
)
def test_cli_bad_input(tmp_path, args, code, message):
    proc = run("reproduce", *args, "--out", str(tmp_path / "r"))  # in-process: no torch start-up
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_tuned_defense_grid_replaces_the_given_one(tmp_path):
    """With defense_candidates, the compared strengths are the tuned ones, and say so."""
    cfg = replace(
        PRESETS["smoke"],
        second_arch=None,
        reference_iterations=None,
        tl_bido_boundaries=(),
        defense_candidates=(("mid", ((("beta", 0.001),), (("beta", 0.01),), (("beta", 1.0),))),),
        tune_seeds=(0,),
    )
    tables = reproduce(cfg, tmp_path, progress=False)
    tuning = tables["defense_tuning"]
    chosen = sorted(tuning.loc[tuning["chosen"], "beta"])
    defended = tables["runs"].query("defense == 'mid'")
    assert sorted({float(s.split("=")[1]) for s in defended["setting"]}) == chosen
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    assert [g[1][0][1] for g in config["defense_grid"]] == chosen
    assert (tmp_path / "defense_tuning.csv").is_file()

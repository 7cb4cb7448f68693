"""The quick reproduction end to end: tables, independent rechecks, resume, notebooks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from fisherlab.checkpoint import load_model
from fisherlab.claims import verdict
from fisherlab.layers import layers
from fisherlab.reproduce import PRESETS, reproduce
from nbclient import NotebookClient

from fisherlab.planner import recommend_freeze

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
TABLES = [
    "runs",
    "attack_fisher",
    "profiles",
    "layer_fisher",
    "recommendations",
    "planner_validation",
    "claims",
    "steps",
    "defense_fisher",
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    """The quick preset, run once (about 3 minutes on 2 cores)."""
    out = tmp_path_factory.mktemp("quick")
    reproduce("quick", out, progress=False)
    return out


def read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv")


def test_tables_config_and_figures_are_written(quick):
    for name in TABLES:
        assert not read(quick, name).empty, name
    config = json.loads((quick / "config.json").read_text())
    assert config["config"] == json.loads(json.dumps(PRESETS["quick"].to_dict()))
    assert config["n_cached"] == 0
    for png in [
        "fig1_layer_fisher",
        "fig2_tradeoff",
        "fig3_pretraining",
        "fig4_first_vs_middle",
        "fig5_fisher_along_attack",
        "planner_pareto",
        "recommendation",
        "fig1iv_defenses",
        "defense_fisher",
    ]:
        assert (quick / "figures" / f"{png}.png").stat().st_size > 10_000, png


def test_runs_cover_every_experiment(quick):
    runs = read(quick, "runs")
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
    assert set(runs["attack"]) == {"gmi", "kedmi"}
    for col in ["natural_accuracy", "attack_accuracy_top1", "attack_accuracy_top5"]:
        assert runs[col].between(0, 1).all(), col
    assert (runs["attack_accuracy_top5"] >= runs["attack_accuracy_top1"]).all()


def test_trainable_parameters_match_the_checkpoints(quick):
    """|theta_C| in runs.csv equals the parameters of the trained layers, recounted."""
    runs = read(quick, "runs")
    for step in sorted((quick / "steps").glob("train-*")):
        meta = json.loads((step / "step.json").read_text())["result"]
        if "trainable_layers" not in meta or not (step / "model.pt").exists():
            continue
        model = load_model(step / "model.pt")
        recount = sum(layers(model)[i].n_params for i in meta["trainable_layers"])
        assert recount == meta["n_trainable_params"]
    full = runs.query("boundary == 0 and defense == 'none'")["n_trainable_params"].iloc[0]
    assert full == sum(p.numel() for p in load_model(_full_target(quick)).parameters())


def _full_target(quick: Path) -> Path:
    runs = read(quick, "runs")
    full = runs.query("boundary == 0 and domain == 'fashion' and defense == 'none'")
    step = full["attack_step"].iloc[0]
    config = json.loads((quick / "steps" / step / "step.json").read_text())["config"]
    key = config["target"].split("@")[0]
    return quick / "steps" / f"train-{key}" / "model.pt"


def test_planner_pick_recomputed_independently(quick):
    """Recommendations from the raw profile and attack Fisher, and the Pareto front by hand."""
    profiles, fisher = read(quick, "profiles"), read(quick, "attack_fisher")
    recs, validation = read(quick, "recommendations"), read(quick, "planner_validation")
    runs = read(quick, "runs")
    for seed, rec in recs.groupby("seed"):
        full = "boundary == 0 and domain == 'fashion' and defense == 'none'"
        cls = profiles.query(full)
        inv = fisher.query(full + " and attack == 'gmi'")
        again = recommend_freeze(cls[cls["seed"] == seed], inv[inv["seed"] == seed])
        assert again.boundary == int(rec["pick"].iloc[0])
        pd.testing.assert_series_equal(
            again.table["inversion_share"], rec["inversion_share"].reset_index(drop=True)
        )
        # The Pareto front, by hand: boundaries no other boundary beats on both axes.
        sweep = runs[
            runs["experiments"].str.contains("boundary_sweep")
            & runs["final"]
            & (runs["attack"] == "gmi")
            & (runs["seed"] == seed)
        ].set_index("boundary")
        acc, atk = sweep["natural_accuracy"], sweep["attack_accuracy_top1"]
        front = [
            b
            for b in acc.index
            if not any(
                acc[o] >= acc[b] and atk[o] <= atk[b] and (acc[o] > acc[b] or atk[o] < atk[b])
                for o in acc.index
            )
        ]
        row = validation[validation["seed"] == seed].iloc[0]
        assert str(row["front"]) == ",".join(map(str, front))
        pick = int(row["pick"])
        assert bool(row["on_front"]) == (pick in front)
        assert row["accuracy_drop"] == pytest.approx(acc[0] - acc[pick])


def test_claims_trace_back_to_the_runs(quick):
    claims = read(quick, "claims").set_index("claim")
    assert list(claims.index) == ["C1", "C2", "C3", "C4", "C5", "C6a", "C6b"]
    runs = read(quick, "runs")
    fvm = runs[runs["experiments"].str.contains("first_vs_middle")].set_index("setting")
    c4 = json.loads(claims.loc["C4", "values"])
    first, middle = (
        fvm.loc["first", "attack_accuracy_top1"],
        fvm.loc["middle", "attack_accuracy_top1"],
    )
    assert c4 == [pytest.approx(first - middle, abs=1e-6)]
    lf = read(quick, "layer_fisher")
    depth = {
        obj: (g["index"] * g["share"]).sum() / g["index"].max()
        for obj, g in lf.groupby("objective")
    }
    c1 = json.loads(claims.loc["C1", "values"])
    assert c1 == [pytest.approx(depth["classification"] - depth["inversion (gmi)"], abs=1e-6)]
    assert (claims["verdict"] == "inconclusive (one seed)").all()


def test_defense_comparison_rows_and_c6_recomputed(quick):
    runs = read(quick, "runs")
    defended = runs[runs["experiments"].str.contains("defenses")]
    assert sorted(defended["setting"]) == [
        "b=4 + bido",
        "bido hsic_a1=0.05,hsic_a2=0.5",
        "ls smoothing=-0.05",
        "mid beta=0.003",
    ]
    tl = runs[runs["experiments"].str.contains("boundary_sweep") & runs["final"]]
    tl = tl[tl["attack"] == "gmi"]
    plain = defended[~defended["setting"].str.contains("+", regex=False)]
    beaten = [
        bool(
            (
                (tl["natural_accuracy"] >= r.natural_accuracy)
                & (tl["attack_accuracy_top1"] <= r.attack_accuracy_top1)
            ).any()
        )
        for r in plain.itertuples()
    ]
    claims = read(quick, "claims").set_index("claim")
    assert json.loads(claims.loc["C6a", "values"]) == [pytest.approx(sum(beaten) / 3 - 0.5)]
    combined = defended[defended["setting"] == "b=4 + bido"].iloc[0]
    b4 = tl[tl["boundary"] == 4].iloc[0]
    gain = b4["attack_accuracy_top1"] - combined["attack_accuracy_top1"]
    assert json.loads(claims.loc["C6b", "values"]) == [pytest.approx(gain, abs=1e-6)]
    fisher = read(quick, "defense_fisher")
    assert set(fisher["objective"]) == {"classification", "inversion (gmi)"}
    sums = fisher.groupby(["setting", "objective", "seed"])["share"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)
    assert "b=0" in set(fisher["setting"])  # the undefended reference


def test_verdicts():
    assert verdict([0.1, 0.2, 0.3]) == "holds"
    assert verdict([-0.1, 0.0, -0.3]) == "does not hold"
    assert verdict([0.1, -0.2, 0.3]) == "inconclusive"
    assert verdict([float("nan"), 0.2]) == "inconclusive"


def test_rerun_reuses_every_step_and_resumes_a_lost_one(quick, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(quick, out)
    before = read(out, "runs")
    reproduce("quick", out, progress=False, figures=False)
    steps = read(out, "steps")
    assert steps["cached"].all()
    pd.testing.assert_frame_equal(read(out, "runs"), before)
    # An interrupted attack (no step.json yet) is redone, and only it.
    lost = out / "steps" / before["attack_step"].iloc[-1]
    (lost / "step.json").unlink()
    (lost / "attack.csv").unlink()
    reproduce("quick", out, progress=False, figures=False)
    steps = read(out, "steps")
    assert (~steps["cached"]).sum() == 1
    assert steps.loc[~steps["cached"], "key"].iloc[0] == lost.name.split("-", 1)[1]
    pd.testing.assert_frame_equal(read(out, "runs"), before)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_quick_results(quick, notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_RESULTS", str(quick))
    monkeypatch.setenv("FISHERLAB_FIGURES", str(tmp_path))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": notebook.parent}}
    ).execute()
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert drawn, "the notebook saved no figure"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.get("output_type") == "error"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--preset", "huge"], 2, "invalid choice"),
        (["--seeds", "0"], 1, "--seeds must be >= 1"),
    ],
)
def test_cli_bad_input(tmp_path, args, code, message):
    proc = subprocess.run(
        [sys.executable, "-m", "fisherlab", "reproduce", *args, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


def test_recommend_freeze_computes_the_profiles_from_a_checkpoint(quick, tmp_path):
    import numpy as np

    from fisherlab.fisher import profile

    target = _full_target(quick)
    gan = next(
        d / "gan.pt"
        for d in (quick / "steps").glob("gan-*")
        if json.loads((d / "step.json").read_text())["config"]["kind"] == "gmi"
    )
    out = tmp_path / "plan"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fisherlab",
            "recommend-freeze",
            str(target),
            "--data",
            "mnist5k:0-4",
            "--generator",
            str(gan),
            "--iterations",
            "10",
            "--per-class",
            "2",
            "--fisher-every",
            "5",
            "--max-samples",
            "128",
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation:" in proc.stdout
    cls, inv = pd.read_csv(out / "classification.csv"), pd.read_csv(out / "inversion.csv")
    assert sorted(inv["iteration"].unique()) == [1, 5, 10]
    table = pd.read_csv(out / "recommendation.csv")
    assert table.loc[table["chosen"], "boundary"].item() == recommend_freeze(cls, inv).boundary
    again = profile(load_model(target), "mnist5k:0-4", max_samples=128)
    np.testing.assert_allclose(cls["trace"], again["trace"], rtol=1e-5)

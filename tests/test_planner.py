"""The planner against a brute-force recomputation, its errors, and its CLI."""

from __future__ import annotations

import itertools
import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import assert_one_line_error, full_target, run

from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile
from fisherlab.models import build_model, layers, load_model
from fisherlab.planner import (
    AGGREGATIONS,
    layer_shares,
    read_profile,
    recommend_freeze,
    recommended_boundary,
    write_recommendation,
)

NAMES = ["features.0", "features.3", "features.7", "features.11", "fc", "head"]
SIZES = [384, 18624, 74112, 147840, 295168, 1285]


def frame(traces, names=NAMES, sizes=SIZES, **extra) -> pd.DataFrame:
    n = len(traces)
    return pd.DataFrame(
        {"index": range(n), "name": names[:n], "n_params": sizes[:n], "trace": traces, **extra}
    )


def attack_frame(per_iteration: np.ndarray) -> pd.DataFrame:
    """An attack's recorded Fisher: rows (restart, iteration, layer)."""
    rows = []
    for (r, it), traces in zip(
        itertools.product(range(2), range(1, 4)), per_iteration, strict=True
    ):
        rows.append(frame(traces).assign(restart=r, iteration=it))
    return pd.concat(rows, ignore_index=True)


def brute_force(cls: np.ndarray, inv: np.ndarray, lam: float, budget: float):
    """The rule written out with plain loops in float64."""
    cls = cls / cls.sum()
    inv = inv / inv.sum()
    best, pick, table = -np.inf, None, []
    for b in range(len(cls)):
        c = sum(float(cls[k]) for k in range(b))
        i = sum(float(inv[k]) for k in range(b))
        score = i - lam * c
        table.append((c, i, score))
        if c <= budget + 1e-12 and score >= best - 1e-12:
            best, pick = max(best, score), b
    return pick, np.array(table)


@pytest.mark.parametrize("seed", range(6))
def test_pick_and_table_match_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    cls_traces = rng.gamma(1.0, size=n)
    inv_iter = rng.gamma(1.0, size=(6, n))
    lam = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
    budget = float(rng.choice([1.0, 0.5, 0.2]))
    rec = recommend_freeze(frame(cls_traces), attack_frame(inv_iter), lam=lam, budget=budget)
    per_step_shares = [row / row.sum() for row in inv_iter]
    pick, table = brute_force(cls_traces, np.mean(per_step_shares, axis=0), lam, budget)
    assert rec.boundary == pick
    np.testing.assert_allclose(rec.table["classification_share"], table[:, 0], atol=1e-12)
    np.testing.assert_allclose(rec.table["inversion_share"], table[:, 1], atol=1e-12)
    np.testing.assert_allclose(rec.table["score"], table[:, 2], atol=1e-12)
    assert rec.n_trainable_params == sum(SIZES[pick:n])
    assert rec.table["chosen"].sum() == 1
    assert bool(rec.table.loc[pick, "chosen"])


def _loop_shares(per_step: np.ndarray, keep) -> list[float]:
    """Mean over the kept steps of each step's shares, with plain loops."""
    steps = [(r, it) for r, it in itertools.product(range(2), range(1, 4))]
    kept = [row for (r, it), row in zip(steps, per_step, strict=True) if keep(it)]
    n = per_step.shape[1]
    return [sum(float(row[k]) / float(sum(row)) for row in kept) / len(kept) for k in range(n)]


def test_inversion_profile_averages_each_steps_shares():
    per_it = np.array([[1.0, 1.0, 0.0], [3.0, 1.0, 0.0], [2.0, 4.0, 6.0]] * 2)
    shares = layer_shares(attack_frame(per_it)).set_index("index")["share"]
    np.testing.assert_allclose(shares.to_numpy(), _loop_shares(per_it, lambda it: True), 1e-12)


def test_traces_rule_lets_the_largest_step_decide():
    per_it = np.array([[1000.0, 1.0, 1.0], [1.0, 3.0, 6.0], [1.0, 3.0, 6.0]] * 2)
    old = layer_shares(attack_frame(per_it), aggregate="traces")["share"].to_numpy()
    expected = per_it.mean(axis=0) / per_it.mean(axis=0).sum()
    np.testing.assert_allclose(old, expected, atol=1e-12)
    new = layer_shares(attack_frame(per_it))["share"].to_numpy()
    assert old[0] > 0.9 and new[0] < 0.4  # one big step dominates only the traces rule


def test_late_rule_drops_the_first_tenth_of_each_restart():
    per_it = np.array([[50.0, 1.0, 1.0], [1.0, 3.0, 6.0], [2.0, 2.0, 1.0]] * 2)
    frame_ = attack_frame(per_it)
    frame_["iteration"] = frame_["iteration"].map({1: 1, 2: 10, 3: 20})  # 1 <= 0.1 * 20
    late = layer_shares(frame_, aggregate="late")
    np.testing.assert_allclose(late["share"], _loop_shares(per_it, lambda it: it > 1), atol=1e-12)
    assert late["n_steps"].iloc[0] == 4


def test_one_step_profiles_agree_under_every_rule():
    cls = frame([1.0, 2.0, 3.0])
    got = [layer_shares(cls, aggregate=a)["share"].to_numpy() for a in AGGREGATIONS]
    for g in got:
        np.testing.assert_allclose(g, [1 / 6, 2 / 6, 3 / 6], atol=1e-12)


def test_unknown_aggregation_is_refused():
    with pytest.raises(FisherlabError, match="unknown aggregation 'median'"):
        layer_shares(frame([1.0, 2.0]), aggregate="median")


def test_documented_behaviour_of_lam_and_budget():
    cls = frame([1.0, 1.0, 1.0, 1.0, 3.0, 3.0])  # shares 0.1 0.1 0.1 0.1 0.3 0.3
    inv = frame([3.0, 3.0, 2.0, 1.0, 0.5, 0.5])  # shares 0.3 0.3 0.2 0.1 0.05 0.05
    # scores 0, .2, .4, .5, .5, .25: layer 3 adds 0.1 to both shares, the tie goes to b = 4
    assert recommend_freeze(cls, inv).boundary == 4
    assert recommend_freeze(cls, inv, lam=0.0).boundary == 5  # freeze all but the head
    assert recommend_freeze(cls, inv, lam=0.0, budget=0.25).boundary == 2
    assert recommend_freeze(cls, inv, lam=5.0).boundary == 0
    rec = recommend_freeze(cls, inv)
    assert "freeze layers 0-3" in rec.explanation and "layer 4 (fc)" in rec.explanation
    payload = json.loads(json.dumps(rec.to_dict()))
    assert payload["boundary"] == 4 and payload["frozen_layers"] == [0, 1, 2, 3]
    assert len(payload["table"]) == 6


def test_no_freezing_is_explained():
    rec = recommend_freeze(frame([5.0, 1.0, 1.0]), frame([1.0, 1.0, 5.0]))
    assert rec.boundary == 0
    assert "fine-tune all 3 layers" in rec.explanation


@pytest.mark.parametrize(
    ("cls", "inv", "kwargs", "message"),
    [
        (frame([]), frame([1.0, 2.0]), {}, "classification profile is empty"),
        (frame([1.0, 2.0]), pd.DataFrame(), {}, "inversion profile is empty"),
        (frame([1.0, 2.0, 3.0]), frame([1.0, 2.0]), {}, "different layer maps"),
        (
            frame([1.0, 2.0]),
            frame([1.0, 2.0], names=["a", "b"]),
            {},
            "different layer maps (first difference",
        ),
        (frame([1.0, 2.0]), frame([1.0, 2.0], sizes=[384, 7]), {}, "different layer maps"),
        (frame([1.0, 2.0]), frame([1.0, 2.0]), {"budget": 1.5}, "budget must be in [0, 1]"),
        (frame([1.0, 2.0]), frame([1.0, 2.0]), {"budget": -0.1}, "budget must be in [0, 1]"),
        (frame([1.0, 2.0]), frame([1.0, 2.0]), {"lam": -1.0}, "lam must be >= 0"),
        (frame([0.0, 0.0]), frame([1.0, 2.0]), {}, "trace is zero"),
        (frame([1.0, 2.0]).drop(columns="trace"), frame([1.0, 2.0]), {}, "lacks the columns"),
    ],
)
def test_bad_input_is_a_clear_error(cls, inv, kwargs, message):
    with pytest.raises(FisherlabError) as info:
        recommend_freeze(cls, inv, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_profiles_of_different_models_are_refused():
    a, b = frame([1.0, 2.0]), frame([1.0, 2.0])
    a.attrs["model"], b.attrs["model"] = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
    with pytest.raises(FisherlabError, match="different models"):
        recommend_freeze(a, b)
    b.attrs["model"] = "aaaaaaaaaaaa"
    assert recommend_freeze(a, b).boundary in (0, 1)


def write_profile_dir(path, traces, fingerprint, sidecar="run.json", name="profile.csv"):
    path.mkdir(parents=True)
    frame(traces).to_csv(path / name, index=False)
    key = "model" if sidecar == "run.json" else "target"
    (path / sidecar).write_text(json.dumps({key: {"fingerprint": fingerprint}}))
    return path


def test_read_profile_takes_the_fingerprint_from_the_sidecar(tmp_path):
    d = write_profile_dir(tmp_path / "p", [1.0, 2.0], "0123456789ab")
    assert read_profile(d).attrs["model"] == "0123456789ab"
    a = write_profile_dir(tmp_path / "a", [1.0, 2.0], "ffffffffffff", "summary.json", "fisher.csv")
    assert read_profile(a / "fisher.csv").attrs["model"] == "ffffffffffff"
    with pytest.raises(FisherlabError, match="different models"):
        recommend_freeze(d, a)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "fisher.csv").write_text("\n")
    with pytest.raises(FisherlabError, match="--fisher-every"):
        read_profile(tmp_path / "empty")
    with pytest.raises(FisherlabError, match=r"neither profile\.csv nor fisher\.csv"):
        read_profile(tmp_path)


def cli(*args: str) -> subprocess.CompletedProcess:
    return run("recommend-freeze", *args)


def test_cli_writes_table_json_plot_and_explains(tmp_path):
    cls = write_profile_dir(tmp_path / "cls", [1.0, 1.0, 1.0, 1.0, 3.0, 3.0], "0123456789ab")
    inv = write_profile_dir(
        tmp_path / "inv",
        [3.0, 3.0, 2.0, 1.0, 0.5, 0.5],
        "0123456789ab",
        "summary.json",
        "fisher.csv",
    )
    out = tmp_path / "plan"
    proc = cli("--classification", str(cls), "--inversion", str(inv), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation: freeze layers 0-3" in proc.stdout
    table = pd.read_csv(out / "recommendation.csv")
    assert table.loc[table["chosen"], "boundary"].tolist() == [4]
    assert json.loads((out / "recommendation.json").read_text())["n_trainable_params"] == sum(
        SIZES[4:]
    )
    assert (out / "recommendation.png").stat().st_size > 10_000
    proc = cli("--classification", str(cls), "--inversion", str(inv), "--json", "--lam", "0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["boundary"] == 5


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "2"], "budget must be in [0, 1]"),
        (["--lam", "-1"], "lam must be >= 0"),
        (["--wrong-map"], "different layer maps"),
        (["--other-model"], "different models"),
        ([], "give --classification and --inversion"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, extra, message):
    cls = write_profile_dir(tmp_path / "cls", [1.0, 2.0, 3.0], "0123456789ab")
    inv = write_profile_dir(tmp_path / "inv", [1.0, 2.0, 3.0], "0123456789ab")
    args = ["--classification", str(cls), "--inversion", str(inv)]
    if extra == ["--wrong-map"]:
        frame([1.0, 2.0]).to_csv(inv / "profile.csv", index=False)
        extra = []
    if extra == ["--other-model"]:
        (inv / "run.json").write_text(json.dumps({"model": {"fingerprint": "ffffffffffff"}}))
        extra = []
    if message.startswith("give"):
        args = []
    out = tmp_path / "plan"
    proc = cli(*args, *extra, "--out", str(out))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fisherlab: error:"), proc.stderr
    assert message in lines[0]
    assert not out.exists()


def test_cli_computes_the_profiles_from_a_checkpoint(reproduced, tmp_path):
    """``recommend-freeze TARGET --data --generator``: the smoke run's target and GMI prior."""
    target = full_target(reproduced)
    gan = next(
        d / "gan.pt"
        for d in (reproduced / "steps").glob("gan-*")
        if json.loads((d / "step.json").read_text())["config"]["kind"] == "gmi"
    )
    out = tmp_path / "plan"
    proc = cli(
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
    )
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation:" in proc.stdout
    cls, inv = pd.read_csv(out / "classification.csv"), pd.read_csv(out / "inversion.csv")
    assert sorted(inv["iteration"].unique()) == [1, 5, 10]
    table = pd.read_csv(out / "recommendation.csv")
    assert table.loc[table["chosen"], "boundary"].item() == recommend_freeze(cls, inv).boundary
    again = profile(load_model(target), "mnist5k:0-4", max_samples=128)
    np.testing.assert_allclose(cls["trace"], again["trace"], rtol=1e-5)


# --------------------------------------------------------------------------- plans drive training
def _plan_for(model, tmp_path, inversion_first: bool = True):
    """A saved recommendation for ``model``'s layer map (inversion Fisher in the first layers)."""
    found = layers(model)
    n = len(found)
    cls = [1.0] * n
    inv = [10.0 if (i < n // 2) == inversion_first else 0.1 for i in range(n)]
    names, sizes = [x.name for x in found], [x.n_params for x in found]
    rec = recommend_freeze(frame(cls, names, sizes), frame(inv, names, sizes))
    write_recommendation(rec, tmp_path / "plan")
    return rec, tmp_path / "plan"


def test_recommended_boundary_reads_the_plan_and_checks_the_model(pretrained, tmp_path):
    model = load_model(pretrained)
    rec, plan = _plan_for(model, tmp_path)
    assert rec.boundary > 0
    assert recommended_boundary(plan) == rec.boundary
    assert recommended_boundary(plan / "recommendation.json", model) == rec.boundary
    other = build_model("eval_cnn", num_classes=10)
    with pytest.raises(FisherlabError, match="plan on the model you train"):
        recommended_boundary(plan, other)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no plan"), ("{", "not JSON"), ('{"boundary": "3"}', "not a fisherlab recommendation")],
)
def test_a_bad_plan_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "recommendation.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(FisherlabError, match=message):
        recommended_boundary(path)


def test_train_freezes_the_boundary_a_plan_chose(pretrained, tmp_path):
    rec, plan = _plan_for(load_model(pretrained), tmp_path)
    out = tmp_path / "ft.pt"
    args = ["--init", str(pretrained), "--data", "mnist5k:0-4", "--epochs", "1"]
    proc = run(
        "train",
        *args,
        "--max-train-samples",
        "128",
        "--freeze-boundary-from",
        str(plan),
        "--out",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "ft.run.json").read_text())
    assert record["frozen_layers"] == list(range(rec.boundary))
    assert f"freeze boundary {rec.boundary}" in proc.stderr
    both = run(
        "train",
        *args,
        "--freeze-boundary",
        "2",
        "--freeze-boundary-from",
        str(plan),
        "--out",
        str(tmp_path / "x.pt"),
    )
    assert_one_line_error(both, 1, "give one of --freeze-boundary")
    assert not (tmp_path / "x.pt").exists()


def test_a_table_of_several_models_is_refused_not_averaged():
    """profiles.csv or attack_fisher.csv of a reproduction hold many models: no silent mean."""
    one = frame([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    table = pd.concat([one.assign(seed=0), one.assign(seed=1, trace=one["trace"] * 2)])
    with pytest.raises(FisherlabError, match="they differ in seed"):
        layer_shares(table, "classification")
    steps = attack_frame(np.ones((6, 6)))
    mixed = pd.concat([steps.assign(setting="b=0"), steps.assign(setting="b=4")])
    with pytest.raises(FisherlabError, match="repeated rows per recorded step and layer"):
        recommend_freeze(one, mixed)
    # one model's rows still pass, whatever extra columns they carry
    assert layer_shares(table[table["seed"] == 1], "classification")["share"].sum() == (
        pytest.approx(1.0)
    )

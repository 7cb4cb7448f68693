"""``fisherlab compare``: one table of runs, differences against Newcombe's interval."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from helpers import assert_one_line_error, run

from fisherlab.data.chance import wilson_interval
from fisherlab.errors import FisherlabError
from fisherlab.experiments.compare import COMPARE_COLUMNS, compare_runs


def _attack(folder, accuracy, n, warnings=()):
    folder.mkdir(parents=True)
    summary = {
        "attack_accuracy_top1": accuracy,
        "n_reconstructions": n,
        "config": {"attack": "gmi", "iterations": 100, "per_class": n // 5, "seed": 0},
        "warnings": list(warnings),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _train(path, accuracy, n):
    record = {
        "config": {"arch": None, "data": "mnist5k:0-4", "epochs": 5, "defense": "none"},
        "final_natural_accuracy": accuracy,
        "test_samples": n,
        "frozen_layers": [0, 1],
        "n_trainable_params": 1000,
    }
    path.with_name(path.stem + ".run.json").write_text(json.dumps(record))
    path.write_bytes(b"")
    return path


def test_each_run_is_compared_with_the_first_of_its_kind(tmp_path):
    a = _attack(tmp_path / "a", 0.80, 100)
    b = _attack(tmp_path / "b", 0.60, 100, ["attack accuracy is ..."])
    c = _attack(tmp_path / "c", 0.75, 100)
    t1 = _train(tmp_path / "t1.pt", 0.99, 500)
    t2 = _train(tmp_path / "t2.pt", 0.98, 500)
    table = compare_runs([a, t1, b, c / "summary.json", t2])
    assert list(table.columns) == COMPARE_COLUMNS
    assert table["baseline"].tolist() == [True, True, False, False, False]
    row_b = table.iloc[2]
    assert row_b["difference"] == pytest.approx(-0.20)
    # Newcombe's interval from the two Wilson intervals, by hand
    l1, u1 = wilson_interval(60, 100)
    l2, u2 = wilson_interval(80, 100)
    assert row_b["difference_low"] == pytest.approx(-0.2 - math.hypot(0.6 - l1, u2 - 0.8))
    assert row_b["difference_high"] == pytest.approx(-0.2 + math.hypot(u1 - 0.6, 0.8 - l2))
    assert not row_b["within_noise"]
    assert table.iloc[3]["within_noise"]  # 0.75 vs 0.80 on 100 each
    assert table.iloc[4]["within_noise"]  # 0.98 vs 0.99 on 500 each
    assert table.iloc[4]["kind"] == "train" and table.iloc[4]["n"] == 500
    assert "attack accuracy" in row_b["warnings"]


def test_cli_prints_writes_and_refuses(tmp_path):
    a = _attack(tmp_path / "a", 0.8, 100)
    b = _attack(tmp_path / "b", 0.78, 100)
    proc = run("compare", str(a), str(b), "--out", str(tmp_path / "c.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 differences" in proc.stdout
    assert len(pd.read_csv(tmp_path / "c.csv")) == 2
    missing = run("compare", str(tmp_path / "nothing"))
    assert_one_line_error(missing, 1, "no run at")
    (tmp_path / "x.json").write_text("[1]")
    with pytest.raises(FisherlabError, match="not a run record"):
        compare_runs([tmp_path / "x.json"])

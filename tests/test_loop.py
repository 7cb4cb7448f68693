"""``fisherlab.defend``: the TL-DMI loop, checked against its own steps read back by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import assert_one_line_error, run

from fisherlab import defend, load_model
from fisherlab.errors import FisherlabError
from fisherlab.experiments.executors import RayExecutor
from fisherlab.models.layers import layers
from fisherlab.planner import recommend_freeze, recommended_boundary

TINY = {
    "finetune_epochs": 1,
    "finetune_samples": 256,
    "eval_epochs": 1,
    "gan_epochs": 1,
    "gan_samples": 256,
    "iterations": 6,
    "per_class": 2,
    "fisher_every": 3,
    "profile_samples": 64,
    "seeds": (0, 1),
    "compare_boundaries": (5,),
}


@pytest.fixture(scope="module")
def defended(pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("defend") / "d"
    report = defend(
        pretrained,
        private="mnist5k:0-4",
        public="mnist5k:5-9",
        out=out,
        progress=False,
        **TINY,
    )
    return report, out


def test_the_report_is_the_steps_read_back(defended, pretrained):
    report, out = defended
    table = pd.read_csv(out / "report.csv")
    recon = pd.read_csv(out / "reconstructions.csv")
    assert set(table["model"]) >= {"reference", "defended"}
    assert table.loc[table["model"] == "reference", "boundary"].item() == 0
    for row in table.itertuples():
        rows = recon[recon["model"] == row.model]
        assert len(rows) == row.n_reconstructions == 2 * 5 * len(TINY["seeds"])
        per_seed = rows.groupby("seed")["correct_top1"].mean()
        assert row.attack_accuracy == pytest.approx(per_seed.mean(), abs=1e-12)
        assert row.attack_low <= row.attack_accuracy <= row.attack_high
        assert row.chance == pytest.approx(0.2)
    # the plan is the planner's answer on the profiles the report kept
    plan = out / "recommendation"
    again = recommend_freeze(
        pd.read_csv(plan / "classification.csv"), pd.read_csv(plan / "inversion.csv")
    )
    assert again.boundary == report.boundary == recommended_boundary(plan)
    # the verdict's effect: reference minus defended, per seed, averaged
    if report.boundary != 0:
        by = recon.groupby(["model", "seed"])["correct_top1"].mean()
        diff = np.mean([by["reference", s] - by["defended", s] for s in TINY["seeds"]])
        assert report.removed["effect"] == pytest.approx(diff, abs=1e-12)
    record = json.loads((out / "report.json").read_text())
    assert record["boundary"] == report.boundary
    assert record["verdict"] == report.verdict
    assert (out / "defend.png").stat().st_size > 0


@pytest.mark.slow  # about 15 s; the default suite keeps Ray's graph tests (test_executors.py)
def test_defend_on_ray_writes_the_serial_report(defended, pretrained, tmp_path, ray_executor):
    """Three batches on Ray, each step with this process's thread count, against the serial run.

    A step that asks for as many CPUs as this process has threads computes as
    the serial steps did (CPU numbers depend on the thread count).
    """
    threads = torch.get_num_threads()
    whole = {k: {"num_cpus": threads} for k in ("train", "gan", "attack", "distill", "profile")}
    ray_executor._connect()  # the session's instance; this executor only asks differently
    runs = {"serial": defended[1], "ray": tmp_path / "ray"}
    defend(
        pretrained,
        private="mnist5k:0-4",
        public="mnist5k:5-9",
        out=runs["ray"],
        progress=False,
        executor=RayExecutor(resources=whole),
        **TINY,
    )
    for table in ("report.csv", "reconstructions.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(runs["serial"] / table), pd.read_csv(runs["ray"] / table), check_exact=True
        )
    serial, on_ray = (json.loads((runs[n] / "report.json").read_text()) for n in ("serial", "ray"))
    assert serial["verdict"] == on_ray["verdict"] and serial["boundary"] == on_ray["boundary"]
    assert [s["key"] for s in serial["steps"]] == [s["key"] for s in on_ray["steps"]]
    assert on_ray["executor"]["name"] == "ray" and serial["executor"] == {"name": "local"}


def test_the_defended_checkpoint_froze_the_recommended_layers(defended, pretrained):
    report, out = defended
    pre, dfd = load_model(pretrained), load_model(out / "defended.pt")
    pre_state, dfd_state = pre.state_dict(), dfd.state_dict()
    for layer in layers(dfd)[:-1]:
        same = all(torch.equal(pre_state[k], dfd_state[k]) for k in layer.params)
        assert same == (layer.index < report.boundary), layer


def test_a_rerun_reuses_every_step(defended, pretrained):
    report, out = defended
    again = defend(
        pretrained, private="mnist5k:0-4", public="mnist5k:5-9", out=out, progress=False, **TINY
    )
    record = json.loads((out / "report.json").read_text())
    assert all(step["cached"] for step in record["steps"])
    pd.testing.assert_frame_equal(again.table, report.table)


def test_bad_settings_are_refused_before_any_step(pretrained, tmp_path):
    with pytest.raises(FisherlabError, match="unknown settings"):
        defend(pretrained, private="mnist5k:0-4", public="mnist5k:5-9", out=tmp_path, epochs=2)
    with pytest.raises(FisherlabError, match="boundary"):
        defend(
            pretrained,
            private="mnist5k:0-4",
            public="mnist5k:5-9",
            out=tmp_path / "x",
            compare_boundaries=(9,),
        )
    for attack in ("lomma-gmi", "plgmi"):  # surrogates or a GAN per attacked model: refused
        with pytest.raises(FisherlabError, match=f"defend runs gmi, kedmi, whitebox: {attack}"):
            defend(
                pretrained,
                private="mnist5k:0-4",
                public="mnist5k:5-9",
                out=tmp_path / "x",
                attack=attack,
            )
    assert not (tmp_path / "x").exists()


def test_a_chance_level_model_is_warned_about(tmp_path):
    """A model that learnt nothing (lr 1e-9): one warning line, and ``warnings`` in run.json."""
    out = tmp_path / "chance.pt"
    proc = run(
        "train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--epochs", "1", "--lr", "1e-9",
        "--max-train-samples", "64", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "chance.run.json").read_text())
    assert record["final_natural_accuracy"] < 0.4
    assert len(record["warnings"]) == 1 and "near chance" in record["warnings"][0]
    assert "fisherlab: warning: the trained model has natural accuracy" in proc.stderr
    # the planner says so too, from the accuracy the checkpoint records
    profiled = run("profile", str(out), "--data", "mnist5k:0-4", "--max-samples", "32",
                   "--out", str(tmp_path / "p"), "--quiet")  # fmt: skip
    assert profiled.returncode == 0, profiled.stderr
    assert "near chance" in profiled.stderr


def test_cli_wrong_inputs_are_one_line_and_leave_nothing(tmp_path, pretrained):
    out = tmp_path / "d"
    common = ["--private", "mnist5k:0-4", "--public", "mnist5k:5-9", "--out", str(out)]
    missing = run("defend", str(tmp_path / "nothing.pt"), *common)
    assert_one_line_error(missing, 1, "does not exist")
    bad = run("defend", str(pretrained), *common, "--compare-boundaries", "9")
    assert_one_line_error(bad, 1, "out of range")
    assert not out.exists()

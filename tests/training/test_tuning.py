"""Defense strengths tuned on a validation split (fisherlab.training.tuning).

The validation split (stratified, disjoint, seeded, test split untouched), the
choice rule on fixed accuracy tables, and one tiny end-to-end tuning.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import fisherlab.training.tuning as tuning
from fisherlab.data import load_dataset, stratified_split
from fisherlab.errors import FisherlabError, TrainingDiverged
from fisherlab.models import model_meta
from fisherlab.training import TrainConfig, choose_strengths, train, tune_defense

TINY = dict(data="mnist5k:0-4", arch="target_cnn", epochs=1, max_train_samples=96)


# --------------------------------------------------------------------------- the split
def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = load_dataset("mnist5k:0-4").train.labels
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(labels)))
    per_class = torch.bincount(labels)
    assert torch.bincount(labels[held]).tolist() == [round(0.2 * int(n)) for n in per_class]
    again = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(again[0], kept) and torch.equal(again[1], held)
    assert not torch.equal(stratified_split(labels, 0.2, seed=4)[1], held)


def test_training_holds_out_validation_and_leaves_test_alone():
    splits = load_dataset("mnist5k:0-4")
    plain = train(TrainConfig(**TINY), progress=False)
    held = train(TrainConfig(**TINY, validation_fraction=0.25), progress=False)
    assert "validation_accuracy" not in plain.history
    n_val = len(stratified_split(splits.train.labels, 0.25, 0)[1])
    hits = held.history["validation_accuracy"].iloc[0] * n_val
    assert 0 <= hits <= n_val and hits == pytest.approx(round(hits))
    metrics = model_meta(held.model).metrics
    assert metrics["validation_samples"] == n_val and metrics["train_samples"] == 96
    assert metrics["test_samples"] == len(splits.test)
    # the same 96 training images are drawn from the rest: none of them is held out
    kept = stratified_split(splits.train.labels, 0.25, 0)[0]
    assert metrics["train_samples"] <= len(kept)


def test_validation_fraction_enters_the_key_only_when_set():
    assert TrainConfig(data="fashion", arch="target_cnn").key() == "d2e53344bd41"  # pinned
    with_val = TrainConfig(data="fashion", arch="target_cnn", validation_fraction=0.2)
    assert with_val.key() != "d2e53344bd41"
    assert with_val.key() != TrainConfig(**{**with_val.to_dict(), "validation_fraction": 0.3}).key()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_validation_fractions(fraction):
    with pytest.raises(FisherlabError, match=r"validation_fraction must be in \(0, 1\)"):
        TrainConfig(**TINY, validation_fraction=fraction)


# --------------------------------------------------------------------------- the rule
def _table(*accuracies: float) -> pd.DataFrame:
    return pd.DataFrame({"rank": range(len(accuracies)), "validation_accuracy": accuracies})


@pytest.mark.parametrize(
    ("accuracies", "roles"),
    [
        # the strongest within 0.02 of 0.99 is rank 2; its neighbours 1 and 3
        ((0.99, 0.985, 0.975, 0.90, 0.40), ["", "weaker", "operating", "stronger", ""]),
        # every candidate within: the strongest, and only a weaker neighbour
        ((0.99, 0.99, 0.98), ["", "weaker", "operating"]),
        # none within: the weakest, flagged, and its stronger neighbour
        ((0.90, 0.80, 0.50), ["operating", "stronger", ""]),
        # noise: a weaker one fails, a stronger one passes; the strongest passing wins
        ((0.99, 0.96, 0.98, 0.60), ["", "weaker", "operating", "stronger"]),
        # a drop of exactly the tolerance counts as within
        ((0.98, 0.97), ["weaker", "operating"]),
        # one candidate
        ((0.5,), ["operating"]),
        # a diverged candidate (NaN) is never chosen, not even as the stronger neighbour
        ((0.99, 0.985, float("nan")), ["weaker", "operating", ""]),
        # none within and the weakest diverged: the weakest trained one operates
        ((float("nan"), 0.9, 0.5), ["", "operating", "stronger"]),
    ],
)
def test_choice_rule_on_fixed_tables(accuracies, roles):
    chosen = choose_strengths(_table(*accuracies), baseline_accuracy=0.99, tolerance=0.02)
    assert chosen["role"].tolist() == roles
    assert chosen["chosen"].tolist() == [r != "" for r in roles]
    assert chosen["drop"].tolist() == pytest.approx([0.99 - a for a in accuracies], nan_ok=True)
    operating = chosen[chosen["role"] == "operating"].iloc[0]
    assert bool(operating["within_tolerance"]) == (
        0.99 - operating["validation_accuracy"] <= 0.02 + 1e-12
    )


def test_choice_rule_sorts_by_rank_and_rejects_bad_input():
    shuffled = _table(0.99, 0.98, 0.5).iloc[[2, 0, 1]]
    roles = choose_strengths(shuffled, 0.99, 0.02)["role"].tolist()
    assert roles == ["weaker", "operating", "stronger"]
    with pytest.raises(FisherlabError, match="every candidate strength diverged"):
        choose_strengths(_table(float("nan"), float("nan")), 0.99, 0.02)
    with pytest.raises(FisherlabError, match="tolerance must be >= 0"):
        choose_strengths(_table(0.9), 0.9, -0.1)
    with pytest.raises(FisherlabError, match="one row per rank"):
        choose_strengths(pd.concat([_table(0.9), _table(0.8)]), 0.9, 0.1)


def test_bad_candidates_name_the_fix():
    base = TrainConfig(**TINY)
    with pytest.raises(FisherlabError, match="give each candidate as a dict"):
        tune_defense(base, "bido", [0.1])
    with pytest.raises(FisherlabError, match="at least one candidate"):
        tune_defense(base, "mid", [])
    with pytest.raises(FisherlabError, match="must be >= 0"):
        tune_defense(base, "mid", [-1.0])
    with pytest.raises(FisherlabError, match="no strength to tune"):
        tune_defense(base, "none", [0.1])


# --------------------------------------------------------------------------- end to end
def test_tune_defense_end_to_end_and_reuses_finished_runs(tmp_path, monkeypatch):
    base = TrainConfig(**TINY, defense="mid", beta=0.5)  # its defense is replaced
    result = tune_defense(
        base, "mid", [0.001, {"beta": 0.01}], validation_fraction=0.25, out_dir=tmp_path
    )
    table, runs = result.table, result.runs
    assert table["beta"].tolist() == [0.001, 0.01] and table["rank"].tolist() == [0, 1]
    assert runs["defense"].tolist() == ["none", "mid", "mid"]
    assert runs["validation_accuracy"].between(0, 1).all()
    baseline = runs["validation_accuracy"].iloc[0]
    assert (table["baseline_accuracy"] == baseline).all()
    assert table["validation_accuracy"].tolist() == runs["validation_accuracy"].iloc[1:].tolist()
    expected = choose_strengths(table[["rank", "validation_accuracy"]], baseline, 0.02)
    assert table["role"].tolist() == expected["role"].tolist()
    assert len(result.chosen()) == table["chosen"].sum() >= 1
    assert result.chosen()[0][0] == "mid" and result.chosen()[0][1][0][0] == "beta"
    operating = table.loc[table["role"] == "operating", "beta"].item()
    assert result.chosen(("operating",)) == (("mid", (("beta", operating),)),)
    with pytest.raises(FisherlabError, match="unknown roles"):
        result.chosen(("best",))
    saved = json.loads((tmp_path / "tuning-mid.json").read_text())
    assert saved["base"]["defense"] == "none" and saved["base"]["validation_fraction"] == 0.25
    assert saved["baseline_accuracy"] == baseline
    assert pd.read_csv(tmp_path / "tuning-mid.csv")["chosen"].tolist() == table["chosen"].tolist()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(tuning, "train", no_training)
    again = tune_defense(base, "mid", [0.001, 0.01], validation_fraction=0.25, out_dir=tmp_path)
    pd.testing.assert_frame_equal(again.table, table)


def test_a_diverging_candidate_is_recorded_not_fatal(tmp_path, monkeypatch):
    """MID at beta=1 overflowed in the full preset: the tuning records it and goes on."""

    def fake_train(config, progress=False):
        if config.defense == "mid" and config.beta >= 1.0 and config.seed == 1:
            raise TrainingDiverged("the training loss became inf at epoch 1, batch 4")
        accuracy = 0.99 - (config.beta or 0.0) / 10
        history = pd.DataFrame([{"validation_accuracy": accuracy, "train_accuracy": 1.0}])
        return SimpleNamespace(history=history)

    monkeypatch.setattr(tuning, "train", fake_train)
    base = TrainConfig(**TINY)
    result = tune_defense(base, "mid", [0.01, 0.1, 1.0], seeds=(0, 1), out_dir=tmp_path)
    table = result.table
    assert table["validation_accuracy"].isna().tolist() == [False, False, True]
    assert table["role"].tolist() == ["weaker", "operating", ""]
    diverged = [json.loads(f.read_text())["diverged"] for f in sorted(tmp_path.glob("*.run.json"))]
    assert sum(d is not None for d in diverged) == 1
    # cached: read back without training, the same table
    monkeypatch.setattr(tuning, "train", None)
    again = tune_defense(base, "mid", [0.01, 0.1, 1.0], seeds=(0, 1), out_dir=tmp_path)
    pd.testing.assert_frame_equal(again.table, table)

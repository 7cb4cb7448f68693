"""Training and fine-tuning with a freeze boundary (fisherlab.training.train)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from helpers import layer_keys

from fisherlab.data import load_dataset
from fisherlab.errors import FisherlabError
from fisherlab.models import layer_map, layer_state_keys, load_model, model_meta
from fisherlab.training import TrainConfig, natural_accuracy, train


def _finetune(pretrained, **kwargs):
    base = dict(data="mnist5k:0-4", init=str(pretrained), epochs=1, max_train_samples=300)
    return TrainConfig(**{**base, **kwargs})


@pytest.mark.parametrize("boundary", [0, 3, 5])
def test_frozen_layers_and_bn_statistics_are_bit_identical(pretrained, tmp_path, boundary):
    out = tmp_path / "ft.pt"
    result = train(_finetune(pretrained, freeze_boundary=boundary), out=out, progress=False)
    before = load_model(pretrained).state_dict()
    after = load_model(out).state_dict()
    frozen = layer_keys(load_model(out), range(boundary))
    assert result.frozen_layers == list(range(boundary))
    assert any("running_mean" in k for k in frozen) or boundary == 0 or boundary == 5
    for k in frozen:
        assert torch.equal(before[k], after[k]), k
    lm = layer_map(load_model(out))
    keys = list(after)
    for i in range(boundary, len(lm) - 1):  # the layers that were trained changed
        trained = layer_state_keys(lm.loc[i, "modules"], keys)
        assert any(not torch.equal(before[k], after[k]) for k in trained), i
    expected = sum(lm.loc[i, "n_params"] for i in range(boundary, len(lm)))
    assert result.n_trainable_params == expected
    assert model_meta(load_model(out)).metrics["n_trainable_params"] == expected


def test_bn_running_stats_of_frozen_layers_include_num_batches(pretrained, tmp_path):
    out = tmp_path / "ft.pt"
    train(_finetune(pretrained, freeze_boundary=2), out=out, progress=False)
    before, after = load_model(pretrained).state_dict(), load_model(out).state_dict()
    for name in ("features.1", "features.4"):  # BN of frozen layers 0 and 1
        for buf in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(before[f"{name}.{buf}"], after[f"{name}.{buf}"])
    # the BN of trained layer 2 did see private data
    assert not torch.equal(before["features.8.running_mean"], after["features.8.running_mean"])


def test_train_layers_trains_exactly_those_plus_head(pretrained, tmp_path):
    out = tmp_path / "first.pt"
    result = train(_finetune(pretrained, train_layers=(0, 1)), out=out, progress=False)
    assert result.trainable_layers == [0, 1, 5] and result.frozen_layers == [2, 3, 4]
    before, after = load_model(pretrained).state_dict(), load_model(out).state_dict()
    for k in layer_keys(load_model(out), [2, 3, 4]):
        assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["features.0.weight"], after["features.0.weight"])


def test_training_is_deterministic(pretrained, tmp_path):
    a = train(_finetune(pretrained, freeze_boundary=2, seed=7), progress=False).model
    b = train(_finetune(pretrained, freeze_boundary=2, seed=7), progress=False).model
    c = train(_finetune(pretrained, freeze_boundary=2, seed=8), progress=False).model
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])


def test_save_every_writes_checkpoints_with_their_accuracy(pretrained, tmp_path):
    out = tmp_path / "run" / "ft.pt"
    result = train(_finetune(pretrained, epochs=3, save_every=1), out=out, progress=False)
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["ft.epoch001.pt", "ft.epoch002.pt", "ft.history.csv", "ft.pt", "ft.run.json"]
    history = pd.read_csv(out.parent / "ft.history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    # each checkpoint's stored accuracy is the accuracy it really has on the test split
    for row in history.itertuples():
        model = load_model(row.checkpoint)
        meta = model_meta(model)
        splits = load_dataset("mnist5k:0-4", input_spec=meta.input_spec)
        measured = natural_accuracy(model, splits.test)
        assert meta.metrics["natural_accuracy"] == pytest.approx(measured)
        assert row.natural_accuracy == pytest.approx(measured)
        assert meta.metrics["epoch"] == row.epoch
    assert result.history["natural_accuracy"].iloc[-1] > 0.6  # well above 5-class chance


def test_pretraining_learns_fashion(pretrained):
    model = load_model(pretrained)
    meta = model_meta(model)
    assert meta.class_names[0] == "T-shirt/top" and meta.input_spec.size == 28
    # 1 epoch on 1,500 images, 10 classes: chance is 0.1, this seed reaches 0.58
    assert meta.metrics["natural_accuracy"] > 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(freeze_boundary=6), "out of range"),
        (dict(freeze_boundary=-1), "out of range"),
        (dict(train_layers=(7,)), "out of range"),
    ],
)
def test_bad_boundaries(pretrained, kwargs, message):
    with pytest.raises(FisherlabError, match=message):
        train(_finetune(pretrained, **kwargs), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(data="fashion"), "exactly one"),
        (dict(data="fashion", arch="target_cnn", freeze_boundary=2), "add --init"),
        (dict(data="fashion", init="x.pt", freeze_boundary=1, train_layers=(1,)), "not both"),
        (dict(data="fashion", arch="target_cnn", epochs=0), "epochs must be"),
    ],
)
def test_bad_configs(kwargs, message):
    with pytest.raises(FisherlabError, match=message):
        TrainConfig(**kwargs)


def test_config_key_is_stable_and_sensitive():
    a = TrainConfig(data="fashion", arch="target_cnn")
    assert a.key() == TrainConfig(data="fashion", arch="target_cnn").key()
    assert a.key() != TrainConfig(data="fashion", arch="target_cnn", lr=0.02).key()

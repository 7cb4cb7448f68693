"""``fisherlab.train(model, data, ...)``: a module and data the user holds (training.fit)."""

from __future__ import annotations

import pytest
import torch
from helpers import layer_keys
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fisherlab as fl
from fisherlab.errors import FisherlabError


def _data(n: int = 48, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=gen), torch.arange(n) % 3)


def test_frozen_layers_and_their_batchnorm_stay_bit_identical():
    torch.manual_seed(0)
    model = fl.build_model("target_cnn", 3, image_size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fl.train(
        model, DataLoader(_data(), batch_size=16), freeze_boundary=2, epochs=2, progress=False
    )
    state = model.state_dict()
    frozen = layer_keys(model, range(2))
    assert frozen and all(torch.equal(state[k], before[k]) for k in frozen)
    trained = [k for k in state if k not in frozen and not torch.equal(state[k], before[k])]
    assert "features.8.running_mean" in trained and "head.weight" in trained
    assert result.frozen_layers == [0, 1]
    assert list(result.history["epoch"]) == [1, 2]
    assert result.history["natural_accuracy"].isna().all()  # no test data given
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_a_dataset_and_test_data_give_the_accuracy_natural_accuracy_measures():
    model = fl.build_model("target_cnn", 3, image_size=8)
    test = _data(30, seed=1)
    result = fl.train(model, _data(), test_data=test, train_layers=[3, 4], progress=False)
    assert result.frozen_layers == [0, 1, 2]
    assert result.history["natural_accuracy"].iloc[-1] == fl.natural_accuracy(model, test)


def test_a_spec_on_a_dataset_string_is_built_for_its_classes_and_saved(tmp_path):
    result = fl.train(
        "target_cnn", "digits:0-2", epochs=1, progress=False, save_to=tmp_path / "m.pt"
    )
    loaded = fl.load_model(tmp_path / "m.pt")
    assert fl.model_meta(loaded).class_names == ["0", "1", "2"]
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(freeze_boundary=1, train_layers=[2]), "not both"),
        (dict(freeze_boundary=9), "freeze boundary"),
        (dict(lr=float("nan")), "lr must be positive"),
        (dict(lr=1e38, epochs=3), "lower the learning rate"),
        (dict(save_to="x.pt"), "save_to= needs a model that records how it is rebuilt"),
    ],
)
def test_bad_options_are_one_line_errors(options, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(FisherlabError, match=message):
        fl.train(model, _data(), progress=False, **options)
    assert not (tmp_path / "x.pt").exists()

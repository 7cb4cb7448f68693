"""Saving and loading checkpoints (fisherlab.models.checkpoint), and foreign files."""

from __future__ import annotations

import pytest
import torch

from fisherlab.data import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.models import build_model, layer_map, load_model, model_meta, save_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("vit_small", 4, in_channels=3, image_size=28, depth=2)
    spec = InputSpec(3, 28, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    path = save_model(
        model,
        tmp_path / "m.pt",
        class_names=["a", "b", "c", "d"],
        input_spec=spec,
        train_config={"lr": 0.1},
        metrics={"natural_accuracy": 0.5},
    )
    return model, path, spec


def test_round_trip_is_exact_and_carries_metadata(saved):
    model, path, spec = saved
    loaded = load_model(path)
    assert not loaded.training
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, 3, 28, 28)
    assert torch.equal(model.eval()(x), loaded(x))
    meta = model_meta(loaded)
    assert (meta.arch, meta.arch_kwargs["depth"], meta.class_names) == (
        "vit_small",
        2,
        list("abcd"),
    )
    assert meta.input_spec == spec and meta.metrics == {"natural_accuracy": 0.5}
    assert meta.train_config == {"lr": 0.1} and meta.source == "fisherlab"
    # the file really is loadable without running code
    assert torch.load(path, weights_only=True)["format"] == "fisherlab-checkpoint"


def test_truncated_file(saved, tmp_path):
    _, path, _ = saved
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(FisherlabError, match=r"truncated zip archive.*expected a checkpoint"):
        load_model(bad)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "noise.pt"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(FisherlabError, match="not a readable torch file"):
        load_model(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FisherlabError, match="does not exist"):
        load_model(tmp_path / "nothing.pt")


def test_foreign_state_dict(tmp_path):
    path = tmp_path / "sd.pt"
    state = build_model("target_cnn", 5).state_dict()
    torch.save(state, path)
    with pytest.raises(FisherlabError, match=f"bare state dict of {len(state)} tensors"):
        load_model(path)


def test_mismatched_state_dict(saved, tmp_path):
    _, path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["arch_kwargs"]["num_classes"] = 9
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(FisherlabError, match=r"head.weight \(4, 64\) vs \(9, 64\)"):
        load_model(tmp_path / "mismatch.pt")
    del payload["state_dict"]["norm.weight"]
    payload["arch_kwargs"]["num_classes"] = 4
    torch.save(payload, tmp_path / "missing.pt")
    with pytest.raises(FisherlabError, match=r"missing.*norm.weight"):
        load_model(tmp_path / "missing.pt")


def test_newer_format_version(saved, tmp_path):
    _, path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(FisherlabError, match="format version 99"):
        load_model(tmp_path / "v99.pt")


def test_pickled_module_needs_trust(tmp_path):
    model = build_model("eval_cnn", 3).eval()
    path = tmp_path / "pickled.pt"
    torch.save(model, path)
    with pytest.raises(FisherlabError, match="--trust-pickle"):
        load_model(path)
    with pytest.warns(UserWarning, match="arbitrary pickle"):
        loaded = load_model(path, trust_pickle=True)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))


def test_torchscript(tmp_path):
    model = build_model("target_cnn", 5).eval()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    with pytest.raises(FisherlabError, match="TorchScript archive, which is code"):
        load_model(path)  # TorchScript runs code while loading: it needs the trust flag
    with pytest.warns(UserWarning, match="as TorchScript"):
        loaded = load_model(path, trust_pickle=True)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert model_meta(loaded).source == "torchscript"
    assert layer_map(loaded)["kind"].tolist() == layer_map(model)["kind"].tolist()


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = build_model("target_cnn", 5)
    path = tmp_path / "m.pt"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_model(model, path)
    assert list(tmp_path.iterdir()) == []

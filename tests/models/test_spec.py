"""Models users bring: specs (fisherlab.models.spec), open_model, and their checkpoints."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
import torchvision
from torch import nn

import fisherlab as fl
from fisherlab.data import InputSpec
from fisherlab.errors import FisherlabError
from fisherlab.models import (
    ModelSpec,
    build_from_spec,
    load_model,
    open_model,
    parse_model_spec,
    save_model,
)
from fisherlab.models.meta import model_meta
from fisherlab.models.spec import guess_spec

USER_CODE = """
from pathlib import Path
from torch import nn

Path(__file__).with_suffix(".imported").write_text("ran")


def make_cnn(num_classes=10, width=8):
    return nn.Sequential(
        nn.Conv2d(1, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, num_classes),
    )
"""


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("target_cnn", "fisherlab", "target_cnn"),
        ("resnet18_cifar", "fisherlab", "resnet18_cifar"),
        ("torchvision:mobilenet_v3_small", "torchvision", "mobilenet_v3_small"),
        ("timm:resnet18", "timm", "resnet18"),
        ("my_pkg.nets:make_cnn", "code", "my_pkg.nets:make_cnn"),
        ("nets:Factory.build", "code", "nets:Factory.build"),
    ],
)
def test_specs_parse(text, kind, name):
    spec = parse_model_spec(text)
    assert spec == ModelSpec(kind, name)
    assert str(spec) == text
    assert spec.runs_user_code == (kind == "code")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("resnet18", "now 'resnet18_cifar'"),
        ("vgg16_bn", "torchvision:vgg16_bn"),
        ("target_cn", "did you mean 'target_cnn'"),
        ("torchvision:", "expected torchvision:NAME"),
        ("not a spec!", "torchvision:NAME, timm:NAME or package.module:factory"),
    ],
)
def test_bad_specs_name_the_forms(text, message):
    with pytest.raises(FisherlabError, match=message):
        parse_model_spec(text)


def test_torchvision_model_keeps_its_stem_and_takes_grey_input():
    model = build_from_spec("torchvision:resnet18", 3, in_channels=1, image_size=32)
    reference = torchvision.models.resnet18(num_classes=3)
    assert model.conv1.in_channels == 1
    assert (model.conv1.kernel_size, model.conv1.stride) == ((7, 7), (2, 2))  # torchvision's
    assert isinstance(model.maxpool, nn.MaxPool2d)
    own = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert own.keys() == theirs.keys()
    assert [k for k in own if own[k] != theirs[k]] == ["conv1.weight"]
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 3)
    assert model_meta(model).arch == "torchvision:resnet18"


def test_vit_gets_the_image_size():
    model = build_from_spec("torchvision:vit_b_16", 4, image_size=32, model_kwargs={})
    assert model.image_size == 32


def test_weights_give_the_class_count_and_reproduce_the_outputs(tmp_path):
    torch.manual_seed(0)
    original = torchvision.models.mobilenet_v3_small(num_classes=7).eval()
    torch.save({"state_dict": original.state_dict()}, tmp_path / "sd.pt")  # a common wrapper
    model = open_model("torchvision:mobilenet_v3_small", weights=tmp_path / "sd.pt")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
    assert model_meta(model).arch_kwargs["num_classes"] == 7


def test_weights_that_do_not_fit_are_named(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(FisherlabError, match=r"does not fit torchvision:resnet34: missing"):
        open_model("torchvision:resnet34", weights=tmp_path / "sd.pt")
    torch.save(torchvision.models.resnet18(num_classes=5), tmp_path / "pickle.pt")
    with pytest.raises(FisherlabError, match="pickled objects, not a state dict"):
        open_model("torchvision:resnet18", weights=tmp_path / "pickle.pt")


def test_spec_checkpoint_round_trip_needs_no_trust(tmp_path):
    torch.manual_seed(1)
    model = open_model(
        "torchvision:resnet18", num_classes=3, input_spec=InputSpec(1, 32, (0.5,), (0.25,))
    )
    path = save_model(model, tmp_path / "m.pt", class_names=["a", "b", "c"])
    loaded = load_model(path)  # weights_only: no code runs
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    meta = model_meta(loaded)
    assert meta.arch == "torchvision:resnet18"
    assert meta.input_spec == InputSpec(1, 32, (0.5,), (0.25,))
    assert meta.class_names == ["a", "b", "c"]


def test_user_code_runs_only_when_named_or_trusted(tmp_path, monkeypatch):
    (tmp_path / "fl_user_nets.py").write_text(USER_CODE)
    marker = tmp_path / "fl_user_nets.imported"
    monkeypatch.chdir(tmp_path)  # found in the current folder, as python -m would
    monkeypatch.delitem(sys.modules, "fl_user_nets", raising=False)
    model = open_model(
        "fl_user_nets:make_cnn",
        model_kwargs={"width": 4},
        num_classes=5,
        input_spec=InputSpec(1, 12, None, None),
    )
    assert marker.exists() and model[-1].out_features == 5  # num_classes passed on
    path = save_model(model, tmp_path / "user.pt")
    marker.unlink()
    monkeypatch.delitem(sys.modules, "fl_user_nets")
    with pytest.raises(FisherlabError, match="names user code 'fl_user_nets:make_cnn'"):
        load_model(path)
    assert not marker.exists() and "fl_user_nets" not in sys.modules
    loaded = load_model(path, trust_pickle=True)
    x = torch.randn(3, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_foreign_module_saves_with_the_spec_that_rebuilds_it(tmp_path, monkeypatch):
    (tmp_path / "fl_user_nets2.py").write_text(USER_CODE)
    monkeypatch.chdir(tmp_path)
    plain = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(FisherlabError, match=r"spec='package\.module:factory'"):
        save_model(plain, tmp_path / "x.pt")
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = importlib.import_module("fl_user_nets2").make_cnn(num_classes=3, width=2)
    with pytest.raises(FisherlabError, match="does not rebuild this model"):
        save_model(mine, tmp_path / "x.pt", spec="fl_user_nets2:make_cnn")
    assert not (tmp_path / "x.pt").exists()
    kwargs = {"width": 2, "num_classes": 3}
    save_model(mine, tmp_path / "x.pt", spec="fl_user_nets2:make_cnn", model_kwargs=kwargs)
    back = load_model(tmp_path / "x.pt", trust_pickle=True)
    assert all(torch.equal(a, b) for a, b in zip(back.parameters(), mine.parameters(), strict=True))


def test_checkpoints_under_the_old_names_still_load(tmp_path):
    model = fl.build_model("resnet18_cifar", 4, in_channels=1, image_size=16)
    path = save_model(model, tmp_path / "new.pt")
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet18"  # as fisherlab wrote it before the rename
    torch.save(payload, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    assert model_meta(old).arch == "resnet18_cifar"
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(old(x), model.eval()(x))


def test_export_programs_and_missing_files_are_explained(tmp_path):
    program = torch.export.export(nn.Linear(3, 2), (torch.zeros(1, 3),))
    torch.export.save(program, tmp_path / "m.pt2")
    with pytest.raises(FisherlabError, match=r"torch.export program \(.pt2\).*--weights"):
        load_model(tmp_path / "m.pt2")
    with pytest.raises(FisherlabError, match=r"model file runs/none\.pt does not exist"):
        open_model("runs/none.pt")


def test_frozen_batchnorm_stays_put_in_training_mode():
    torch.manual_seed(0)
    model = fl.build_model("target_cnn", 3, image_size=8)
    frozen = fl.freeze(model, [0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("features.")}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with fl.training_mode(model, frozen):
        loss = nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.arange(8) % 3)
        loss.backward()
        optimizer.step()
    changed = [
        k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])
    ]
    frozen_prefixes = ("features.0.", "features.1.", "features.3.", "features.4.")  # layers 0, 1
    assert changed and not [k for k in changed if k.startswith(frozen_prefixes)]
    assert "features.8.running_mean" in changed  # layer 2's BatchNorm trains


def test_a_pickled_torchvision_model_is_recognised_and_saved_safely(tmp_path):
    torch.manual_seed(0)
    theirs = torchvision.models.mobilenet_v3_small(num_classes=4).eval()
    theirs.features[0][0] = nn.Conv2d(1, 16, 3, 2, 1, bias=False)  # grey input
    assert guess_spec(theirs) == (
        "torchvision:mobilenet_v3_small",
        {"in_channels": 1, "num_classes": 4},
    )
    assert guess_spec(nn.Sequential(nn.Linear(2, 2))) is None  # no code rebuilds it
    spec, kwargs = guess_spec(theirs)
    save_model(theirs, tmp_path / "m.pt", spec=spec, model_kwargs=kwargs)
    back = load_model(tmp_path / "m.pt")  # weights_only: no trust needed any more
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), theirs(x))

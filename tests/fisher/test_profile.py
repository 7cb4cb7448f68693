"""Per-layer Fisher profiles (fisherlab.fisher): the engines against the brute-force reference.

Also: which engine computes what, batch-size and seed (in)dependence, the true
Fisher's expectation, the model left untouched, the data forms, and bad input.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from cases import CASES, make_data, make_model, on_device
from helpers import rel
from torch import nn
from torch.func import functional_call, grad, vmap

import fisherlab as fl
from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile, reference_profile


@pytest.mark.parametrize("objective", ["classification", "logit"])
@pytest.mark.parametrize("fisher", ["empirical", "true"])
def test_engine_matches_brute_force_reference(model_case, objective, fisher, device):
    """The engines on ``device`` against the per-sample loop on the CPU, both in float64."""
    model = make_model(model_case)
    data = make_data(model_case)
    kwargs = dict(mc_samples=2, seed=3, diagonal=True)
    ref, ref_diag = reference_profile(model, data, objective, fisher, **kwargs)
    fast, fast_diag = profile(
        copy.deepcopy(model).to(device),
        on_device(data, device),
        objective,
        fisher,
        batch_size=4,
        device=device,
        **kwargs,
    )
    assert rel(fast["trace"], ref["trace"]) <= 1e-6
    assert rel(fast["share"], ref["share"]) <= 1e-6
    for name, d in ref_diag.items():
        got = fast_diag[name].to("cpu", torch.float64)
        assert torch.allclose(got, d, rtol=1e-6, atol=1e-12 * d.abs().max()), name
    assert (fast["trace"] > 0).all()
    assert fast["n_samples"].tolist() == [9] * len(fast)
    assert fast["n_params"].sum() == sum(p.numel() for p in model.parameters())


class _ScaledLinear(nn.Module):
    """A Linear (fast path) times a loose per-feature scale (fallback): one layer, two engines."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.rand(4) + 0.5)

    def forward(self, x):
        return torch.tanh(self.fc(x)) * self.scale


def test_engine_column_names_the_engines():
    vit_case, cnn_case = CASES["vit_small"], CASES["target_cnn"]
    vit = profile(make_model(vit_case), make_data(vit_case), max_samples=4)
    # conv + class/pos tokens (per-sample copies); attention, LayerNorm, MLP: all fast paths
    assert set(vit["engine"]) == {"backpack"}
    reasons = {r["reason"] for r in vit.attrs["engines"]}
    assert {"fast path for LayerNorm", "fast path for MultiheadAttention"} <= reasons
    assert any(r.startswith("per-sample copies") for r in reasons)
    mixed = nn.Sequential(nn.Linear(4, 4), _ScaledLinear(), nn.Linear(4, 3))
    data = torch.utils.data.TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))
    frame = profile(mixed, data)
    assert frame["engine"].tolist() == ["backpack", "backpack+functorch", "backpack"]
    cnn = profile(make_model(cnn_case), make_data(cnn_case), max_samples=4)
    assert set(cnn["engine"]) == {"backpack"}
    forced = profile(make_model(cnn_case), make_data(cnn_case), engine="functorch")
    assert set(forced["engine"]) == {"functorch"}
    assert rel(forced["trace"], profile(make_model(cnn_case), make_data(cnn_case))["trace"]) < 1e-10


@pytest.mark.parametrize("model_case", ["target_cnn", "resnet18"], indirect=True)
@pytest.mark.parametrize("fisher", ["empirical", "true"])
def test_independent_of_batch_size(model_case, fisher):
    """Single samples, ragged batches and one batch; fewer samples of the larger model."""
    n = 70 if model_case["name"] == "target_cnn" else 16
    model = make_model(model_case)
    data = make_data(model_case, n=n)
    frames = [profile(model, data, fisher=fisher, batch_size=b, seed=5) for b in (1, 7, 64)]
    for f in frames[1:]:
        assert rel(f["trace"], frames[0]["trace"]) <= 1e-10


def test_rerun_with_the_same_seed_is_identical_and_seed_matters():
    case = CASES["target_cnn"]
    model = make_model(case)
    data = make_data(case, n=20)
    a = profile(model, data, fisher="true", seed=11, mc_samples=3)
    b = profile(model, data, fisher="true", seed=11, mc_samples=3)
    c = profile(model, data, fisher="true", seed=12, mc_samples=3)
    assert a["trace"].tolist() == b["trace"].tolist()
    assert a["trace"].tolist() != c["trace"].tolist()


def test_true_fisher_converges_to_its_expectation():
    """MC label draws approach sum_k p_k ||grad L(x, k)||^2, computed by enumeration."""
    case = CASES["target_cnn"]
    model = make_model(case)
    data = make_data(case, n=6)
    x, _ = data.tensors
    exact = None
    for k in range(5):
        labels = torch.full((6,), k)

        def weighted_ce(out, t):
            # sqrt(p_k) * CE_k with p_k held constant: its squared gradient is p_k ||grad CE_k||^2
            w = torch.softmax(out.detach(), 1).gather(1, t.view(-1, 1)).squeeze(1)
            return nn.functional.cross_entropy(out, t, reduction="none") * w.sqrt()

        part = profile(model, torch.utils.data.TensorDataset(x, labels), weighted_ce)["trace"]
        exact = part if exact is None else exact + part

    def errors(m: int) -> np.ndarray:  # over three seeds: one draw's error is itself noisy
        return np.array(
            [
                rel(profile(model, data, fisher="true", mc_samples=m, seed=s)["trace"], exact)
                for s in (0, 1, 2)
            ]
        )

    few, many = errors(2), errors(64)
    # the MC error shrinks like 1/sqrt(m): sqrt(32) ~ 5.7x from 2 to 64 draws (measured: about 7x)
    assert few.mean() > 2.5 * many.mean()
    assert many.max() < 0.05


@pytest.mark.parametrize(
    "objective, got",
    [
        (lambda out, t: nn.functional.cross_entropy(out, t), "() for"),
        (lambda out, t: nn.functional.cross_entropy(out, t, reduction="none")[:, None], ", 1)"),
        (lambda out, t: out.sum(1) * torch.ones(6), "(6,) for"),
    ],
    ids=["reduced", "trailing-axis", "captures-the-batch"],
)
def test_objective_that_is_not_per_sample_is_refused(objective, got):
    """A mean loss, an (N, 1) loss or one that broadcasts against a batch-sized tensor."""
    case = CASES["target_cnn"]
    model, data = make_model(case), make_data(case, n=6)
    with pytest.raises(FisherlabError, match="one loss per sample") as info:
        profile(model, data, objective)
    assert got in str(info.value)
    with pytest.raises(FisherlabError, match="one loss per sample"):
        reference_profile(model, data, objective)


def test_model_is_left_exactly_as_it_was():
    case = CASES["resnet18"]  # in-place ReLUs and additions
    model = make_model(case)
    model.train()
    model.layer1[0].conv1.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    profile(model, make_data(case), max_samples=4, diagonal=True)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
        assert not hasattr(m, "input0") and not hasattr(m, "output")
    assert all(p.grad is None for p in model.parameters())
    # torch.func still works on the very same module
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    x, y = make_data(case, n=3).tensors

    def loss(p, xi, yi):
        out = functional_call(model, {**p, **dict(model.named_buffers())}, (xi[None],))
        return nn.functional.cross_entropy(out, yi[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    assert grads["fc.weight"].shape == (3, 6, 512)
    for i in range(3):  # each per-sample gradient is the one plain autograd computes
        out = model(x[i : i + 1])
        (expected,) = torch.autograd.grad(
            nn.functional.cross_entropy(out, y[i : i + 1]), model.fc.weight
        )
        assert torch.allclose(grads["fc.weight"][i], expected, rtol=1e-10, atol=1e-14), i


def test_frozen_model_is_profiled_like_a_trainable_one():
    case = CASES["target_cnn"]
    model = make_model(case)
    data = make_data(case)
    expected = profile(model, data)
    model.requires_grad_(False)
    assert rel(profile(model, data)["trace"], expected["trace"]) == 0


def test_data_forms_agree(tmp_path):
    torch.manual_seed(0)
    model = fl.build_model("target_cnn", 5).eval()
    splits = fl.load_dataset("mnist5k:0-4")
    x, y = splits.train.tensors()
    rows = fl.data.stratified_indices(y, 40)  # a cap on labelled data keeps these
    from_string = profile(model, "mnist5k:0-4", max_samples=40)
    from_dataset = profile(model, splits.train, max_samples=40)
    chosen = torch.utils.data.Subset(splits.train, rows.tolist())
    loader = torch.utils.data.DataLoader(chosen, batch_size=16)  # a loader's cap: its first 40
    from_loader = profile(model, loader, max_samples=40)
    np.savez(tmp_path / "d.npz", x=x[rows].numpy(), y=y[rows].numpy())
    from_npz = profile(model, f"npz:{tmp_path / 'd.npz'}")
    for f in (from_dataset, from_loader, from_npz):
        assert rel(f["trace"], from_string["trace"]) < 1e-5
        assert f["n_samples"].iloc[0] == 40


def test_mean_and_share_follow_from_trace():
    case = CASES["vgg16_bn"]
    frame = profile(make_model(case), make_data(case), max_samples=3)
    assert np.allclose(frame["mean"], frame["trace"] / frame["n_params"], rtol=1e-12)
    assert np.allclose(frame["share"], frame["trace"] / frame["trace"].sum(), rtol=1e-12)
    assert set(frame["objective"]) == {"classification"} and set(frame["fisher"]) == {"empirical"}


# ---------------------------------------------------------------------------- bad input
def test_wrong_input_shape():
    model = fl.build_model("target_cnn", 5)
    model.fisherlab_meta.input_spec = fl.InputSpec(1, 28, None, None)
    data = make_data({"input_shape": (3, 32, 32), "classes": 5})
    with pytest.raises(FisherlabError, match=r"shape \(3, 32, 32\) but the model expects"):
        profile(model.double(), data)


def test_classes_outside_the_model():
    case = CASES["target_cnn"]
    model = make_model({**case, "classes": 3})
    with pytest.raises(FisherlabError, match="the model has 3 outputs"):
        profile(model, make_data(case, n=30))


def test_empty_data():
    model = make_model(CASES["target_cnn"])
    empty = torch.utils.data.TensorDataset(
        torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)
    )
    with pytest.raises(FisherlabError, match="empty"):
        profile(model, empty)


def test_non_finite_objective_names_the_batch():
    case = CASES["target_cnn"]
    model = make_model(case)
    x, y = make_data(case, n=10).tensors
    x[7] = float("nan")
    with pytest.raises(FisherlabError, match=r"sample 7 \(batch 1\)"):
        profile(model, torch.utils.data.TensorDataset(x, y), batch_size=4)


def test_unsupported_module_without_fallback_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU(4), nn.Linear(4, 3))
    data = torch.utils.data.TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(FisherlabError, match=r"module 1 \(PReLU\) has no BackPACK fast path"):
        profile(model, data, engine="backpack")
    case = CASES["vit_small"]  # LayerNorm, attention, class/position tokens: all fast now
    frame = profile(make_model(case), make_data(case), engine="backpack", max_samples=4)
    assert set(frame["engine"]) == {"backpack"}


def test_batchnorm_without_running_stats_is_refused():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2, track_running_stats=False),
        nn.Flatten(),
        nn.Linear(2 * 26 * 26, 3),
    )
    with pytest.raises(FisherlabError, match=r"1 \(BatchNorm2d\) has no running statistics"):
        profile(model, make_data({"input_shape": (1, 28, 28), "classes": 3}))

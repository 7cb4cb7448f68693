"""The Fisher engine against the independent per-sample reference, in float64, on the zoo.

Every case of ``zoo.py`` is profiled with ``fisherlab.profile(..., engine="auto")``
and with ``reference_profile`` on the same data: the trace of every layer and
the diagonal of every parameter must agree to ``RTOL`` relative (``ATOL``
absolute, for zero values), for the empirical and the true Fisher and for
several batch sizes. Failures name the worst layer or parameter and its error.
"""

from __future__ import annotations

import fnmatch
import functools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from zoo import CASE_IDS, CASES, make_data

import fisherlab
from fisherlab.errors import FisherlabError
from fisherlab.fisher.engine import COLUMNS
from fisherlab.fisher.objectives import sample_labels, uniforms
from fisherlab.fisher.reference import REFERENCE_COLUMNS, reference_profile

RTOL, ATOL = 1e-8, 1e-12
N_SAMPLES = 8
BATCH_SIZES = (1, 3, 8)
FISHERS = ("empirical", "true")
MC_SAMPLES, SEED = 2, 3
META = ["index", "name", "kind", "n_params", "objective", "fisher", "n_samples", "mc_samples"]

BY_NAME = {c["name"]: c for c in CASES}


# --------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small, shared CPU two threads make these tiny ops ~5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=CASE_IDS)
def name(request) -> str:
    """The case name; a module-scoped parameter, so pytest runs the tests case by case
    (and the caches below need to hold only the current case)."""
    return request.param


@functools.lru_cache(maxsize=1)
def zoo_model(name: str) -> nn.Module:
    """One built model per case, shared by its comparison tests (which do not modify it)."""
    return BY_NAME[name]["build"]()


def objective(name: str):
    return BY_NAME[name].get("objective", "classification")


@functools.lru_cache(maxsize=4)
def reference(name: str, fisher: str, n: int = N_SAMPLES):
    data = make_data(BY_NAME[name], n)
    return reference_profile(
        zoo_model(name),
        data,
        objective(name),
        fisher,
        mc_samples=MC_SAMPLES,
        seed=SEED,
        diagonal=True,
    )


@functools.lru_cache(maxsize=2)
def engine_profile(name: str, fisher: str, batch_size: int, diagonal: bool, n: int = N_SAMPLES):
    return fisherlab.profile(
        zoo_model(name),
        make_data(BY_NAME[name], n),
        objective(name),
        fisher,
        batch_size=batch_size,
        mc_samples=MC_SAMPLES,
        seed=SEED,
        diagonal=diagonal,
        engine="auto",
    )


def rel_err(got, ref) -> np.ndarray:
    """``|got - ref| / |ref|``; ``inf`` where the reference is 0 and the engine is not."""
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(got == ref, 0.0, np.abs(got - ref) / np.abs(ref))


def assert_frames_agree(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(got.columns) == COLUMNS
    assert got[META].to_dict("list") == ref[META].to_dict("list")
    for column in ("trace", "mean", "share"):
        a, b = got[column].to_numpy(float), ref[column].to_numpy(float)
        bad = ~np.isclose(a, b, rtol=RTOL, atol=ATOL)
        if bad.any():
            err = rel_err(a, b)
            worst = int(np.argmax(np.where(bad, err, -1.0)))
            names = got["name"][bad].tolist()
            raise AssertionError(
                f"{column} differs on {int(bad.sum())}/{len(got)} layers {names[:8]}: worst "
                f"relative error {err[worst]:.3g} on layer {got['name'][worst]!r} "
                f"(engine {a[worst]:.10g}, reference {b[worst]:.10g})"
            )


def assert_diagonals_agree(got: dict, ref: dict) -> None:
    assert list(got) == list(ref), "the diagonal's parameter names differ from the model's"
    failures = []
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape and g.dtype == torch.float64, name
        bad = ~torch.isclose(g, r, rtol=RTOL, atol=ATOL)
        if bad.any():
            err = float(rel_err(g[bad].numpy(), r[bad].numpy()).max())
            failures.append((err, name, int(bad.sum()), r.numel()))
    if failures:
        failures.sort(reverse=True)
        err, name, count, total = failures[0]
        names = [f[1] for f in failures]
        raise AssertionError(
            f"diagonal differs on {len(failures)}/{len(ref)} parameters {names[:8]}: worst "
            f"relative error {err:.3g} on {name!r} ({count}/{total} entries off)"
        )


def hooks(module: nn.Module) -> tuple[int, int, int, int, int]:
    return (
        len(module._forward_hooks),
        len(module._forward_pre_hooks),
        len(module._backward_hooks),
        len(module._backward_pre_hooks),
        len(getattr(module, "_forward_hooks_with_kwargs", {})),
    )


def snapshot(model: nn.Module) -> dict:
    """Everything profile() must leave as it was."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "params": {
            n: (id(p), p.requires_grad, p.grad is None, p.dtype)
            for n, p in model.named_parameters(remove_duplicate=False)
        },
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: hooks(m) for n, m in model.named_modules()},
        "attributes": {n: sorted(vars(m)) for n, m in model.named_modules()},
    }


def assert_same_snapshot(before: dict, after: dict) -> None:
    assert list(after["state"]) == list(before["state"])
    changed = [
        k
        for k, v in after["state"].items()
        if v.dtype != before["state"][k].dtype or not torch.equal(v, before["state"][k])
    ]
    assert not changed, f"state dict values changed: {changed[:8]}"
    for what in ("params", "training", "hooks", "attributes"):
        diff = [k for k in before[what] if after[what].get(k) != before[what][k]]
        assert after[what].keys() == before[what].keys() and not diff, f"{what} changed: {diff[:8]}"


def fresh_trainable_model(name: str) -> nn.Module:
    """A fresh model in train mode with its first parameter frozen (to see both restored)."""
    model = BY_NAME[name]["build"]().train()
    next(model.parameters()).requires_grad_(False)
    return model


# --------------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("fisher", FISHERS)
def test_trace_and_diagonal_match_reference(name, fisher, batch_size):
    ref, ref_diag = reference(name, fisher)
    got, got_diag = engine_profile(name, fisher, batch_size, diagonal=True)
    assert_frames_agree(got, ref)
    assert_diagonals_agree(got_diag, ref_diag)


@pytest.mark.parametrize("fisher", FISHERS)
def test_trace_without_diagonal_matches_reference(name, fisher):
    """Without the diagonal the fast paths may take other routes (Gram forms, ghost norms)."""
    ref, _ = reference(name, fisher)
    got = engine_profile(name, fisher, 3, diagonal=False)
    assert_frames_agree(got, ref)


def test_engine_column_names_the_engines(name):
    frame = engine_profile(name, "empirical", 3, diagonal=False)  # cached: the test above
    for engines in frame["engine"]:
        parts = engines.split("+")
        assert parts == sorted(set(parts)) and set(parts) <= {"backpack", "functorch"}, engines


def test_engines_are_the_expected_ones(name):
    """Each parameter's engine and reason as the case declares (``fallback`` in zoo.py):
    a silent switch to the fallback, or a fast path used where it is not exact, fails."""
    frame = engine_profile(name, "empirical", 3, diagonal=False)  # cached: the test above
    expected = BY_NAME[name]["fallback"]
    used = set()
    wrong = []
    for record in frame.attrs["engines"]:
        patterns = [p for p in expected if fnmatch.fnmatchcase(record["parameter"], p)]
        used.update(patterns)
        if patterns:
            ok = record["engine"] == "functorch" and expected[patterns[0]] in record["reason"]
        else:
            ok = record["engine"] == "backpack"
        if not ok:
            wrong.append((record["parameter"], record["engine"], record["reason"]))
    assert not wrong, f"{len(wrong)} parameters use an unexpected engine: {wrong[:4]}"
    assert used == set(expected), f"patterns that match no parameter: {set(expected) - used}"


def test_profile_leaves_the_model_untouched(name):
    """Even when profile() fails on a case (the comparison tests report that), the model is
    left bitwise as it was: state, parameters and their flags, modes, hooks, attributes."""
    model = fresh_trainable_model(name)
    before = snapshot(model)
    data = make_data(BY_NAME[name], 3)
    try:
        fisherlab.profile(
            model, data, objective(name), "true", batch_size=2, mc_samples=2, diagonal=True
        )
    except Exception:  # noqa: BLE001 - failures are the comparison tests' business
        pass
    assert_same_snapshot(before, snapshot(model))


SWEEP_SAMPLES = 21
SWEEP_BATCH_SIZES = (1, 2, 5, 8, 16, 21, 64)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", SWEEP_BATCH_SIZES)
@pytest.mark.parametrize("fisher", FISHERS)
def test_sweep_more_samples_and_batch_sizes(name, fisher, batch_size):
    ref, ref_diag = reference(name, fisher, SWEEP_SAMPLES)
    got = engine_profile(name, fisher, batch_size, diagonal=False, n=SWEEP_SAMPLES)
    assert_frames_agree(got, ref)
    got, got_diag = engine_profile(name, fisher, batch_size, diagonal=True, n=SWEEP_SAMPLES)
    assert_frames_agree(got, ref)
    assert_diagonals_agree(got_diag, ref_diag)


# --------------------------------------------------------------------------- the reference
def test_frame_columns_equal_the_engines():
    assert REFERENCE_COLUMNS == COLUMNS
    case = BY_NAME["layernorm_mlp"]
    frame = reference_profile(case["build"](), make_data(case, 2))
    assert list(frame.columns) == COLUMNS
    assert set(frame["engine"]) == {"reference"}


def test_zoo_is_large_and_named_uniquely():
    assert len(CASES) >= 25 and len(set(CASE_IDS)) == len(CASE_IDS)
    for case in CASES:
        assert {"name", "build", "input", "classes"} <= case.keys()


def _by_hand_linear(weight, bias, x, labels):
    """Per-sample CE gradients of a Linear: dW = (softmax - onehot) x^T, db = softmax - onehot."""
    p = torch.softmax(x @ weight.T + bias, dim=1)
    delta = p - nn.functional.one_hot(labels, weight.shape[0]).double()
    gw = delta[:, :, None] * x[:, None, :]
    return gw, delta


@pytest.mark.parametrize("fisher", FISHERS)
def test_reference_by_hand_on_a_linear_model(fisher):
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    frame, diag = reference_profile(
        model, TensorDataset(x, y), fisher=fisher, mc_samples=3, seed=7, diagonal=True
    )
    w, b = model.weight.detach(), model.bias.detach()
    if fisher == "true":
        logits = x @ w.T + b
        u = uniforms(7, 0, 5, 3)
        draws = [sample_labels(logits, u[:, m]) for m in range(3)]
    else:
        draws = [y]
    sq_w = sq_b = 0.0
    dg_w, dg_b = torch.zeros_like(w), torch.zeros_like(b)
    for labels in draws:
        gw, gb = _by_hand_linear(w, b, x, labels)
        sq_w, sq_b = sq_w + gw.square().sum(), sq_b + gb.square().sum()
        dg_w, dg_b = dg_w + gw.square().sum(0), dg_b + gb.square().sum(0)
    terms = 5 * len(draws)
    assert frame["trace"].iloc[0] == pytest.approx(float(sq_w + sq_b) / terms, rel=1e-12)
    assert frame["n_samples"].iloc[0] == 5
    assert frame["mc_samples"].iloc[0] == len(draws)
    assert frame["share"].iloc[0] == 1.0
    torch.testing.assert_close(diag["weight"], dg_w / terms, rtol=1e-12, atol=0)
    torch.testing.assert_close(diag["bias"], dg_b / terms, rtol=1e-12, atol=0)


class _Shared(nn.Module):
    """h = W2 tanh(W1 x) with W1 = W2 = W (square), and a 0-dim scale that is never used."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3, bias=False)
        self.b = nn.Linear(3, 3, bias=False)
        self.b.weight = self.a.weight
        self.unused = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_reference_sums_the_uses_of_a_tied_parameter_and_zeroes_unused_ones():
    torch.manual_seed(1)
    model = _Shared().double()
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    frame, diag = reference_profile(model, TensorDataset(x, y), diagonal=True)
    assert sorted(diag) == ["a.weight", "unused"]  # the tied weight once, by its first name
    assert torch.equal(diag["unused"], torch.zeros((), dtype=torch.float64))
    w = model.a.weight.detach()
    expected = torch.zeros_like(w)
    for i in range(4):  # by hand: the sum over both uses of W
        h = torch.tanh(w @ x[i])
        delta = torch.softmax(w @ h, 0) - nn.functional.one_hot(y[i], 3).double()
        g = torch.outer(delta, h) + torch.outer((w.T @ delta) * (1 - h**2), x[i])
        expected += g.square()
    torch.testing.assert_close(diag["a.weight"], expected / 4, rtol=1e-12, atol=0)
    assert frame["n_params"].sum() == 9 + 1


def test_reference_keeps_integer_inputs_and_leaves_the_model_untouched():
    case = BY_NAME["bag_of_embeddings"]
    model = fresh_trainable_model("bag_of_embeddings")
    model.register_forward_hook(lambda m, i, o: None)
    before = snapshot(model)
    frame = reference_profile(model, make_data(case, 4), max_samples=3)
    assert_same_snapshot(before, snapshot(model))
    assert frame["n_samples"].iloc[0] == 3 and (frame["trace"] > 0).all()


def test_reference_copies_weight_norm_models():
    model = BY_NAME["weight_norm_hook"]["build"]()
    frame = reference_profile(model, make_data(BY_NAME["weight_norm_hook"], 2))
    assert (frame["trace"] > 0).all()


def test_reference_data_forms_agree(tmp_path):
    torch.manual_seed(0)
    model = fisherlab.build_model("target_cnn", 5).double().eval()
    from_string = reference_profile(model, "mnist5k:0-4", max_samples=3)
    dataset = fisherlab.load_dataset("mnist5k:0-4").train
    x, y = dataset.tensors()
    rows = fisherlab.data.stratified_indices(y, 3)  # a cap on labelled data keeps these
    from_dataset = reference_profile(model, dataset, max_samples=3)
    loader = DataLoader(TensorDataset(x[rows], y[rows]), batch_size=2)
    from_loader = reference_profile(model, loader)
    np.savez(tmp_path / "d.npz", x=x[rows].numpy(), y=y[rows].numpy())
    from_npz = reference_profile(model, f"npz:{tmp_path / 'd.npz'}")
    for frame in (from_dataset, from_loader, from_npz):
        assert rel_err(frame["trace"], from_string["trace"]).max() < 1e-12
        assert frame["n_samples"].iloc[0] == 3


def test_reference_refuses_empty_data():
    empty = TensorDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(FisherlabError, match="empty"):
        reference_profile(nn.Linear(3, 2), empty)

"""Each fast path of ``fisherlab.fisher.fast_paths`` across module configurations.

Every configuration wraps one module in ``module -> flatten -> Linear`` and is
profiled with ``engine="auto"`` and with the independent reference, in
float64: the trace of every layer and the diagonal of every parameter agree to
1e-8 relative, for the empirical and the true Fisher, and the module's
parameters must have been computed by its fast path (the engine record says
so), not by the fallback.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from zoo import finish

import fisherlab
from fisherlab.fisher import backpack_engine, fast_paths
from fisherlab.fisher.backpack_engine import modified_in_place
from fisherlab.fisher.fast_paths import fast_path_reason
from fisherlab.fisher.reference import reference_profile

RTOL, ATOL = 1e-8, 1e-12
N = 5

CONFIGS = {
    # name: (module factory, one sample's input shape or ("ids", vocab, shape))
    "conv2d_groups2_stride2": (
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
        (4, 9, 9),
    ),
    "conv2d_groups3_dilated": (
        lambda: nn.Conv2d(6, 6, (3, 2), dilation=(2, 1), padding=(2, 0), groups=3),
        (6, 7, 8),
    ),
    "conv2d_depthwise_large_map": (
        lambda: nn.Conv2d(4, 8, 3, groups=4, padding="same"),  # 169 positions: grouped conv
        (4, 13, 13),
    ),
    "conv2d_pointwise_depthwise": (lambda: nn.Conv2d(8, 8, 1, groups=8, bias=False), (8, 3, 3)),
    "conv2d_grouped_gram": (lambda: nn.Conv2d(16, 16, 3, groups=2), (16, 3, 3)),  # Gram form
    "conv2d_pointwise": (lambda: nn.Conv2d(5, 7, 1), (5, 4, 3)),  # the Linear's path
    "conv2d_pointwise_large_map": (lambda: nn.Conv2d(3, 4, 1, bias=False), (3, 12, 12)),
    "conv1d_pointwise": (lambda: nn.Conv1d(3, 4, 1), (3, 6)),
    "conv1d": (lambda: nn.Conv1d(3, 4, 5, stride=2), (3, 20)),
    "conv1d_groups_same_dilated": (
        lambda: nn.Conv1d(4, 6, 3, groups=2, dilation=2, padding="same"),
        (4, 11),
    ),
    "conv1d_depthwise_long": (lambda: nn.Conv1d(3, 3, 3, groups=3, padding=1), (3, 150)),
    "layernorm_vector": (lambda: nn.LayerNorm(5), (5,)),
    "layernorm_tokens": (lambda: nn.LayerNorm(5), (3, 5)),
    "layernorm_two_dims": (lambda: nn.LayerNorm((3, 5)), (2, 3, 5)),
    "layernorm_no_bias": (lambda: nn.LayerNorm(5, bias=False), (3, 5)),
    "groupnorm_2d": (lambda: nn.GroupNorm(2, 6), (6, 4, 4)),
    "groupnorm_1d": (lambda: nn.GroupNorm(3, 6), (6, 7)),
    "groupnorm_one_group": (lambda: nn.GroupNorm(1, 6), (6, 3, 3)),
    "groupnorm_per_channel": (lambda: nn.GroupNorm(6, 6), (6, 3, 3)),
    "embedding_one_id": (lambda: nn.Embedding(7, 4), ("ids", 7, ())),
    "embedding_padding_3d_ids": (lambda: nn.Embedding(7, 4, padding_idx=2), ("ids", 7, (2, 3))),
    "embedding_sparse": (lambda: nn.Embedding(6, 3, sparse=True), ("ids", 6, (4,))),
}


class Wrapped(nn.Module):
    """``module -> tanh -> flatten -> Linear(., 3)``."""

    def __init__(self, module: nn.Module, features: int):
        super().__init__()
        self.module = module
        self.head = nn.Linear(features, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.module(x)).flatten(1))


def build(name: str) -> tuple[nn.Module, TensorDataset]:
    factory, shape = CONFIGS[name]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if shape[0] == "ids":
        _, vocab, rest = shape
        x = torch.randint(0, vocab, (N, *rest), generator=gen)
    else:
        x = torch.randn(N, *shape, generator=gen, dtype=torch.float64)
    module = factory()
    with torch.no_grad():
        features = module.double()(x).flatten(1).shape[1]
    model = finish(Wrapped(module, features))
    return model, TensorDataset(x, torch.randint(0, 3, (N,), generator=gen))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("fisher", ["empirical", "true"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_path_matches_reference(name, fisher):
    model, data = build(name)
    kwargs = dict(mc_samples=2, seed=4, diagonal=True)
    ref, ref_diag = reference_profile(model, data, fisher=fisher, **kwargs)
    for batch_size, diagonal in ((N, True), (2, False)):
        got = fisherlab.profile(
            model, data, fisher=fisher, batch_size=batch_size, **{**kwargs, "diagonal": diagonal}
        )
        frame = got[0] if diagonal else got
        torch.testing.assert_close(
            torch.tensor(frame["trace"].to_numpy()),
            torch.tensor(ref["trace"].to_numpy()),
            rtol=RTOL,
            atol=ATOL,
        )
        if diagonal:
            for param, value in ref_diag.items():
                torch.testing.assert_close(got[1][param], value, rtol=RTOL, atol=ATOL)
    records = {r["parameter"]: r for r in frame.attrs["engines"]}
    module_type = type(model.module).__name__
    for param, _ in model.module.named_parameters():
        record = records[f"module.{param}"]
        assert record["engine"] == "backpack", record
        assert record["reason"] == f"fast path for {module_type}", record
    assert (ref["trace"] > 0).all()


def test_reasons_for_modules_without_an_exact_fast_path():
    assert "max_norm" in fast_path_reason(nn.Embedding(5, 3, max_norm=1.0))
    assert "scale_grad_by_freq" in fast_path_reason(nn.Embedding(5, 3, scale_grad_by_freq=True))
    assert "padding_mode='reflect'" in fast_path_reason(
        nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect")
    )
    assert "asymmetric" in fast_path_reason(nn.Conv1d(2, 2, 4, padding="same"))

    class MyNorm(nn.LayerNorm):
        pass

    assert fast_path_reason(MyNorm(3)) == "no fast path for MyNorm"  # exact types only
    assert fast_path_reason(nn.Conv3d(2, 2, 3)) == "no fast path for Conv3d"
    for module in (nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3, groups=4), nn.MultiheadAttention(4, 2)):
        assert fast_path_reason(module) is None


def test_old_import_paths_still_work():
    for name in (
        "FAST_PATHS",
        "FAST_PATH_PARAMETERS",
        "GROUPED_MIN_POSITIONS",
        "conv_padding",
        "fast_path_reason",
        "register_fast_path",
    ):
        assert getattr(backpack_engine, name) is getattr(fast_paths, name)
    assert fisherlab.fisher.FAST_PATHS is fast_paths.FAST_PATHS


class _InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)
        self.c = nn.Linear(3, 3)

    def forward(self, x):
        h = self.a(x)
        h += 1  # a's output changes after the call: tensor-hook route
        g = h * 1.0
        out = self.b(g)
        g.mul_(2)  # b's input changes after the call: fallback
        return self.c(out) + g


def test_modified_in_place_finds_inputs_and_outputs():
    found = modified_in_place(_InPlace().double(), ["a", "b", "c"], torch.randn(2, 3).double())
    assert found == {"a": "output", "b": "input"}

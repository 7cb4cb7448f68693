"""Training-time defenses (fisherlab.training.defenses): MID, BiDO, label smoothing.

Their penalties against explicit sums, their configs, training with them (also
with frozen layers) and their CLI.
"""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cases import CASES, make_data, on_device
from helpers import assert_one_line_error, layer_keys, run
from torch import nn
from torch.distributions import Normal, kl_divergence

from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile, reference_profile
from fisherlab.models import VIBHead, layer_map, layers, load_model, model_meta
from fisherlab.training import (
    MID,
    BiDO,
    LabelSmoothing,
    TrainConfig,
    hsic,
    kl_to_standard_normal,
    negative_ls_factor,
    normalized_hsic,
    smoothed_cross_entropy,
    train,
)

SMALL = dict(data="mnist5k:0-4", epochs=1, max_train_samples=128)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- penalties
def test_kl_closed_form_matches_torch_distributions_and_monte_carlo():
    mu = torch.randn(4, 3, generator=_gen(), dtype=torch.float64)
    sigma = torch.rand(4, 3, generator=_gen(1), dtype=torch.float64) + 0.2
    ours = kl_to_standard_normal(mu, sigma).item()
    q, p = Normal(mu, sigma), Normal(torch.zeros_like(mu), torch.ones_like(sigma))
    assert ours == pytest.approx(kl_divergence(q, p).sum(1).mean().item(), rel=1e-12)
    torch.manual_seed(2)
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean().item()
    assert monte_carlo == pytest.approx(ours, rel=1e-2)
    assert ours > 0 and kl_to_standard_normal(torch.zeros(2, 3), torch.ones(2, 3)).item() == 0


def _mlp(*widths: int) -> nn.Sequential:
    torch.manual_seed(0)
    mods: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        mods += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*mods[:-1]).double()


def test_mid_loss_is_cross_entropy_plus_beta_kl_of_the_same_sample():
    model = _mlp(6, 8, 3)
    defense = MID(beta=0.25)
    defense.prepare(model, seed=0)
    head = model[2]
    assert isinstance(head, VIBHead) and head.bottleneck == 4 and head.out_features == 3
    assert [(la.name, la.kind) for la in layers(model)] == [("0", "linear"), ("2", "vib_head")]
    x = torch.randn(5, 6, generator=_gen(), dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    with defense.watching(model, [0, 1]):
        torch.manual_seed(3)
        logits = model.train()(x)
        loss, parts = defense.loss(model, x, logits, y)
    # the same computation written out: statistics, reparameterised sample, closed-form KL
    s = head.encoder(torch.relu(model[0](x))).detach()
    mu, sigma = s[:, :4], torch.log1p(torch.exp(s[:, 4:] - 5))
    torch.manual_seed(3)
    eps = torch.randn(5, 4, dtype=torch.float64)
    assert torch.allclose(logits, head.decoder(mu + sigma * eps), rtol=0, atol=1e-12)
    kl = (
        sum(
            0.5 * (mu[i, j] ** 2 + sigma[i, j] ** 2 - 2 * math.log(sigma[i, j]) - 1)
            for i in range(5)
            for j in range(4)
        )
        / 5
    )
    assert parts["kl"].item() == pytest.approx(float(kl), rel=1e-12)
    expected = F.cross_entropy(logits.detach(), y).item() + 0.25 * float(kl)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # eval mode: deterministic logits from the mean
    model.eval()
    assert torch.equal(model(x), head.decoder(mu))
    assert torch.equal(model(x), model(x))


def _gram(a: list[list[float]], sigma: float) -> list[list[float]]:
    d = len(a[0])
    return [
        [math.exp(-sum((ai[k] - aj[k]) ** 2 for k in range(d)) / (2 * sigma**2 * d)) for aj in a]
        for ai in a
    ]


def test_hsic_matches_a_double_loop_over_samples():
    x = torch.randn(7, 3, generator=_gen(), dtype=torch.float64)
    y = torch.randn(7, 2, generator=_gen(1), dtype=torch.float64) + x[:, :2]
    k, l_ = _gram(x.tolist(), 0.8), _gram(y.tolist(), 1.3)
    n = 7
    row_k, row_l = [sum(r) for r in k], [sum(r) for r in l_]
    # tr(K H L H) = sum K.L - 2/n sum_i K_i. L_i. + K.. L.. / n^2
    trace = (
        sum(k[i][j] * l_[i][j] for i in range(n) for j in range(n))
        - 2 / n * sum(a * b for a, b in zip(row_k, row_l, strict=True))
        + sum(row_k) * sum(row_l) / n**2
    )
    assert hsic(x, y, 0.8, 1.3).item() == pytest.approx(trace / (n - 1) ** 2, rel=1e-12)
    with pytest.raises(FisherlabError, match=">= 2 paired samples"):
        hsic(x[:1], y[:1])


def test_normalized_hsic_matches_an_eigendecomposition():
    x = torch.randn(8, 4, generator=_gen(), dtype=torch.float64)
    y = torch.randn(8, 2, generator=_gen(1), dtype=torch.float64)
    n, eps = 8, 1e-3
    h = np.eye(n) - np.ones((n, n)) / n

    def resolvent(gram):
        vals, vecs = np.linalg.eigh(h @ np.array(gram) @ h)
        return vecs @ np.diag(vals / (vals + eps * n)) @ vecs.T

    rx, ry = resolvent(_gram(x.tolist(), 0.7)), resolvent(_gram(y.tolist(), 1.1))
    expected = np.trace(rx @ ry)
    assert normalized_hsic(x, y, 0.7, 1.1, eps).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("alpha", [-0.05, -1.0, 0.0, 0.3])
def test_label_smoothing_loss_matches_an_explicit_sum(alpha):
    logits = torch.randn(4, 5, generator=_gen(), dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 2])
    total = 0.0
    for i in range(4):
        row = logits[i].tolist()
        log_z = math.log(sum(math.exp(v) for v in row))
        for k in range(5):
            t = (1 - alpha) * (k == int(y[i])) + alpha / 5
            total -= t * (row[k] - log_z)
    ours = smoothed_cross_entropy(logits, y, alpha)
    assert ours.item() == pytest.approx(total / 4, rel=1e-12)
    if alpha >= 0:  # torch agrees where it accepts the factor
        torch_ls = F.cross_entropy(logits, y, label_smoothing=alpha)
        assert ours.item() == pytest.approx(torch_ls.item(), rel=1e-12)


def test_negative_label_smoothing_loss_matches_a_hand_computed_value():
    # logits (2, 0, -1), label 0, alpha = -0.1, K = 3: targets (1.1 - 0.1/3, -0.1/3, -0.1/3).
    # log Z = log(e^2 + 1 + e^-1); -log p = (log Z - 2, log Z, log Z + 1)
    log_z = math.log(math.exp(2.0) + 1.0 + math.exp(-1.0))
    nll = [log_z - 2.0, log_z, log_z + 1.0]
    by_hand = (1.1 - 0.1 / 3) * nll[0] - 0.1 / 3 * (nll[1] + nll[2])
    assert by_hand == pytest.approx(0.00317935, abs=1e-8)
    # Struppek et al.'s form: (1 - alpha) NLL + alpha mean_k(-log p_k), the same number
    assert (1.1 * nll[0] - 0.1 * sum(nll) / 3) == pytest.approx(by_hand, rel=1e-12)
    logits = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)
    ours = smoothed_cross_entropy(logits, torch.tensor([0]), -0.1)
    assert ours.item() == pytest.approx(by_hand, rel=1e-12)


def _struppek_100_epochs(alpha: float, e: int) -> float:
    """Their ls_scheduler, transcribed in epochs for their 100-epoch runs."""
    if e < 50:
        return 0.0
    if e < 75:
        return alpha * (e + 1 - 50) / (100 - 50)
    return alpha


@pytest.mark.parametrize("alpha", [-0.05, -0.2, -1.0])
def test_negative_ls_schedule_is_the_authors_rule(alpha):
    ours = [negative_ls_factor(alpha, e, 100) for e in range(100)]
    assert ours == pytest.approx([_struppek_100_epochs(alpha, e) for e in range(100)], abs=1e-12)
    assert ours[49] == 0 and ours[74] == pytest.approx(alpha / 2) and ours[75] == alpha
    # short runs, in fractions of the run (the documented values)
    assert [negative_ls_factor(alpha, e, 5) for e in range(5)] == pytest.approx(
        [0, 0, 0, 0.6 * alpha, alpha]
    )
    assert [negative_ls_factor(alpha, e, 4) for e in range(4)] == [0, 0, alpha / 2, alpha]
    assert [negative_ls_factor(alpha, e, 2) for e in range(2)] == [0, alpha]
    assert negative_ls_factor(alpha, 0, 1) == 0


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_zero_and_positive_smoothing_is_not_scheduled(alpha):
    assert {negative_ls_factor(alpha, e, 10) for e in range(10)} == {alpha}
    ls = LabelSmoothing(smoothing=alpha)
    ls.start_epoch(0, 10)
    assert ls.current == alpha and ls.behaviour() == {}


def test_label_smoothing_follows_its_schedule_epoch_by_epoch():
    ls = LabelSmoothing(smoothing=-0.2)
    assert ls.current == -0.2  # outside train: the full factor
    logits, y = torch.randn(6, 5, generator=_gen(), dtype=torch.float64), torch.arange(6) % 5
    for epoch, alpha in enumerate([0, 0, 0, -0.12, -0.2]):
        ls.start_epoch(epoch, 5)
        loss, parts = ls.loss(None, None, logits, y)
        assert parts["smoothing"].item() == pytest.approx(alpha)
        assert loss.item() == pytest.approx(smoothed_cross_entropy(logits, y, alpha).item())
    assert ls.behaviour() == {"ls_schedule": "struppek2024"}


def test_negative_ls_keys_name_the_schedule():
    # keys before the schedule (main at a46e5a8): ls (-0.05) 96e57f85c10a, ls 0.1 dc2a8d47885d
    key = TrainConfig(data="fashion", arch="target_cnn", defense="ls").key()
    assert key not in {"96e57f85c10a", "d2e53344bd41"}  # a cached unscheduled run is not reused
    positive = TrainConfig(data="fashion", arch="target_cnn", defense="ls", smoothing=0.1)
    assert positive.key() == "dc2a8d47885d"


def test_negative_ls_warm_up_trains_exactly_as_cross_entropy():
    """The first half of a scheduled run is plain cross-entropy, bit for bit.

    (On 128-300 images and 2-3 epochs the unscheduled factor does not collapse
    the model either, so a short run cannot show the difference in accuracy;
    this is the deterministic part of the schedule.)
    """
    two = {**SMALL, "epochs": 2, "arch": "target_cnn"}
    ls = train(TrainConfig(defense="ls", smoothing=-0.2, **two), progress=False)
    plain = train(TrainConfig(**two), progress=False)
    assert ls.history["smoothing"].tolist() == pytest.approx([0.0, -0.2])
    first = ["train_loss", "train_accuracy", "natural_accuracy"]
    assert ls.history[first].iloc[0].tolist() == plain.history[first].iloc[0].tolist()
    assert ls.history["train_loss"].iloc[1] < ls.history["ce"].iloc[1]  # alpha < 0 now applies


@pytest.mark.slow
def test_scheduled_negative_ls_does_not_collapse_where_constant_does(pretrained, monkeypatch):
    """Full mnist5k:0-4, 5 epochs (about 4 minutes on 2 CPU cores).

    Observed on the CPU: scheduled test accuracies 0.986 0.992 0.996 0.982
    0.986; constant -0.05 from the first step: 0.982 0.982 0.942 0.778 0.252.
    """
    config = TrainConfig(
        data="mnist5k:0-4", init=str(pretrained), epochs=5, defense="ls", smoothing=-0.05
    )
    scheduled = train(config, progress=False).history
    assert scheduled["smoothing"].tolist() == pytest.approx([0, 0, 0, -0.03, -0.05])
    monkeypatch.setattr(LabelSmoothing, "start_epoch", lambda self, epoch, epochs: None)
    constant = train(config, progress=False).history
    assert constant["smoothing"].tolist() == pytest.approx([-0.05] * 5)
    assert scheduled["natural_accuracy"].min() > 0.95
    assert constant["natural_accuracy"].iloc[-1] < 0.5


@pytest.mark.parametrize("freeze_first", [False, True])
def test_bido_loss_sums_normalized_hsic_over_trained_hidden_layers(freeze_first):
    model = _mlp(6, 8, 8, 3)
    x = torch.randn(9, 6, generator=_gen(), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 1])
    model[0].requires_grad_(not freeze_first)
    defense = BiDO(hsic_a1=0.3, hsic_a2=0.7)
    with defense.watching(model, [1, 2] if freeze_first else [0, 1, 2]):
        logits = model(x)
        loss, parts = defense.loss(model, x, logits, y)
    z0 = model[0](x)
    z1 = model[2](torch.relu(z0))
    hidden = [z1] if freeze_first else [z0, z1]
    onehot = F.one_hot(y, 3).double()
    hx = sum(normalized_hsic(x, z, 5.0, 5.0).item() for z in hidden)
    hy = sum(normalized_hsic(z, onehot, 5.0, 5.0).item() for z in hidden)
    assert parts["hsic_xz"].item() == pytest.approx(hx, rel=1e-10)
    assert parts["hsic_yz"].item() == pytest.approx(hy, rel=1e-10)
    ce = F.cross_entropy(logits, y).item()
    assert loss.item() == pytest.approx(ce + 0.3 * hx - 0.7 * hy, rel=1e-10)
    loss.backward()
    assert model[2].weight.grad is not None and model[2].weight.grad.abs().sum() > 0


def test_bido_needs_a_trained_hidden_layer():
    with pytest.raises(FisherlabError, match="only its head"):
        with BiDO().watching(_mlp(4, 3), [0]):
            pass
    with pytest.raises(FisherlabError, match="only the head is trained"):
        with BiDO().watching(_mlp(4, 5, 3), [1]):
            pass


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_mid_rejects_a_model_without_a_linear_head(tmp_path):
    conv_last = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (1, 2, 2)), nn.Conv2d(1, 2, 1))
    with pytest.raises(FisherlabError, match="last layer '2' is a conv"):
        MID().prepare(conv_last)
    scripted = tmp_path / "foreign.pt"
    torch.jit.save(torch.jit.script(_mlp(4, 5, 3)), str(scripted))
    with pytest.raises(FisherlabError, match="--defense mid: cannot replace the head of a Torch"):
        with pytest.warns(UserWarning, match="as TorchScript"):
            MID().prepare(load_model(scripted, trust_pickle=True))


# --------------------------------------------------------------------------- config
def test_config_key_is_pinned_for_configs_without_a_defense():
    # values computed on main at bae59d7, before the defense fields existed
    assert TrainConfig(data="fashion", arch="target_cnn").key() == "d2e53344bd41"
    assert TrainConfig(arch="target_cnn", **SMALL).key() == "536c6cb2fadc"
    ft = TrainConfig(data="mnist5k:0-4", init="nonexistent.pt", freeze_boundary=3)
    assert ft.key() == "eb4e0c26b41f"
    assert ft.to_dict()["defense"] == "none" and ft.to_dict()["beta"] is None
    mid = TrainConfig(data="fashion", arch="target_cnn", defense="mid")
    assert mid.beta == 0.003 and mid.strengths() == {"beta": 0.003}
    assert (
        mid.key() == TrainConfig(data="fashion", arch="target_cnn", defense="mid", beta=0.003).key()
    )
    keys = {
        TrainConfig(data="fashion", arch="target_cnn", **kw).key()
        for kw in [{}, {"defense": "mid"}, {"defense": "mid", "beta": 0.01}, {"defense": "ls"}]
    }
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(defense="mid", beta=-0.1), r"--beta \(MID's weight of the KL term\) must be >= 0"),
        (dict(defense="bido", hsic_a2=float("nan")), "--hsic-a2 .* must be >= 0, got nan"),
        (dict(defense="ls", smoothing=1.0), r"must be in \[-1, 1\), got 1"),
        (dict(defense="ls", beta=0.1), "--beta is a strength of --defense mid"),
        (dict(smoothing=-0.05), "--smoothing is a strength of --defense ls"),
        (dict(defense="dp"), "unknown defense 'dp'"),
    ],
)
def test_bad_defense_configs(kwargs, message):
    with pytest.raises(FisherlabError, match=message):
        TrainConfig(data="fashion", arch="target_cnn", **kwargs)


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(defense)``: (result, checkpoint path) of 1 epoch of target_cnn, cached."""
    cache: dict[str, tuple] = {}

    def get(defense: str):
        if defense not in cache:
            out = tmp_path_factory.mktemp(defense) / "m.pt"
            config = TrainConfig(arch="target_cnn", defense=defense, **SMALL)
            cache[defense] = (train(config, out=out, progress=False), out)
        return cache[defense]

    return get


@pytest.mark.parametrize(
    ("defense", "parts"),
    [("mid", ["ce", "kl"]), ("bido", ["ce", "hsic_xz", "hsic_yz"]), ("ls", ["ce", "smoothing"])],
)
def test_each_defense_trains_an_epoch_and_records_itself(trained, defense, parts):
    result, out = trained(defense)
    history = pd.read_csv(out.with_suffix(".history.csv"))
    assert list(history.columns[6:]) == parts
    row = history.iloc[0]
    assert all(math.isfinite(row[p]) for p in parts)
    strengths = TrainConfig(arch="target_cnn", defense=defense, **SMALL).strengths()
    if defense == "mid":  # the epoch means are linear in the batch means
        assert row["train_loss"] == pytest.approx(row["ce"] + 0.003 * row["kl"], rel=1e-5)
        assert row["kl"] > 0
    if defense == "bido":
        expected = row["ce"] + 0.05 * row["hsic_xz"] - 0.5 * row["hsic_yz"]
        assert row["train_loss"] == pytest.approx(expected, rel=1e-5)
        assert 0 < row["hsic_yz"] < 5 * 4  # five hidden layers, nHSIC(Z, Y) <= K - 1
    if defense == "ls":  # one epoch: all warm-up, alpha = 0 (negative_ls_factor)
        assert row["smoothing"] == 0 and row["train_loss"] == pytest.approx(row["ce"], rel=1e-6)
    run_json = json.loads(out.with_suffix(".run.json").read_text())
    assert run_json["config"]["defense"] == defense
    assert {k: run_json["config"][k] for k in strengths} == strengths
    meta = model_meta(load_model(out))
    assert meta.train_config["defense"] == defense and meta.train_config["key"] == run_json["key"]
    assert result.history["natural_accuracy"].iloc[0] == row["natural_accuracy"]


def test_mid_checkpoint_round_trip_and_layer_map(trained, device):
    result, out = trained("mid")
    loaded = load_model(out)
    assert model_meta(loaded).head == {"kind": "vib", "bottleneck": 128}
    x = make_data(CASES["target_cnn"], n=6).tensors[0].float()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))
        assert torch.equal(loaded(x), loaded(x))
    lm = layer_map(loaded)
    assert lm["kind"].tolist() == ["conv_bn"] * 4 + ["linear", "vib_head"]
    assert lm["name"].iloc[-1] == "head" and (lm["kind"] == "vib_head").sum() == 1
    assert layers(loaded)[-1].params == (
        "head.encoder.weight",
        "head.encoder.bias",
        "head.decoder.weight",
        "head.decoder.bias",
    )
    # the profile of a MID model: fast engines (on the device) against the per-sample
    # reference (on the CPU), both in float64
    model, data = loaded.double(), make_data(CASES["target_cnn"], n=6)
    ref = reference_profile(model, data)
    fast = profile(copy.deepcopy(model).to(device), on_device(data, device), device=device)
    assert fast["kind"].iloc[-1] == "vib_head" and fast["trace"].iloc[-1] > 0
    assert fast["trace"].to_numpy() == pytest.approx(ref["trace"].to_numpy(), rel=1e-9)


def test_finetuning_a_mid_checkpoint_replaces_its_vib_head(trained, tmp_path):
    init = trained("mid")[1]
    plain, again = tmp_path / "plain.pt", tmp_path / "again.pt"
    train(TrainConfig(init=str(init), freeze_boundary=5, **SMALL), out=plain, progress=False)
    loaded = load_model(plain)
    assert model_meta(loaded).head is None and isinstance(loaded.head, nn.Linear)
    config = TrainConfig(init=str(init), freeze_boundary=5, defense="mid", beta=0.01, **SMALL)
    train(config, out=again, progress=False)
    loaded = load_model(again)
    assert isinstance(loaded.head, VIBHead) and model_meta(loaded).train_config["beta"] == 0.01
    before = load_model(init).state_dict()
    assert not torch.equal(
        loaded.state_dict()["head.encoder.weight"], before["head.encoder.weight"]
    )


@pytest.mark.parametrize(
    ("defense", "kwargs", "frozen"),
    [
        ("mid", dict(freeze_boundary=3), [0, 1, 2]),
        ("bido", dict(freeze_boundary=3), [0, 1, 2]),
        ("ls", dict(freeze_boundary=3), [0, 1, 2]),
        ("bido", dict(train_layers=(0,)), [1, 2, 3, 4]),
    ],
)
def test_defense_with_frozen_layers_keeps_them_bit_identical(
    pretrained, tmp_path, defense, kwargs, frozen
):
    out = tmp_path / "ft.pt"
    config = TrainConfig(init=str(pretrained), defense=defense, **SMALL, **kwargs)
    result = train(config, out=out, progress=False)
    assert result.frozen_layers == frozen
    before, after = load_model(pretrained).state_dict(), load_model(out).state_dict()
    keys = layer_keys(load_model(out), frozen)
    assert len(keys) >= 6 and all(torch.equal(before[k], after[k]) for k in keys)
    trained_layer = 3 if "freeze_boundary" in kwargs else 0
    moved = layer_keys(load_model(out), [trained_layer])
    assert any(not torch.equal(before[k], after[k]) for k in moved)
    assert layers(load_model(out))[-1].kind == ("vib_head" if defense == "mid" else "linear")


# --------------------------------------------------------------------------- CLI
def test_cli_trains_with_negative_label_smoothing(tmp_path):
    out = tmp_path / "ls.pt"
    proc = run(
        "train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--epochs", "1",
        "--max-train-samples", "128", "--defense", "ls", "--smoothing", "-0.05",
        "--quiet", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "defense ls (smoothing -0.05)" in proc.stdout
    assert json.loads((tmp_path / "ls.run.json").read_text())["config"]["smoothing"] == -0.05
    assert "ce" in pd.read_csv(tmp_path / "ls.history.csv").columns


def test_cli_layers_of_a_mid_checkpoint(trained):
    proc = run("layers", str(trained("mid")[1]), "--csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("5,head,vib_head,")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--defense", "ls", "--beta", "0.1"], "--beta is a strength of --defense mid"),
        (["--smoothing", "-0.05"], "--smoothing is a strength of --defense ls"),
        (["--defense", "mid", "--beta", "-1"], "must be >= 0, got -1"),
        (["--defense", "bido", "--hsic-a1", "-0.5"], "--hsic-a1"),
        (["--defense", "ls", "--smoothing", "1"], "must be in [-1, 1), got 1"),
        (["--defense", "ls", "--smoothing", "-1.5"], "must be in [-1, 1), got -1.5"),
    ],
)
def test_cli_bad_strengths_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "x.pt"
    proc = run("train", "--arch", "target_cnn", "--data", "mnist5k:0-4", *args, "--out", str(out))
    assert_one_line_error(proc, 1, message)
    assert list(tmp_path.iterdir()) == []


def test_cli_bido_with_only_the_head_trained_is_one_line(pretrained, tmp_path):
    proc = run(
        "train", "--init", str(pretrained), "--data", "mnist5k:0-4", "--defense", "bido",
        "--freeze-boundary", "5", "--out", str(tmp_path / "x.pt"),
    )  # fmt: skip
    assert_one_line_error(proc, 1, "only the head is trained")
    assert list(tmp_path.iterdir()) == []

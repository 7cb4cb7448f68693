"""Devices, precision and data-loading workers (fisherlab/_device.py and where they are used).

These run on the CPU; ``tests/test_gpu.py`` runs the same paths on CUDA where
there is a GPU. The models here are small and untrained (a random target
and a random GAN prior), so no session fixture is needed.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run
from PIL import Image

from fisherlab._device import (
    autocast,
    check_amp,
    device_key,
    device_name,
    ieee_float32,
    resolve_device,
)
from fisherlab.attacks import (
    AttackConfig,
    GANConfig,
    GANPrior,
    attack,
    evaluate_saved,
    write_outputs,
)
from fisherlab.attacks.gan import Critic, Generator
from fisherlab.attacks.recorder import FisherRecorder
from fisherlab.cli import main
from fisherlab.data import InputSpec
from fisherlab.data.datasets import iterate_batches, load_dataset
from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile
from fisherlab.models import build_model, model_meta
from fisherlab.planner import read_profile
from fisherlab.training import TrainConfig, train

SPEC = InputSpec(1, 28, (0.5,), (0.5,))


def small_target() -> torch.nn.Module:
    """An untrained target_cnn for 3 classes with an input spec (attacks need one)."""
    torch.manual_seed(0)
    model = build_model("target_cnn", 3, in_channels=1, image_size=28).eval()
    model_meta(model).input_spec = SPEC
    return model


def small_prior() -> GANPrior:
    """An untrained GMI prior for 1x28x28 images."""
    torch.manual_seed(1)
    spec = InputSpec(1, 28, None, None)
    return GANPrior(Generator(1, 28).eval(), Critic(1, 28).eval(), "gmi", spec, 0, {})


# --------------------------------------------------------------------------- keys
def test_the_device_enters_keys_only_off_the_cpu():
    base = dict(data="fashion", arch="target_cnn")
    pinned = "d2e53344bd41"  # test_defenses pins it: the key of CPU runs never changes
    assert TrainConfig(**base, device="cpu").key() == pinned
    assert TrainConfig(**base, device=str(resolve_device(None))).key() == TrainConfig(**base).key()
    gpu = TrainConfig(**base, device="cuda")  # a config may name a device this machine lacks
    assert gpu.key() != pinned
    assert gpu.key() == TrainConfig(**base, device="cuda:1").key()  # the type, not the index
    assert TrainConfig(**base, device="cuda", amp="bf16").key() not in (pinned, gpu.key())
    assert device_key("cpu") is None and device_key("cuda:3") == "cuda"
    gan = GANConfig(data="mnist5k:5-9", device="cpu")
    assert gan.key() == "43a1b2f1d691"  # the key of this config before devices existed
    assert GANConfig(data="mnist5k:5-9", device="cuda").key() != gan.key()
    assert "amp" not in AttackConfig().to_dict()
    assert AttackConfig(amp="bf16").to_dict()["amp"] == "bf16"


def test_device_names_and_amp_are_checked_in_one_line():
    with pytest.raises(FisherlabError, match="unknown device 'xyz'"):
        TrainConfig(data="fashion", arch="target_cnn", device="xyz")
    with pytest.raises(FisherlabError, match="unknown --amp 'fp8'"):
        GANConfig(data="mnist5k:5-9", amp="fp8")
    with pytest.raises(FisherlabError, match="drop --amp"):
        AttackConfig(attack="whitebox", amp="bf16")  # no prior: nothing to run in bf16
    with pytest.raises(FisherlabError, match="needs a CUDA device, but this run is on cpu"):
        check_amp("bf16", "cpu")
    assert device_name("cuda:1") == "cuda:1" and device_name(None) == str(resolve_device(None))
    assert isinstance(autocast(None, "cpu"), type(autocast(None, "cuda")))


def test_fisherlab_device_says_what_auto_means(monkeypatch):
    monkeypatch.setenv("FISHERLAB_DEVICE", "cpu")
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")  # a named device is taken as named
    monkeypatch.setenv("FISHERLAB_DEVICE", "xyz")
    with pytest.raises(FisherlabError, match="FISHERLAB_DEVICE='xyz': unknown device 'xyz'"):
        resolve_device(None)
    monkeypatch.delenv("FISHERLAB_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected


def test_amp_on_the_cpu_is_refused_before_any_work(tmp_path):
    out = tmp_path / "runs" / "m.pt"
    config = TrainConfig(data="mnist5k:0-4", arch="target_cnn", device="cpu", amp="fp16")
    with pytest.raises(FisherlabError, match="drop --amp"):
        train(config, out=out, progress=False)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(FisherlabError, match="drop --amp"):
        attack(small_target(), small_prior(), attack="gmi", amp="bf16", device="cpu")


def _cli_cases(tmp) -> dict[str, tuple[list[str], str]]:
    cpu = ["--device", "cpu"]
    return {
        "train": (
            ["train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--amp", "bf16", *cpu,
             "--out", f"{tmp}/o/m.pt"],
            "--amp bf16 needs a CUDA device",
        ),
        "train-gan": (
            ["train-gan", "--data", "mnist5k:5-9", "--amp", "fp16", *cpu, "--out", f"{tmp}/o/g.pt"],
            "--amp fp16 needs a CUDA device",
        ),
        "attack": (
            ["attack", f"{tmp}/none.pt", "--generator", f"{tmp}/g.pt", "--amp", "bf16", *cpu,
             "--out", f"{tmp}/o"],
            "--amp bf16 needs a CUDA device",
        ),
        "evaluate": (
            ["evaluate", f"{tmp}/t.pt", "--reconstructions", f"{tmp}/o", "--eval-model",
             f"{tmp}/e.pt", "--device", "xyz"],
            "unknown device 'xyz'",
        ),
        "reproduce": (
            ["reproduce", "--workers", "-1", "--out", f"{tmp}/o"],
            "--workers must be an integer >= 0",
        ),
    }  # fmt: skip


def one_line_error(capsys, args: list[str], text: str) -> None:
    """``fisherlab ARGS`` (in this process: quicker than a subprocess) fails in one line."""
    assert main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fisherlab: error: "), lines
    assert text in lines[0], lines[0]


@pytest.mark.parametrize("command", ["train", "train-gan", "attack", "evaluate", "reproduce"])
def test_cli_device_errors_are_one_line(tmp_path, capsys, command):
    args, text = _cli_cases(tmp_path)[command]
    one_line_error(capsys, args, text)
    assert not (tmp_path / "o").exists()


def test_a_device_error_from_a_subprocess_is_one_line(tmp_path):
    args, text = _cli_cases(tmp_path)["train"]
    assert_one_line_error(run(*args), 1, text)


if not torch.cuda.is_available():

    def test_cuda_on_a_machine_without_it_is_one_line(tmp_path, capsys):
        args = ["train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--device", "cuda"]
        text = "CUDA is not available on this machine; use --device cpu"
        one_line_error(capsys, [*args, "--out", str(tmp_path / "m.pt")], text)


# --------------------------------------------------------------------------- records
def test_runs_record_their_device(tmp_path):
    config = TrainConfig(data="mnist5k:0-4", arch="target_cnn", epochs=1, max_train_samples=64)
    result = train(replace(config, device="cpu"), out=tmp_path / "m.pt", progress=False)
    record = json.loads((tmp_path / "m.run.json").read_text())
    assert record["device"] == "cpu" and record["config"]["device"] == "cpu"
    assert record["workers"] == 0 and record["key"] == replace(config, device="cpu").key()
    assert model_meta(result.model).train_config["device"] == "cpu"
    outcome = attack(small_target(), small_prior(), classes=(0, 1), per_class=1, iterations=1,
                     restarts=1, device="cpu")  # fmt: skip
    assert outcome.summary["device"] == "cpu"


# --------------------------------------------------------------------------- full precision
def test_autocast_never_reaches_the_fisher_engine():
    model = small_target()
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, torch.arange(16) % 3)
    plain = profile(model, data, device="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as if a caller ran it under amp
        inside = profile(model, data, device="cpu")
    assert inside["trace"].tolist() == plain["trace"].tolist()


def test_full_precision_turns_tf32_off_and_restores_it():
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    before = [flag.fp32_precision for flag in flags]
    with ieee_float32():
        assert [flag.fp32_precision for flag in flags] == ["ieee", "ieee"]
    assert [flag.fp32_precision for flag in flags] == before


def test_the_recorders_network_runs_in_full_precision_under_autocast():
    model = small_target()
    recorder = FisherRecorder(model, SPEC, every=1, samples=None)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    net = recorder.network(x)
    expected = model(SPEC.normalize(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(SPEC.normalize(x.bfloat16()))  # a bf16 generator's images
    assert out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-2)  # only the input's rounding differs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(SPEC.normalize(x)), expected)


# --------------------------------------------------------------------------- workers
def test_workers_read_the_same_batches(tmp_path):
    gen = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            pixels = gen.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / c / f"{i}.png")
    splits = load_dataset(f"imagefolder:{tmp_path}", input_spec=InputSpec(3, 8, None, None))
    order = torch.tensor([3, 0, 7, 5, 1, 6, 2, 4])[: len(splits.train)]
    serial = list(iterate_batches(splits.train, order, 3))
    parallel = list(iterate_batches(splits.train, order, 3, workers=2))
    assert len(serial) == len(parallel)
    for (x0, y0), (x1, y1) in zip(serial, parallel, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert torch.equal(splits.train.tensors(workers=2)[0], splits.train.tensors()[0])


# --------------------------------------------------------------------------- fisher.csv
def test_an_attack_without_fisher_every_writes_no_fisher_csv(tmp_path, capsys):
    common = dict(attack="gmi", classes=(0, 1), per_class=1, iterations=2, restarts=1)
    recorded = attack(small_target(), small_prior(), fisher_every=1, device="cpu", **common)
    plain = attack(small_target(), small_prior(), device="cpu", **common)
    out = tmp_path / "attack"
    write_outputs(recorded, out)
    assert (out / "fisher.csv").is_file()
    write_outputs(plain, out)  # the same folder again: the earlier fisher.csv is not this run's
    names = sorted(p.name for p in out.iterdir())
    assert "fisher.csv" not in names
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["files"]) == names
    text = "is an attack that recorded no Fisher (no fisher.csv): rerun fisherlab attack with"
    one_line_error(capsys, ["recommend-freeze", "--classification", str(out), "--inversion",
                            str(out)], text)  # fmt: skip
    with pytest.raises(FisherlabError, match="recorded no Fisher; rerun fisherlab attack with"):
        read_profile(out / "fisher.csv")
    # evaluate reads the set without it
    evaluated = evaluate_saved(out, small_target(), small_target(), "mnist5k:0-2", device="cpu")
    assert evaluated.summary["device"] == "cpu" and len(evaluated.rows) == 2

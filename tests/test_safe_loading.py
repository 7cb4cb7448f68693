"""Issue 11: untrusted files, non-finite checkpoints, reproducible bytes and keys, bounded
resources on tiny inputs, and the data layer's refusals.

Self-contained: every file is made here, in ``tmp_path``, from small ``npz`` data.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from fisherlab.attacks import AttackConfig, attack, write_outputs
from fisherlab.attacks.train_gan import GANConfig, train_gan
from fisherlab.cli import main
from fisherlab.data import InputSpec, load_dataset
from fisherlab.errors import FisherlabError
from fisherlab.fisher.outputs import write_profile
from fisherlab.models import build_model, load_model, save_model
from fisherlab.training import TrainConfig, train

SIZE = 8  # the smallest input target_cnn and the GAN priors take: quick on a CPU
TINY = ["--per-class", "1", "--iterations", "1", "--restarts", "1", "--quiet"]  # attacks


# --------------------------------------------------------------------------- helpers
def _npz(path: Path, labels, size: int = SIZE, **extra) -> Path:
    labels = np.asarray(labels, dtype=np.int64)
    x = np.random.default_rng(0).random((len(labels), 1, size, size), dtype=np.float32)
    np.savez(path, x=x, y=labels, **extra)
    return path


@pytest.fixture
def npz(tmp_path) -> Path:
    """Two classes, 40 images each, 1x8x8."""
    return _npz(tmp_path / "two.npz", np.arange(80) % 2)


def _payload(npz: Path, num_classes: int = 2) -> dict:
    """The dict of a fisherlab checkpoint of a 2-class target_cnn on ``npz``."""
    torch.manual_seed(0)
    model = build_model("target_cnn", num_classes, image_size=SIZE)
    return {
        "format": "fisherlab-checkpoint",
        "format_version": 1,
        "arch": "target_cnn",
        "arch_kwargs": {"num_classes": num_classes, "in_channels": 1, "image_size": SIZE},
        "head": None,
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "class_names": [str(c) for c in range(num_classes)],
        "input_spec": InputSpec(1, SIZE, None, None).to_dict(),
        "train_config": {"data": f"npz:{npz}"},
        "metrics": {},
        "fisherlab_version": "0",
        "torch_version": str(torch.__version__),
    }


@pytest.fixture
def good(tmp_path, npz) -> Path:
    """A sound fisherlab checkpoint of a 2-class target_cnn trained (nominally) on ``npz``."""
    path = tmp_path / "good.pt"
    torch.save(_payload(npz), path)
    return path


class _Evil(nn.Module):
    """A module whose TorchScript ``__setstate__`` writes a file named by the archive."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, SIZE * SIZE))
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.t()

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        torch.save(torch.zeros(1), state[1])  # runs inside torch.jit.load
        self.weight = state[0]
        self.marker = state[1]
        self.training = state[2]


def _evil(path: Path, marker: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(_Evil(str(marker))), str(path))
    return path


def _cli(argv: list, capsys) -> tuple[int, list[str]]:
    """Run the CLI in-process; returns the exit status and the lines of stderr."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


def _one_line_error(code: int, lines: list[str], *texts: str) -> None:
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("fisherlab: error: "), lines
    for text in texts:
        assert text in lines[0], lines[0]


# --------------------------------------------------------------------------- 1. TorchScript
def test_a_scripted_setstate_really_runs_inside_torch_jit_load(tmp_path):
    """The premise of the tests below: loading this archive writes the marker."""
    marker = tmp_path / "marker.pt"
    path = _evil(tmp_path / "evil.pt", marker)
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path))
    assert marker.exists()


@pytest.fixture
def recon(tmp_path, good) -> Path:
    """The output folder of a one-iteration white-box attack on ``good``."""
    config = AttackConfig(attack="whitebox", classes=(0, 1), per_class=1, iterations=1, restarts=1)
    out = tmp_path / "recon"
    write_outputs(attack(good, None, None, config), out)
    return out


def _loading_commands(evil: Path, good: Path, npz: Path, recon: Path, out: Path) -> dict:
    data = f"npz:{npz}"
    whitebox = ["attack", "--attack", "whitebox", "--classes", "0-1", *TINY, "--out", out]
    return {
        "layers": ["layers", evil],
        "profile": ["profile", evil, "--data", data, "--quiet", "--out", out],
        "train --init": ["train", "--init", evil, "--data", data, "--quiet", "--out", out / "m.pt"],
        "attack target": [*whitebox[:1], evil, *whitebox[1:]],
        "attack --eval-model": [
            *whitebox[:1],
            good,
            *whitebox[1:],
            "--eval-model",
            evil,
            "--private-data",
            data,
        ],
        "evaluate target": ["evaluate", evil, "--reconstructions", recon, "--eval-model", good],
        "evaluate --eval-model": [
            "evaluate",
            good,
            "--reconstructions",
            recon,
            "--eval-model",
            evil,
        ],
        "recommend-freeze": [
            "recommend-freeze",
            evil,
            "--data",
            data,
            "--generator",
            out / "no-gan.pt",
            "--out",
            out,
        ],
        "train-gan --target": [
            "train-gan",
            "--target",
            evil,
            "--kind",
            "kedmi",
            "--data",
            data,
            "--epochs",
            "1",
            "--quiet",
            "--out",
            out / "gan.pt",
        ],
    }


COMMANDS = list(_loading_commands(*[Path()] * 5))


@pytest.mark.parametrize("command", COMMANDS)
def test_torchscript_is_refused_without_trust_before_it_runs(
    command, tmp_path, good, npz, recon, capsys
):
    marker = tmp_path / "marker.pt"
    evil = _evil(tmp_path / "evil.pt", marker)
    out = tmp_path / "out"
    recon_files = sorted(p.name for p in recon.iterdir())
    argv = _loading_commands(evil, good, npz, recon, out)[command]
    code, lines = _cli(argv, capsys)
    _one_line_error(code, lines, "TorchScript", "--trust-pickle")
    assert not marker.exists()
    assert not out.exists()
    assert sorted(p.name for p in recon.iterdir()) == recon_files  # evaluate wrote nothing


@pytest.mark.parametrize("command", COMMANDS)
def test_trust_pickle_is_offered_and_passed_through_for_every_loaded_model(
    command, tmp_path, good, npz, recon, capsys
):
    marker = tmp_path / "marker.pt"
    evil = _evil(tmp_path / "evil.pt", marker)
    argv = [*_loading_commands(evil, good, npz, recon, tmp_path / "out")[command], "--trust-pickle"]
    with pytest.warns(UserWarning, match="TorchScript"):
        code, lines = _cli(argv, capsys)
    assert marker.exists()  # the flag reached load_model, which ran the archive
    if code:  # the model has no fisherlab metadata: a refusal is fine, a crash is not
        _one_line_error(code, lines)


def test_layers_of_trusted_torchscript_works_with_a_warning(tmp_path):
    marker = tmp_path / "marker.pt"
    evil = _evil(tmp_path / "evil.pt", marker)
    proc = subprocess.run(
        [sys.executable, "-m", "fisherlab", "layers", str(evil), "--trust-pickle"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TorchScript" in proc.stderr and "trust_pickle" in proc.stderr
    assert "other:_Evil" in proc.stdout and marker.exists()


def test_load_model_refuses_torchscript_without_trust(tmp_path):
    marker = tmp_path / "marker.pt"
    evil = _evil(tmp_path / "evil.pt", marker)
    with pytest.raises(FisherlabError, match=r"TorchScript.*trust_pickle=True"):
        load_model(evil)
    assert not marker.exists()
    with pytest.warns(UserWarning, match="TorchScript"):
        load_model(evil, trust_pickle=True)
    assert marker.exists()


# --------------------------------------------------------------------------- 2. non-finite
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": math.inf}, "lr must be finite and > 0"),
        ({"lr": 1e39}, "lr must be finite and > 0"),  # float32 cannot hold it
        ({"lr": 1e6, "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"momentum": -0.1}, r"momentum must be in \[0, 1\)"),
        ({"weight_decay": -1.0}, "weight_decay must be finite and >= 0"),
        ({"weight_decay": math.inf}, "weight_decay must be finite and >= 0"),
        ({"image_size": 0}, "image_size must be in 1..1024"),
        ({"image_size": 100_000}, "image_size must be in 1..1024"),
    ],
)
def test_bad_hyperparameters_are_refused_up_front(kwargs, message):
    with pytest.raises(FisherlabError, match=message):
        TrainConfig(data="mnist5k", arch="target_cnn", **kwargs)


def test_lr_inf_is_one_line_and_writes_nothing(tmp_path, npz, capsys):
    out = tmp_path / "m.pt"
    argv = ["train", "--arch", "target_cnn", "--data", f"npz:{npz}", "--lr", "inf", "--out", out]
    _one_line_error(*_cli(argv, capsys), "lr must be finite")
    assert list(tmp_path.iterdir()) == [npz]


def test_a_step_that_makes_the_weights_non_finite_stops_training(tmp_path, npz, capsys):
    # one batch per epoch: the loss is checked before each step and stays finite (BatchNorm)
    # while the weights grow; the third step overflows them, and before the fix the run
    # ended there with exit status 0 and a checkpoint full of inf
    out = tmp_path / "m.pt"
    argv = ["train", "--arch", "target_cnn", "--data", f"npz:{npz}", "--lr", "1e6"]
    argv += ["--max-train-samples", "64", "--batch-size", "64", "--epochs", "3", "--quiet"]
    code, lines = _cli([*argv, "--out", out], capsys)
    _one_line_error(code, lines, "non-finite", "batch 0", "lower the learning rate")
    assert list(tmp_path.iterdir()) == [npz]


def test_save_model_never_writes_non_finite_weights(tmp_path):
    model = build_model("target_cnn", 2, image_size=SIZE)
    with torch.no_grad():
        model.fc.weight[0, 0] = math.nan
    with pytest.raises(FisherlabError, match=r"non-finite.*fc\.weight"):
        save_model(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["layers", "evaluate", "attack"])
def test_non_finite_checkpoints_are_refused(command, tmp_path, npz, good, recon, capsys):
    payload = _payload(npz)
    payload["state_dict"]["features.1.running_var"][3] = math.inf
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    out = tmp_path / "out"
    argv = {
        "layers": ["layers", bad],
        "evaluate": ["evaluate", good, "--reconstructions", recon, "--eval-model", bad],
        "attack": ["attack", bad, "--attack", "whitebox", "--classes", "0", *TINY, "--out", out],
    }[command]
    _one_line_error(*_cli(argv, capsys), "non-finite", "features.1.running_var")
    assert not out.exists()


# --------------------------------------------------------------------------- 3. reproducible
def _tiny_train(npz: Path, out: Path, **kwargs) -> None:
    config = TrainConfig(data=f"npz:{npz}", arch="target_cnn", epochs=1, batch_size=32, **kwargs)
    train(config, out, progress=False)


def test_the_same_run_twice_writes_the_same_checkpoint_bytes(tmp_path, npz):
    _tiny_train(npz, tmp_path / "a" / "m.pt")
    _tiny_train(npz, tmp_path / "b" / "m.pt")
    assert (tmp_path / "a" / "m.pt").read_bytes() == (tmp_path / "b" / "m.pt").read_bytes()


def test_gan_and_output_files_are_byte_reproducible(tmp_path, npz, good, recon):
    config = GANConfig(data=f"npz:{npz}", epochs=1, batch_size=32)
    for d in ("a", "b"):
        train_gan(config, tmp_path / d / "gan.pt", progress=False)
    assert (tmp_path / "a" / "gan.pt").read_bytes() == (tmp_path / "b" / "gan.pt").read_bytes()
    config = AttackConfig(attack="whitebox", classes=(0,), per_class=1, iterations=1, restarts=1)
    outcome = attack(good, None, None, config)
    diagonal = {"fc.weight": torch.arange(6.0)}
    for d in ("a", "b"):
        write_outputs(outcome, tmp_path / d / "attack")
        write_profile(tmp_path / d / "profile", pd.DataFrame({"index": [0]}), {}, diagonal)
    for name in ("attack/reconstructions.pt", "profile/diagonal.pt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_keys_hash_checkpoint_content_not_bytes(tmp_path, npz):
    payload = _payload(npz)
    a, b, c = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    torch.save(payload, a)
    torch.save(payload, b)  # same content, another zip root ("b/" instead of "a/")
    assert a.read_bytes() != b.read_bytes()
    payload["state_dict"]["fc.bias"][0] += 1.0
    torch.save(payload, c)
    for make in (
        lambda p: TrainConfig(data="mnist5k:0-4", init=str(p), freeze_boundary=2),
        lambda p: GANConfig(data="mnist5k:5-9", kind="kedmi", target=str(p)),
    ):
        assert make(a).key() == make(b).key() != make(c).key()
    # a file that is not a fisherlab checkpoint is hashed by its bytes
    other = tmp_path / "other.pt"
    other.write_bytes(b"not a checkpoint")
    assert make(other).key() != make(a).key()


# --------------------------------------------------------------------------- 4. bounded
_MEASURE = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys
    from fisherlab.cli import main

    def vm_bytes():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()

    def run(argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        return {"code": code, "stderr": err.getvalue()}

    # the same commands on sound input first: their own peak is the baseline
    warm = [run(argv) for argv in json.loads(sys.argv[1])]
    # a regression fails fast (MemoryError) instead of taking gigabytes
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (2 << 30), resource.RLIM_INFINITY))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = [run(argv) for argv in json.loads(sys.argv[2])]
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({"warm": warm, "results": results, "growth_mb": growth}))
    """
)


def test_tiny_inputs_cannot_make_fisherlab_allocate_gigabytes(tmp_path, npz, good):
    big_label = _npz(tmp_path / "big_label.npz", [0, 20_000_000])
    assert big_label.stat().st_size < 4000
    many = _payload(npz)
    many["arch_kwargs"]["num_classes"] = 3_000_000  # a 2 MB file declaring 3e6 classes
    torch.save(many, tmp_path / "many.pt")
    some = _payload(npz)
    some["arch_kwargs"]["num_classes"] = 90_000  # under the cap: the file itself disagrees
    torch.save(some, tmp_path / "some.pt")
    out = str(tmp_path / "out")
    train = ["train", "--init", str(good), "--data", f"npz:{npz}", "--out", out]
    hit = ["attack", str(good), "--attack", "whitebox", *TINY, "--out", out]
    cases = {
        "data mnist5k:0-20000000": (["data", "mnist5k:0-20000000"], "above 99999"),
        "train --train-layers 0-100000000": ([*train, "--train-layers", "0-100000000"], "above"),
        "attack --classes 0-200000000": ([*hit, "--classes", "0-200000000"], "above 99999"),
        "npz label 2e7": (["data", f"npz:{big_label}"], "20000000"),
        "checkpoint with 3e6 classes": (["layers", str(tmp_path / "many.pt")], "3000000"),
        # under the caps, the messages are still short
        "data mnist5k:0-99999": (["data", "mnist5k:0-99999"], "99987 more"),
        "train --train-layers 0-99999": ([*train, "--train-layers", "0-99999"], "99991 more"),
        "attack --classes 0-99999": ([*hit, "--classes", "0-99999"], "99995 more"),
        "checkpoint with 90000 classes": (["layers", str(tmp_path / "some.pt")], "90000"),
    }
    warm = [
        ["data", "mnist5k:0-9"],
        ["layers", str(good)],
        [*train[:-1], str(tmp_path / "warm" / "m.pt"), "--epochs", "1", "--train-layers", "5"],
        [*hit[:-1], str(tmp_path / "warm"), "--classes", "0-1"],
    ]
    argvs = [argv for argv, _ in cases.values()]
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(warm), json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["code"] for r in measured["warm"]] == [0] * len(warm), measured["warm"]
    for (name, (_, text)), result in zip(cases.items(), measured["results"], strict=True):
        lines = result["stderr"].strip().splitlines()
        assert result["code"] == 1, (name, lines)
        assert len(lines) == 1 and lines[0].startswith("fisherlab: error: "), (name, lines)
        assert len(lines[0]) < 400, (name, lines[0][:400])
        assert text in lines[0], (name, lines[0])
    # peak RSS beyond that of the same commands on sound input (the cases before the
    # fix: 3.6 to 4.4 GB, or a MemoryError under the 2 GB address-space limit)
    assert measured["growth_mb"] < 100, measured["growth_mb"]
    assert not Path(out).exists()


# --------------------------------------------------------------------------- 5. data layer
def _png(path: Path, seed: int) -> Path:
    """A noisy 8x8 RGB PNG (about 270 bytes: noise does not compress)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root: Path, classes=("alice", "bob"), per_class: int = 5) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", 10 * c + i)
    return root


def test_an_empty_class_folder_is_refused(tmp_path):
    root = _folder(tmp_path / "faces")
    (root / "carol").mkdir()
    with pytest.raises(FisherlabError, match=r"carol.*no images"):
        load_dataset(f"imagefolder:{root}")


def test_a_file_that_is_not_an_image_is_refused_when_the_folder_is_read(tmp_path):
    root = _folder(tmp_path / "faces")
    (root / "bob" / "broken.png").write_bytes(b"this is not a PNG file at all")
    with pytest.raises(FisherlabError, match=r"broken\.png"):
        load_dataset(f"imagefolder:{root}")


def test_a_truncated_image_is_a_one_line_error_naming_the_file(tmp_path, capsys):
    root = _folder(tmp_path / "faces")
    for name in ("alice", "bob"):
        bad = root / name / "0.png"
        bad.write_bytes(bad.read_bytes()[:80])  # header intact, pixel data cut
    out = tmp_path / "m.pt"
    argv = ["train", "--arch", "target_cnn", "--data", f"imagefolder:{root}", "--image-size"]
    argv += [str(SIZE), "--epochs", "1", "--quiet", "--out", out]
    _one_line_error(*_cli(argv, capsys), "0.png")
    assert not out.exists()


@pytest.mark.parametrize("present", ["x_test", "y_test"])
def test_npz_test_arrays_come_in_pairs(tmp_path, present):
    extra = {"x_test": np.zeros((2, 1, SIZE, SIZE), np.float32), "y_test": np.zeros(2, np.int64)}
    path = _npz(tmp_path / "d.npz", [0, 1, 0, 1], **{present: extra[present]})
    missing = "y_test" if present == "x_test" else "x_test"
    with pytest.raises(FisherlabError, match=f"{present}.*{missing}"):
        load_dataset(f"npz:{path}")


@pytest.mark.parametrize("kind", ["zero bytes", "no arrays", "no samples"])
def test_an_empty_npz_is_refused(tmp_path, kind):
    path = tmp_path / "empty.npz"
    if kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "no arrays":
        np.savez(path)
    else:
        np.savez(path, x=np.zeros((0, 1, SIZE, SIZE), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(FisherlabError, match="npz"):
        load_dataset(f"npz:{path}")


def test_training_needs_two_classes(tmp_path):
    one = _npz(tmp_path / "one.npz", np.zeros(40))
    with pytest.raises(FisherlabError, match="at least 2 classes"):
        train(TrainConfig(data=f"npz:{one}", arch="target_cnn", epochs=1), progress=False)

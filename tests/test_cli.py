from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from fisherlab.checkpoint import load_model
from fisherlab.layers import layer_state_keys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fisherlab", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fisherlab") and "error" in lines[0]
    assert text in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("cmd", [[], ["train"], ["layers"], ["data"]])
def test_help(cmd):
    proc = run(*cmd, "--help")
    assert proc.returncode == 0 and "usage: fisherlab" in proc.stdout


def test_layers_of_checkpoint_and_bitwise_freeze_through_the_cli(pretrained, tmp_path):
    out = tmp_path / "ft.pt"
    proc = run(
        "train",
        "--init",
        str(pretrained),
        "--data",
        "mnist5k:0-4",
        "--freeze-boundary",
        "3",
        "--epochs",
        "1",
        "--max-train-samples",
        "200",
        "--quiet",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "natural accuracy" in proc.stdout and "frozen layers [0, 1, 2]" in proc.stdout
    proc = run("layers", str(out), "--csv")
    assert proc.returncode == 0, proc.stderr
    from io import StringIO

    frame = pd.read_csv(StringIO(proc.stdout))
    assert frame["kind"].tolist() == ["conv_bn"] * 4 + ["linear"] * 2
    before, after = load_model(pretrained).state_dict(), load_model(out).state_dict()
    frozen = [k for m in frame["modules"][:3] for k in layer_state_keys(m, list(after))]
    assert len(frozen) == 3 * 7  # conv weight+bias, BN weight, bias, mean, var, count
    assert all(torch.equal(before[k], after[k]) for k in frozen)


def test_layers_of_an_architecture():
    proc = run("layers", "--arch", "resnet18", "--image-size", "32")
    assert proc.returncode == 0
    assert "residual_block" in proc.stdout and "conv1;bn1" in proc.stdout


def test_data_command():
    proc = run("data", "mnist5k:0-4")
    assert proc.returncode == 0 and "2000 train / 500 test" in proc.stdout


def test_unknown_dataset_is_one_line_and_writes_nothing(tmp_path):
    proc = run("train", "--arch", "target_cnn", "--data", "nope", "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(proc, 1, "unknown dataset 'nope'")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert_one_line_error(run("layers", str(bad)), 1, "not a readable torch file")
    proc = run(
        "train", "--init", str(bad), "--data", "mnist5k:0-4", "--out", str(tmp_path / "o.pt")
    )
    assert_one_line_error(proc, 1, "not a readable torch file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_boundary_out_of_range(pretrained, tmp_path):
    proc = run(
        "train",
        "--init",
        str(pretrained),
        "--data",
        "mnist5k:0-4",
        "--freeze-boundary",
        "9",
        "--out",
        str(tmp_path / "o.pt"),
    )
    assert_one_line_error(proc, 1, "freeze boundary 9 is out of range")
    assert list(tmp_path.iterdir()) == []


def test_diverging_training_names_the_batch_and_writes_nothing(pretrained, tmp_path):
    proc = run(
        "train",
        "--init",
        str(pretrained),
        "--data",
        "mnist5k:0-4",
        "--lr",
        "1e30",
        "--save-every",
        "1",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "o.pt"),
    )
    assert_one_line_error(proc, 1, "lower the learning rate")
    assert "batch" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_are_one_line():
    proc = run("train", "--data", "fashion")
    assert_one_line_error(proc, 2, "required")
    proc = run("train", "--arch", "alexnet", "--data", "fashion", "--out", "x.pt")
    assert_one_line_error(proc, 2, "invalid choice")

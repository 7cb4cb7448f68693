"""Helpers the test files share (importable from every sub-folder: tests/ is on the path).

* :func:`run`, :func:`assert_one_line_error`: the CLI in a subprocess, and its errors;
* :func:`rel`: the largest relative difference of two arrays;
* :func:`layer_keys`: the state-dict keys of some layers of a model;
* :func:`read`, :func:`full_target`: tables and checkpoints of a reproduction's results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from fisherlab.models import layer_map, layer_state_keys

REPO = Path(__file__).resolve().parents[1]
"""The repository root."""


def run(*args: str) -> subprocess.CompletedProcess:
    """``python -m fisherlab ARGS`` in a subprocess, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fisherlab", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, text: str) -> None:
    """The command failed with ``code`` and one line on stderr that names ``text``."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("fisherlab") and "error" in lines[0]
    assert text in lines[0]
    assert "Traceback" not in proc.stderr


def rel(a, b) -> float:
    """``max |a - b| / |b|`` elementwise (``b`` may be zero only where ``a`` is)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def layer_keys(model: nn.Module, indices) -> list[str]:
    """The state-dict keys (parameters and buffers) of the layers ``indices`` of the layer map."""
    lm = layer_map(model)
    keys = list(model.state_dict())
    return [k for i in indices for k in layer_state_keys(lm.loc[i, "modules"], keys)]


def read(out: Path, name: str) -> pd.DataFrame:
    """The results table ``<out>/<name>.csv``."""
    return pd.read_csv(out / f"{name}.csv")


def full_target(out: Path) -> Path:
    """The checkpoint of plain full fine-tuning from Fashion-MNIST in a reproduction."""
    runs = read(out, "runs")
    full = runs.query("boundary == 0 and domain == 'fashion' and defense == 'none'")
    step = full["attack_step"].iloc[0]
    config = json.loads((out / "steps" / step / "step.json").read_text())["config"]
    key = config["target"].split("@")[0]
    return out / "steps" / f"train-{key}" / "model.pt"

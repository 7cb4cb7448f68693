"""Helpers the test files share (importable from every sub-folder: tests/ is on the path).

* :func:`run`, :func:`run_process`, :func:`assert_one_line_error`: the CLI in this
  process or in a subprocess, and its errors;
* :func:`rel`: the largest relative difference of two arrays;
* :func:`layer_keys`: the state-dict keys of some layers of a model;
* :func:`read`, :func:`full_target`: tables and checkpoints of a reproduction's results.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from fisherlab.models import layer_map, layer_state_keys

REPO = Path(__file__).resolve().parents[1]
"""The repository root."""


def run_process(*args: str) -> subprocess.CompletedProcess:
    """``python -m fisherlab ARGS`` in a subprocess, its output captured.

    For what only a real process shows: start-up, signals, pipes, torchrun.
    """
    return subprocess.run(
        [sys.executable, "-m", "fisherlab", *args], capture_output=True, text=True, timeout=300
    )


def run(*args: str) -> subprocess.CompletedProcess:
    """``fisherlab ARGS`` through :func:`fisherlab.cli.main` in this process, output captured.

    The same entry point as ``python -m fisherlab`` without a new interpreter
    importing torch each time (seconds per call on 2 cores). Warnings, which
    the command line prints on stderr, are appended to ``stderr`` as Python's
    default ``showwarning`` would print them (pytest records them otherwise).
    """
    from fisherlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.simplefilter("default")
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help and usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    text = err.getvalue() + "".join(
        warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
    )
    return subprocess.CompletedProcess(
        ["fisherlab", *args], code, stdout=out.getvalue(), stderr=text
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

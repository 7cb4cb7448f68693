"""A reproduction on Ray writes the serial run's tables, and resumes under either executor.

Slow (``-m slow``): the quick preset twice, and the smoke preset under Ray
interrupted and finished here. A Ray step of one CPU computes with one torch
thread, and so does each step of a serial run with ``threads=1``: on the CPU
every step, key and number is then the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fisherlab.experiments import reproduce
from fisherlab.experiments.executors import RayExecutor

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="needs the ray extra: pip install 'fisherlab[ray]'")

_TIMING = ("seconds", "cached")
"""``steps.csv``'s columns that say how a run went, not what it computed."""


def assert_same_tables(a: Path, b: Path) -> None:
    """Every table of two reproductions equal, value for value (timings aside)."""
    names = sorted(p.name for p in a.glob("*.csv"))
    assert names == sorted(p.name for p in b.glob("*.csv"))
    assert "runs.csv" in names and "claims.csv" in names
    for name in names:
        left, right = pd.read_csv(a / name), pd.read_csv(b / name)
        if name == "steps.csv":
            left, right = left.drop(columns=list(_TIMING)), right.drop(columns=list(_TIMING))
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)
    config_a = json.loads((a / "config.json").read_text())
    config_b = json.loads((b / "config.json").read_text())
    assert config_a["config"] == config_b["config"]


def test_the_quick_preset_on_ray_writes_the_serial_tables(tmp_path):
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    reproduce("quick", serial, progress=False, threads=1)
    executor = RayExecutor(num_cpus=2)
    reproduce("quick", on_ray, progress=False, executor=executor)
    assert_same_tables(serial, on_ray)
    steps = pd.read_csv(on_ray / "steps.csv")
    assert not steps["cached"].astype(bool).iloc[0]  # computed on Ray, not copied
    described = json.loads((on_ray / "config.json").read_text())["executor"]
    assert described["name"] == "ray" and described["num_cpus"] == 2
    assert described["cluster"]["CPU"] == 2


def test_a_run_interrupted_on_ray_finishes_serially(tmp_path):
    serial = tmp_path / "serial"
    reproduce("smoke", serial, progress=False, threads=1)
    out = tmp_path / "smoke"
    command = [sys.executable, "-m", "fisherlab", "reproduce", "--preset", "smoke"]
    command += ["--out", str(out), "--executor", "ray", "--ray-cpus", "2", "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while len(list(out.glob("steps/*/step.json"))) < 12:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: the run stops, the local Ray instance with it
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output
    finished = {p.parent.name for p in out.glob("steps/*/step.json")}
    assert 12 <= len(finished) < 66, len(finished)
    assert not (out / "runs.csv").exists()
    tables = reproduce("smoke", out, progress=False, threads=1)
    steps = tables["steps"]
    cached = set(steps.loc[steps["cached"].astype(bool), "kind"] + "-" + steps["key"])
    assert finished <= cached  # nothing finished on Ray was computed again
    assert_same_tables(serial, out)

"""Output files as users expect them (fisherlab/_io.py, and the CLI's stdout).

Files and folders get the modes of any new file (``0o666`` less the umask)
and folder (``0o777`` less the umask), not the ``0o600``/``0o700`` of
:mod:`tempfile`; a command whose reader goes away (``| head -1``) ends
quietly.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from helpers import REPO

from fisherlab._io import file_mode, folder_mode, output_set, write_atomic, write_json, write_torch
from fisherlab.models import build_model, save_model


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_files_and_folders_get_their_mode_from_the_umask(tmp_path, mask):
    with umask(mask):
        assert file_mode() == 0o666 & ~mask and folder_mode() == 0o777 & ~mask
        write_atomic(tmp_path / "a.txt", lambda p: p.write_text("a"))
        write_json(tmp_path / "b.json", {"b": 1})
        write_torch(tmp_path / "c.pt", {"c": torch.zeros(2)})
        with output_set(tmp_path / "set", "manifest.json") as tmp:
            write_atomic(tmp / "data.csv", lambda p: p.write_text("x\n1\n"))
            (tmp / "sub").mkdir()
            write_json(tmp / "manifest.json", {})
    for name in ("a.txt", "b.json", "c.pt", "set/data.csv", "set/manifest.json"):
        assert mode(tmp_path / name) == 0o666 & ~mask, name
    assert mode(tmp_path / "set") == 0o777 & ~mask
    assert mode(tmp_path / "set" / "sub") == 0o777 & ~mask


def test_an_existing_file_rewritten_gets_the_umask_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    target.chmod(0o600)
    with umask(0o022):
        write_atomic(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new" and mode(target) == 0o644


def test_an_output_set_removes_its_own_stale_optional_file(tmp_path):
    out = tmp_path / "set"
    with output_set(out, "m.json", owns=["optional.csv"]) as tmp:
        (tmp / "optional.csv").write_text("1")
        (tmp / "m.json").write_text("{}")
    (out / "other.txt").write_text("another command's file")
    with output_set(out, "m.json", owns=["optional.csv"]) as tmp:
        (tmp / "m.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "other.txt"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_model(build_model("target_cnn", 5), path)
    return path


def _fisherlab(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever is installed
    return subprocess.Popen([sys.executable, "-m", "fisherlab", *args], cwd=REPO, env=env, **kwargs)


def test_a_closed_stdout_ends_the_command_quietly(checkpoint):
    # the reader is gone before anything is written: every write meets a broken pipe
    proc = _fisherlab("layers", str(checkpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert err.decode() == ""
    assert proc.returncode in (0, 141)


def test_layers_piped_into_head_ends_quietly(checkpoint):
    script = f"set -o pipefail; {sys.executable} -m fisherlab layers {checkpoint} | head -1"
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)
    assert proc.stdout.split() == ["index", "name", "kind", "n_params", "modules"]

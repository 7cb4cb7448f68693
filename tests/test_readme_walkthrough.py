"""The README's walkthrough runs as written (slow): every command, top to bottom.

The blocks between ``<!-- walkthrough:start -->`` and ``<!-- walkthrough:end -->``
are extracted and run with ``bash -e`` and ``FISHERLAB_TINY=1`` (every command
at token sizes), so the README cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"


def walkthrough() -> str:
    """The walkthrough's shell commands, in README order."""
    text = (REPO / "README.md").read_text()
    parts = re.findall(re.escape(START) + r"(.*?)" + re.escape(END), text, flags=re.S)
    blocks = [b for part in parts for b in re.findall(r"```bash\n(.*?)```", part, flags=re.S)]
    return "\n".join(blocks)


def test_the_walkthrough_is_there_and_starts_with_defend():
    script = walkthrough()
    commands = [line for line in script.splitlines() if line.startswith("fisherlab ")]
    assert len(commands) >= 15
    assert commands[0].startswith("fisherlab train")  # the model defend needs
    assert commands[1].startswith("fisherlab defend")


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "FISHERLAB_TINY": "1", "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(
        ["bash", "-e", "-x", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for made in ("runs/defend/report.md", "runs/ft_planned.pt", "runs/compare.csv"):
        assert (tmp_path / made).is_file(), made

"""A reproduction one step after another against Ray with 1 and 2 workers, side by side.

Runs one preset (``quick`` by default) from an empty folder under each
executor in turn, each in its own process, and prints the wall time of each,
its ratio to the serial run at the same thread count (one thread per step,
as a Ray worker computes), and the largest resident memory of any process of
the run (the driver or a Ray worker). It then checks that the Ray runs wrote
the serial run's tables (steps, keys and numbers; timings aside).

The workers share this machine's cores: on 2 cores, 2 workers of 1 thread
each are the most that do not oversubscribe it. The serial run at torch's
default thread count (all cores) is printed too; its numbers differ from the
others in the last digits (another thread count), so it is timed only.

Usage: python benchmarks/executors.py [--preset quick] [--out /tmp/executors]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

RUNS = {
    "serial, default threads": [],
    "serial, --threads 1": ["--threads", "1"],
    "ray, 1 worker": ["--executor", "ray", "--ray-cpus", "1"],
    "ray, 2 workers": ["--executor", "ray", "--ray-cpus", "2"],
}
"""The runs, by name: extra options of ``fisherlab reproduce``."""

BASELINE = "serial, --threads 1"


def run(preset: str, out: Path, options: list[str]) -> tuple[float, float]:
    """Wall seconds and the largest process's peak RSS (MiB) of one reproduction."""
    command = [sys.executable, "-m", "fisherlab", "reproduce", "--preset", preset]
    command += ["--out", str(out), "--quiet", *options]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return seconds, peak


def same_tables(a: Path, b: Path) -> list[str]:
    """The tables that differ between two runs (``steps.csv`` without its timings)."""
    differ = []
    for table in sorted(p.name for p in a.glob("*.csv")):
        left, right = pd.read_csv(a / table), pd.read_csv(b / table)
        if table == "steps.csv":
            left = left.drop(columns=["seconds", "cached"])
            right = right.drop(columns=["seconds", "cached"])
        if not left.equals(right):
            differ.append(table)
    return differ


def main() -> None:
    """Run every configuration and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", help="the preset (default: quick)")
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/fisherlab-executors"), help="scratch folder"
    )
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    timings = {}
    for name, options in RUNS.items():
        folder = args.out / name.replace(", ", "_").replace(" ", "-")
        seconds, peak = run(args.preset, folder, options)
        timings[name] = (seconds, peak, folder)
        print(f"{name}: {seconds:.1f} s, largest process {peak:.0f} MiB", flush=True)
    base = timings[BASELINE][0]
    print(f"\n| {args.preset} preset | wall | vs {BASELINE} | largest process | tables |")
    print("| --- | --- | --- | --- | --- |")
    for name, (seconds, peak, folder) in timings.items():
        if name.startswith("serial, default"):
            check = "timed only (another thread count)"
        else:
            differ = same_tables(timings[BASELINE][2], folder)
            check = "equal" if not differ else "differ: " + ", ".join(differ)
        print(f"| {name} | {seconds:.0f} s | {base / seconds:.2f}x | {peak:.0f} MiB | {check} |")


if __name__ == "__main__":
    main()

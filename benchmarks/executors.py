"""A reproduction one step after another against Ray with 1 and 2 workers, side by side.

Runs one preset (``quick`` by default) from an empty folder under each
executor in turn, each in its own process, and prints the wall time of each,
its ratio to the serial run at the same thread count (one thread per step,
as a Ray worker computes), and its peak memory: the largest resident set of
all its processes together (the driver, Ray's services and workers) and of
the largest one, sampled every half second from ``/proc`` (Linux) over the
run's own session. It then checks that the Ray runs wrote the serial run's
tables (steps, keys and numbers; timings aside).

The workers share this machine's cores: on 2 cores, 2 workers of 1 thread
each are the most that do not oversubscribe it. The serial run at torch's
default thread count (all cores) is printed too; it trains other models
(another thread count changes every reduction, and training grows the
difference), so it is timed only.

Usage: python benchmarks/executors.py [--preset quick] [--out /tmp/executors]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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


def session_memory(session: int) -> tuple[int, int]:
    """Resident bytes of all processes of one session together, and of the largest."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = largest = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command's name
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[3]) == session:  # field 6 of proc(5): the session; 24: rss in pages
            rss = int(fields[21]) * page
            total, largest = total + rss, max(largest, rss)
    return total, largest


def run(preset: str, out: Path, options: list[str]) -> tuple[float, float, float]:
    """Wall seconds, and peak MiB of all the run's processes and of the largest, of one run."""
    command = [sys.executable, "-m", "fisherlab", "reproduce", "--preset", preset]
    command += ["--out", str(out), "--quiet", *options]
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        peak_total = peak_largest = 0
        while proc.poll() is None:
            total, largest = session_memory(proc.pid)  # its own session: Ray's processes too
            peak_total, peak_largest = max(peak_total, total), max(peak_largest, largest)
            time.sleep(0.5)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{log.read()[-2000:]}")
    return seconds, peak_total / 2**20, peak_largest / 2**20


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
        seconds, total, largest = run(args.preset, folder, options)
        timings[name] = (seconds, total, largest, folder)
        print(f"{name}: {seconds:.1f} s, peak {total:.0f} MiB (largest process {largest:.0f})")
    base = timings[BASELINE][0]
    print(f"\n| {args.preset} preset | wall | vs {BASELINE} | peak, all | largest | tables |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (seconds, total, largest, folder) in timings.items():
        if name.startswith("serial, default"):
            check = "timed only (another thread count)"
        else:
            differ = same_tables(timings[BASELINE][3], folder)
            check = "equal" if not differ else "differ: " + ", ".join(differ)
        row = f"| {name} | {seconds:.0f} s | {base / seconds:.2f}x | {total:.0f} MiB "
        print(row + f"| {largest:.0f} MiB | {check} |", flush=True)


if __name__ == "__main__":
    main()

"""Compare the tables of two reproductions value by value: ``compare_results.py A B``.

Every ``*.csv`` of folder ``A`` (``steps.csv`` aside: it holds timings) must
exist in ``B`` with the same columns and exactly equal values
(``DataFrame.equals``). Columns that name step folders (``attack_step``,
``profile_step``) are left out, since those names hash the steps' inputs: they
match only when both runs share a cache. Prints one line per table and exits
1 if any differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def compare(a: Path, b: Path) -> list[str]:
    """The tables of ``a`` that differ in ``b`` (or are missing there)."""
    differ = []
    for file in sorted(a.glob("*.csv")):
        if file.name == "steps.csv":
            continue
        other = b / file.name
        if not other.is_file():
            print(f"missing {file.name} in {b}")
            differ.append(file.name)
            continue
        x, y = pd.read_csv(file), pd.read_csv(other)
        keep = [c for c in x.columns if not c.endswith("_step")]
        same = list(x.columns) == list(y.columns) and x[keep].equals(y[keep])
        print(f"{'same' if same else 'DIFFERENT'} {file.name} {x.shape}")
        if not same:
            differ.append(file.name)
    return differ


def main() -> int:
    """Compare the two folders given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    return 1 if compare(args.a, args.b) else 0


if __name__ == "__main__":
    sys.exit(main())

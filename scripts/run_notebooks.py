"""Execute the figure notebooks, which save their PNGs (default: figures/ from results/default).

Usage: python scripts/run_notebooks.py [--results DIR] [--figures DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def main() -> None:
    """Run every notebook in notebooks/ with its folder as working directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", help="a fisherlab reproduce --out directory")
    parser.add_argument("--figures", help="where the notebooks save their PNGs")
    args = parser.parse_args()
    if args.results:
        os.environ["FISHERLAB_RESULTS"] = str(Path(args.results).resolve())
    if args.figures:
        os.environ["FISHERLAB_FIGURES"] = str(Path(args.figures).resolve())
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
        )
        client.execute()
        print(f"ran {path.name}")


if __name__ == "__main__":
    main()

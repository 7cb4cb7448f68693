"""Execute the figure notebooks with their parameters (papermill-style, without papermill).

Usage: python scripts/run_notebooks.py [--results DIR] [--figures DIR] [NOTEBOOK ...]

Each notebook's cell tagged ``parameters`` holds the defaults (``RESULTS = None``:
this checkout's ``results/default``; ``FIGURES = None``: draw inline only). The
given values go into a cell inserted after it (tagged ``injected-parameters``),
as papermill does; ``make figures`` passes ``--figures figures``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(path: Path, parameters: dict[str, object], timeout: int = 600):
    """Run the notebook ``path`` with ``parameters`` injected; returns the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if parameters:
        if not tagged:
            raise SystemExit(f"{path.name} has no cell tagged 'parameters'")
        source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
        cell = new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(tagged[0] + 1, cell)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    client.execute()
    return nb


def main() -> None:
    """Run the notebooks (all of notebooks/ by default) with the given parameters."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", help="a fisherlab reproduce --out folder")
    parser.add_argument("--figures", help="save the notebooks' PNGs into this folder")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    args = parser.parse_args()
    parameters = {}
    if args.results:
        parameters["RESULTS"] = str(Path(args.results).resolve())
    if args.figures:
        parameters["FIGURES"] = str(Path(args.figures).resolve())
    for path in args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb")):
        execute(path, parameters)
        print(f"ran {path.name}")


if __name__ == "__main__":
    main()

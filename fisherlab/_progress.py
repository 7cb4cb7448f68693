"""Progress bars that suit where fisherlab runs: a widget in Jupyter, text elsewhere.

``tqdm.auto`` picks the notebook widget in a Jupyter kernel, but without
``ipywidgets`` it warns (a ``TqdmWarning``, "IProgress not found") on import
and falls back to text bars. Importing ``tqdm.auto`` only when ``ipywidgets``
is installed gives the same bars with no warning in a bare kernel
(``pip install fisherlab[notebook]`` adds ``ipywidgets`` for the widget).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:  # a bare kernel or a terminal: text bars, no warning
    from tqdm.std import tqdm

__all__ = ["tqdm"]

"""The one exception type fisherlab raises for problems a user can fix.

Every message says what was found, what was expected and what to do, in one
line, so that the CLI can print it as is and exit non-zero.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from typing import Any

MAX_MESSAGE = 1000
"""Longest message kept whole; a longer one keeps its start and its end (where the fix is)."""


class FisherlabError(Exception):
    """A user-facing error: bad input, a missing dataset, an unreadable file.

    The message is a single line that names the fix. Bugs in fisherlab itself
    raise ordinary Python exceptions instead.
    """

    def __init__(self, message: str) -> None:
        text = " ".join(message.split())
        if len(text) > MAX_MESSAGE:  # a safety net: messages quote few values (see preview)
            cut = len(text) - MAX_MESSAGE + 200
            text = f"{text[: MAX_MESSAGE - 400]} ... [{cut} characters cut] ... {text[-200:]}"
        super().__init__(text)


class TrainingDiverged(FisherlabError):
    """Training produced a non-finite loss or parameters (a too-large step or defense strength).

    A :class:`FisherlabError` like any other for the CLI; defense tuning
    catches it and records the candidate as diverged instead of stopping.
    """


def preview(values: Collection[Any], limit: int = 3) -> str:
    """A short rendering of a collection for an error message: at most ``limit`` values.

    Messages quote user input and what was found in files; a list of millions
    of values must not become a message of megabytes.

    Args:
        values: A list, tuple, range or set (only ``limit`` values are read).
        limit: How many values to show.

    Returns:
        ``"[1, 2, 3]"``, or ``"[20, 21, 22, ... 19999981 more]"`` when longer.

    Example:
        >>> preview(range(20, 20_000_004))
        '[20, 21, 22, ... 19999981 more]'
        >>> preview(["a", "b"])
        "['a', 'b']"
    """
    shown = [repr(v) for v in itertools.islice(values, limit)]
    more = f", ... {len(values) - limit} more" if len(values) > limit else ""
    return "[" + ", ".join(shown) + more + "]"

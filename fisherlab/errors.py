"""The one exception type fisherlab raises for problems a user can fix.

Every message says what was found, what was expected and what to do, in one
line, so that the CLI can print it as is and exit non-zero.
"""

from __future__ import annotations


class FisherlabError(Exception):
    """A user-facing error: bad input, a missing dataset, an unreadable file.

    The message is a single line that names the fix. Bugs in fisherlab itself
    raise ordinary Python exceptions instead.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

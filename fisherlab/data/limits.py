"""Caps on the sizes that user input and files may ask for, checked before allocating.

A few bytes of input (``mnist5k:0-20000000``, an ``npz`` label of 2e7, a
checkpoint that declares three million classes) must not make fisherlab build
gigabytes of lists or tensors before it notices the request is unreasonable.
Every size that comes from a command line or a file is checked against these
caps first, and ranges are checked by their ends before any list is built:

* :data:`MAX_CLASSES`: class ids are ``< 100,000`` (dataset selections,
  ``--classes``, ``npz`` labels, a checkpoint's ``num_classes``);
* :data:`MAX_LAYERS`: layer indices are ``< 100,000`` (``--train-layers``);
* :data:`MAX_IMAGE_SIZE`: image sides are ``1..1024`` (``--image-size``, the
  input spec and ``image_size`` of a checkpoint).
"""

from __future__ import annotations

import re

from fisherlab.errors import FisherlabError

MAX_CLASSES = 100_000
"""Class ids (and so class counts) fisherlab accepts: ``0..MAX_CLASSES-1``."""

MAX_LAYERS = 100_000
"""Layer indices fisherlab accepts: ``0..MAX_LAYERS-1``."""

MAX_IMAGE_SIZE = 1024
"""Largest side of a square input image."""

_NUMBER = re.compile(r"[0-9]+")


def parse_ranges(text: str, *, limit: int, what: str, example: str) -> tuple[int, ...]:
    """Parse comma-separated ids and ``a-b`` ranges, checking the bounds first.

    Each range's ends are checked against ``limit`` before the range is
    expanded, so a huge range costs nothing.

    Args:
        text: E.g. ``"0,2,4-6"``.
        limit: Ids must be ``< limit`` (e.g. :data:`MAX_CLASSES`).
        what: What the ids are, for messages (``"class"``, ``"layer"``).
        example: A valid selection to show in messages.

    Returns:
        The sorted, unique ids.

    Raises:
        FisherlabError: For a malformed part, an empty range (``5-2``) or an
            id ``>= limit``.

    Example:
        >>> parse_ranges("4-6,0,5", limit=10, what="class", example="0-4")
        (0, 4, 5, 6)
    """
    spans = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not _NUMBER.fullmatch(lo) or (sep and not _NUMBER.fullmatch(hi)):
            shown = text if len(text) <= 60 else text[:60] + "..."
            raise FisherlabError(f"{what} selection {shown!r} is malformed: write e.g. {example}")
        ends = []
        for digits in (lo, hi or lo):
            value = int(digits) if len(digits) <= 9 else limit  # no giant ints either
            if value >= limit:
                big = digits if len(digits) <= 20 else digits[:20] + "..."
                raise FisherlabError(
                    f"{what} {big} is above {limit - 1}, the largest {what} id fisherlab "
                    f"accepts: write e.g. {example}"
                )
            ends.append(value)
        if ends[1] < ends[0]:
            raise FisherlabError(f"{what} range {part.strip()!r} is empty: write LOW-HIGH")
        spans.append((ends[0], ends[1]))
    return tuple(sorted({i for a, b in spans for i in range(a, b + 1)}))

"""When a result means nothing: chance level and the warnings that compare with it.

An accuracy is only evidence when it stands clear of what guessing gives.
This module holds the one definition of that, used by training, attacks and
``fisherlab defend``:

* **chance** for ``K`` classes is ``1 / K`` (balanced classes; every split
  fisherlab makes is stratified);
* an accuracy measured on ``n`` items is **within noise of chance** when the
  95 % Wilson score interval of ``k / n`` contains chance
  (:func:`wilson_interval`): the data cannot tell it from guessing;
* a classifier's natural accuracy is **near chance** when it closes less than
  a quarter of the gap from chance to 1 (``acc < chance + (1 - chance) / 4``;
  0.40 for 5 classes, 0.325 for 10). Such a target can be profiled,
  attacked and planned on, but the numbers describe a model that has not
  learnt its task, so every report carries a warning.

Each ``*_warning`` function returns one line of text (no trailing period
needed by the caller) or ``None``; the CLI prints it as
``fisherlab: warning: ...`` and the JSON outputs keep it in ``warnings``.
"""

from __future__ import annotations

import math

from fisherlab.errors import FisherlabError

Z_95 = 1.959963984540054
"""The standard normal's 97.5 % quantile."""

NEAR_CHANCE_GAP = 0.25
"""A natural accuracy below ``chance + NEAR_CHANCE_GAP * (1 - chance)`` is near chance."""

__all__ = [
    "NEAR_CHANCE_GAP",
    "attack_warning",
    "chance_level",
    "natural_accuracy_warning",
    "prior_warning",
    "wilson_interval",
]


def chance_level(n_classes: int) -> float:
    """Accuracy of guessing among ``n_classes`` balanced classes.

    Example:
        >>> chance_level(5)
        0.2
    """
    if n_classes < 1:
        raise FisherlabError(f"chance needs at least one class, got {n_classes}")
    return 1.0 / n_classes


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``successes / n``.

    Args:
        successes: Number of successes (may be fractional: ``accuracy * n``).
        n: Number of trials (> 0).

    Returns:
        ``(low, high)``, inside [0, 1].

    Example:
        >>> [round(v, 4) for v in wilson_interval(5, 10)]
        [0.2366, 0.7634]
    """
    if n <= 0:
        raise FisherlabError(f"an interval needs at least one trial, got n={n}")
    p = successes / n
    z2 = Z_95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _no_better_than_chance(
    accuracy: float, n: int, n_classes: int
) -> tuple[float, float, float] | None:
    """``(low, high, chance)`` when ``accuracy`` over ``n`` is within noise of (or below) chance."""
    chance = chance_level(n_classes)
    low, high = wilson_interval(accuracy * n, n)
    return (low, high, chance) if low <= chance else None  # covers chance, or lies below it


def natural_accuracy_warning(
    accuracy: float, n_classes: int, what: str = "the model"
) -> str | None:
    """A warning when ``what``'s natural accuracy is near chance (module docs), else ``None``.

    Example:
        >>> natural_accuracy_warning(0.33, 5)  # doctest: +ELLIPSIS
        'the model has natural accuracy 0.330, near chance (0.200 for 5 classes): ...'
        >>> natural_accuracy_warning(0.9, 5) is None
        True
    """
    chance = chance_level(n_classes)
    if accuracy >= chance + NEAR_CHANCE_GAP * (1 - chance):
        return None
    return (
        f"{what} has natural accuracy {accuracy:.3f}, near chance ({chance:.3f} for "
        f"{n_classes} classes): its Fisher profile, recommendation and attack numbers describe "
        "a model that has not learnt its task (train it longer or check its data)"
    )


def attack_warning(accuracy: float, n: int, n_classes: int) -> str | None:
    """A warning when an attack's accuracy over ``n`` reconstructions is within noise of chance.

    Example:
        >>> attack_warning(0.24, 100, 5)  # doctest: +ELLIPSIS
        'attack accuracy 0.240 [0.167, 0.332] over 100 reconstructions is within noise of ...'
        >>> attack_warning(0.6, 100, 5) is None
        True
    """
    found = _no_better_than_chance(accuracy, n, n_classes)
    if found is None:
        return None
    low, high, chance = found
    return (
        f"attack accuracy {accuracy:.3f} [{low:.3f}, {high:.3f}] over {n} reconstructions is "
        f"within noise of chance ({chance:.3f}): the evaluator cannot tell these "
        "reconstructions from guesses, so a lower number for a defended model shows nothing"
    )


def prior_warning(target_accuracy: float, n: int, n_classes: int) -> str | None:
    """A warning when the target itself does not see the attack's samples as their classes.

    ``target_accuracy`` is the share of the attack's final samples (images the
    GAN prior generates from the optimised latents) that the *target* assigns
    to the class they were optimised for. Within noise of chance, the prior
    cannot produce images of the private classes, whatever the attack does.

    Example:
        >>> prior_warning(0.2, 50, 5)  # doctest: +ELLIPSIS
        "the target classifies the GAN prior's optimised samples as their intended class ..."
    """
    found = _no_better_than_chance(target_accuracy, n, n_classes)
    if found is None:
        return None
    low, high, chance = found
    return (
        f"the target classifies the GAN prior's optimised samples as their intended class "
        f"at {target_accuracy:.3f} [{low:.3f}, {high:.3f}] over {n}, within noise of chance "
        f"({chance:.3f}): the prior cannot express the private classes (train it longer, or "
        "on public data closer to the private data)"
    )

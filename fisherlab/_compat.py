"""The old module paths of fisherlab's flat layout, kept importable.

fisherlab's modules moved into one subpackage per stage (see the README's code
map). Every name keeps working from where it was: ``fisherlab.checkpoint``,
``fisherlab.train``, ``fisherlab.evaluate`` and the other old paths of
:data:`MOVED` are registered in ``sys.modules`` when :mod:`fisherlab` is
imported (:func:`install`). An old path that is one new module is that module
(the same object, so patching it patches the real one); an old path whose
names now live in several modules is a module holding all of their names.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Sequence

MOVED: dict[str, tuple[str, ...]] = {
    "fisherlab.checkpoint": ("fisherlab.models.checkpoint", "fisherlab.models.meta"),
    "fisherlab.layers": ("fisherlab.models.layers",),
    "fisherlab.defenses": ("fisherlab.training.defenses", "fisherlab.models.heads"),
    "fisherlab.train": ("fisherlab.training.train",),
    "fisherlab.evaluate": (
        "fisherlab.training.accuracy",
        "fisherlab.attacks.evaluation",
        "fisherlab.data.datasets",
    ),
    "fisherlab.objectives": ("fisherlab.fisher.objectives",),
    "fisherlab.reference": ("fisherlab.fisher.reference",),
    "fisherlab.engines": ("fisherlab.fisher",),
    "fisherlab.engines.backpack_engine": ("fisherlab.fisher.backpack_engine",),
    "fisherlab.engines.functorch_engine": ("fisherlab.fisher.functorch_engine",),
    "fisherlab.gan": ("fisherlab.attacks.gan",),
    "fisherlab.train_gan": ("fisherlab.attacks.train_gan",),
    "fisherlab.reproduce": (
        "fisherlab.experiments.reproduce",
        "fisherlab.experiments.config",
        "fisherlab.experiments.cache",
    ),
    "fisherlab.claims": ("fisherlab.experiments.claims",),
}
"""Old module path -> the new modules that hold its names."""


def merged_module(name: str, sources: Sequence[str]) -> types.ModuleType:
    """The module an old path names: the one new module, or a union of their names."""
    modules = [importlib.import_module(source) for source in sources]
    if len(modules) == 1:
        return modules[0]
    merged = types.ModuleType(name, f"Names moved to {', '.join(sources)}.")
    for module in reversed(modules):  # the first source wins a name clash
        merged.__dict__.update(
            {k: v for k, v in vars(module).items() if not (k.startswith("__") and k.endswith("__"))}
        )
    return merged


def install() -> None:
    """Register every old path of :data:`MOVED` in ``sys.modules``.

    Each also becomes an attribute of its parent package, unless the package
    already has one of that name: ``fisherlab.train`` and ``fisherlab.layers``
    stay the functions they always were, while ``import fisherlab.train`` and
    ``from fisherlab.train import TrainConfig`` still find the module.
    """
    for old, sources in MOVED.items():
        if old in sys.modules:
            continue
        module = merged_module(old, sources)
        sys.modules[old] = module
        parent, _, child = old.rpartition(".")
        if not hasattr(sys.modules[parent], child):
            setattr(sys.modules[parent], child, module)

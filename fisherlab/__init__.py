"""fisherlab: Fisher-information layer analysis and TL-DMI defenses against model inversion.

The flow, one subpackage per stage: :mod:`fisherlab.data` + architecture
(:mod:`fisherlab.models`) -> :func:`train` (:mod:`fisherlab.training`:
pretrain, or fine-tune with a freeze boundary, optionally with a defense) ->
checkpoint -> :func:`profile` (:mod:`fisherlab.fisher`: per-layer Fisher
information, rows keyed by :func:`layer_map`) -> :func:`recommend_freeze`
(:mod:`fisherlab.planner`) -> :func:`attack` (:mod:`fisherlab.attacks`: GMI,
KEDMI, white-box, with the Fisher recorded along the attack, and their
evaluation) -> :func:`fisherlab.experiments.reproduce` -> :mod:`fisherlab.plots`
-> :func:`defend` (:mod:`fisherlab.loop`: the whole TL-DMI loop in one call) ->
:mod:`fisherlab.cli`.
"""

import sys as _sys
from pathlib import Path as _Path


def _started_as_the_command() -> bool:
    """Whether this import is the start-up of the ``fisherlab`` command (not a library import)."""
    return _sys.argv[:1] == ["-m"] or _Path(_sys.argv[0] if _sys.argv else "").name == "fisherlab"


try:  # Ctrl-C while torch loads ends the command with one line, not a traceback
    from fisherlab import _compat
    from fisherlab._version import __version__
    from fisherlab.attacks import AttackConfig, GANConfig, attack, load_gan
    from fisherlab.data import DatasetSplits, DataSpec, InputSpec, load_dataset
    from fisherlab.errors import FisherlabError
    from fisherlab.fisher import FisherEngine, profile, reference_profile
    from fisherlab.loop import DefendConfig, DefenseReport, defend
    from fisherlab.models import (
        Layer,
        ModelMeta,
        VIBHead,
        build_from_spec,
        build_model,
        layer_map,
        layer_state_keys,
        layers,
        load_model,
        model_meta,
        open_model,
        replace_head,
        save_model,
    )
    from fisherlab.planner import Recommendation, recommend_freeze, recommended_boundary
    from fisherlab.training import (
        DEFENSES,
        Defense,
        TrainConfig,
        TrainResult,
        build_defense,
        freeze,
        hsic,
        natural_accuracy,
        normalized_hsic,
        train,
        training_mode,
        tune_defense,
    )
except KeyboardInterrupt:
    if not _started_as_the_command():
        raise
    _sys.stderr.write("fisherlab: interrupted\n")
    raise SystemExit(130) from None

_compat.install()

__all__ = [
    "__version__",
    # errors
    "FisherlabError",
    # data
    "DataSpec",
    "DatasetSplits",
    "InputSpec",
    "load_dataset",
    # models and their layers
    "build_model",
    "replace_head",
    "Layer",
    "layers",
    "layer_map",
    "layer_state_keys",
    # checkpoints
    "ModelMeta",
    "model_meta",
    "load_model",
    "save_model",
    "open_model",
    "build_from_spec",
    # Fisher information
    "FisherEngine",
    "profile",
    "reference_profile",
    # model-inversion attacks
    "AttackConfig",
    "GANConfig",
    "attack",
    "load_gan",
    # the planner
    "Recommendation",
    "recommend_freeze",
    "recommended_boundary",
    # the TL-DMI loop
    "DefendConfig",
    "DefenseReport",
    "defend",
    # training-time defenses
    "DEFENSES",
    "Defense",
    "VIBHead",
    "build_defense",
    "hsic",
    "normalized_hsic",
    "tune_defense",
    # training and evaluation
    "TrainConfig",
    "TrainResult",
    "freeze",
    "training_mode",
    "train",
    "natural_accuracy",
]

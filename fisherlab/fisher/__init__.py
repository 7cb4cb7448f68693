"""Stage 3b, Fisher information: per-layer empirical (or true) Fisher of any per-sample objective.

* :mod:`~fisherlab.fisher.objectives`: per-sample objectives, true-Fisher label draws;
* :mod:`~fisherlab.fisher.backpack_engine`: the fast engine (BackPACK, per-layer fast paths);
* :mod:`~fisherlab.fisher.functorch_engine`: the torch.func fallback;
* :mod:`~fisherlab.fisher.engine`: :class:`FisherEngine`, which engine computes what, the rows;
* :mod:`~fisherlab.fisher.profile`: :func:`profile`, a model on data;
* :mod:`~fisherlab.fisher.outputs`: the files ``fisherlab profile`` writes;
* :mod:`~fisherlab.fisher.reference`: the brute-force per-sample loop the engines are tested
  against.
"""

from fisherlab.fisher.backpack_engine import (
    FAST_PATHS,
    PerSampleFisher,
    fast_path_reason,
    register_fast_path,
)
from fisherlab.fisher.engine import (
    COLUMNS,
    ENGINES,
    EngineChoice,
    FisherEngine,
    FisherSums,
    choose_engines,
    fisher_frame,
    layer_row,
)
from fisherlab.fisher.objectives import OBJECTIVES, FisherType, Objective
from fisherlab.fisher.outputs import profile_record, profile_to, write_profile
from fisherlab.fisher.profile import input_dataset, iterate_data, profile
from fisherlab.fisher.reference import reference_profile

__all__ = [
    # profiles
    "profile",
    "reference_profile",
    "input_dataset",
    "iterate_data",
    "profile_record",
    "profile_to",
    "write_profile",
    # the engine
    "COLUMNS",
    "ENGINES",
    "EngineChoice",
    "FisherEngine",
    "FisherSums",
    "choose_engines",
    "fisher_frame",
    "layer_row",
    # fast paths
    "FAST_PATHS",
    "PerSampleFisher",
    "fast_path_reason",
    "register_fast_path",
    # objectives
    "OBJECTIVES",
    "FisherType",
    "Objective",
]

"""Stage 6, experiments: the paper's experiments at small scale, cached step by step.

* :mod:`~fisherlab.experiments.config`: :class:`ReproduceConfig` and :data:`PRESETS`;
* :mod:`~fisherlab.experiments.cache`: the step cache (:class:`Runner`, :class:`Step`);
* :mod:`~fisherlab.experiments.steps`: training, GAN, attack and profile steps;
* :mod:`~fisherlab.experiments.plan`: which fine-tunings run;
* :mod:`~fisherlab.experiments.statistics`: effect sizes, intervals, p-values, verdicts;
* :mod:`~fisherlab.experiments.claims`: the paper's claims C1-C6 and their verdicts;
* :mod:`~fisherlab.experiments.tables`: the tidy results tables;
* :mod:`~fisherlab.experiments.compare`: one table of attack and training runs;
* :mod:`~fisherlab.experiments.reproduce`: :func:`reproduce`, the phases.
"""

from fisherlab.experiments.cache import Runner, Step, step_key
from fisherlab.experiments.claims import (
    ACCURACY_TOLERANCE,
    assess_claims,
    pareto_front,
    planner_baselines,
    planner_validation,
    select_runs,
)
from fisherlab.experiments.compare import compare_runs
from fisherlab.experiments.config import PRESETS, ReproduceConfig
from fisherlab.experiments.plan import FineTuned, PlannedFineTune, plan_finetunes
from fisherlab.experiments.reproduce import reproduce
from fisherlab.experiments.statistics import Estimate, paired_difference, seed_level, verdict
from fisherlab.experiments.tables import assemble_tables

__all__ = [
    "PRESETS",
    "ReproduceConfig",
    "reproduce",
    # the cache
    "Runner",
    "Step",
    "step_key",
    # the plan and tables
    "FineTuned",
    "PlannedFineTune",
    "plan_finetunes",
    "assemble_tables",
    "compare_runs",
    # claims
    "ACCURACY_TOLERANCE",
    "assess_claims",
    "pareto_front",
    "planner_baselines",
    "planner_validation",
    "select_runs",
    # statistics
    "Estimate",
    "paired_difference",
    "seed_level",
    "verdict",
]

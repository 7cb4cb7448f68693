r"""Defense strengths tuned on a validation split of the private training data.

The strengths that MID, BiDO and label smoothing publish were tuned for
CelebA; on other data the same numbers can leave a model undefended or
destroy its accuracy. :func:`tune_defense` fine-tunes a checkpoint once
without a defense and once per candidate strength, each time holding out a
stratified, seeded fraction of the private *training* split
(``TrainConfig.validation_fraction``; the test split is never looked at),
and :func:`choose_strengths` picks from the validation accuracies.

The rule (:func:`choose_strengths`), for a robustness/utility comparison:

* the candidates are ordered from the weakest to the strongest defense;
* the **operating point** is the strongest candidate whose validation
  accuracy is at least ``baseline - tolerance``, where ``baseline`` is the
  undefended model's validation accuracy: the most protection that costs at
  most ``tolerance`` of utility;
* its **weaker** and **stronger** neighbours in the ordering are chosen too,
  so that the comparison sweeps the trade-off across the tolerance line
  (the stronger one costs more than ``tolerance``, unless it is noise);
* if no candidate is within the tolerance, the weakest is the operating
  point (with its stronger neighbour) and its row says so
  (``within_tolerance`` is false): the grid should start weaker;
* a candidate whose training **diverges** (non-finite loss or parameters,
  :class:`~fisherlab.errors.TrainingDiverged`) in any seed has no validation
  accuracy (NaN): it is recorded (``diverged`` in its ``run.json``), never
  within the tolerance and never chosen.

Picking by validation accuracy alone, with no attack in the loop, keeps the
choice honest: the attack results the comparison reports are not used to
choose the strengths they are reported for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from fisherlab._io import write_atomic, write_json
from fisherlab.errors import FisherlabError, TrainingDiverged
from fisherlab.training.defenses import STRENGTH_FIELDS, build_defense
from fisherlab.training.train import TrainConfig, train

ROLES: tuple[str, ...] = ("weaker", "operating", "stronger")
"""The roles of the chosen candidates, weakest first."""


@dataclass(frozen=True)
class DefenseTuning:
    """The outcome of :func:`tune_defense`.

    Attributes:
        table: One row per candidate, weakest first: ``defense``, ``rank``,
            the strength fields, ``validation_accuracy`` (mean over seeds),
            ``validation_accuracy_std``, ``baseline_accuracy``, ``drop``,
            ``within_tolerance``, ``role`` and ``chosen``.
        runs: One row per fine-tuning run (the baseline included, as
            defense ``none``): ``defense``, ``rank`` (-1 for the baseline),
            the strength fields, ``seed``, ``key``, ``validation_accuracy``
            and ``train_accuracy`` of the last epoch.
        config: The settings of the tuning (JSON-ready).
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    config: dict

    def chosen(
        self, roles: Sequence[str] = ROLES
    ) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
        """The chosen strengths, weakest first, as ``(defense, ((field, value), ...))``.

        The form of :attr:`fisherlab.experiments.config.ReproduceConfig.defense_grid`.

        Args:
            roles: Which of :data:`ROLES` to return (default: all three).
        """
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise FisherlabError(f"unknown roles {unknown}: expected some of {list(ROLES)}")
        fields = self.config["strength_fields"]
        rows = self.table[self.table["role"].isin(list(roles))].sort_values("rank")
        return tuple(
            (self.config["defense"], tuple((f, float(row[f])) for f in fields))
            for _, row in rows.iterrows()
        )


def choose_strengths(
    table: pd.DataFrame, baseline_accuracy: float, tolerance: float
) -> pd.DataFrame:
    """Mark the operating point and its neighbours (the rule of this module's docstring).

    Args:
        table: One row per candidate with ``rank`` (0 = weakest defense, one
            row per rank) and ``validation_accuracy``.
        baseline_accuracy: Validation accuracy without the defense.
        tolerance: Largest accepted accuracy drop, >= 0.

    Returns:
        A copy sorted by ``rank`` with ``baseline_accuracy``, ``drop``,
        ``within_tolerance``, ``role`` (``weaker``, ``operating``,
        ``stronger`` or ``""``) and ``chosen`` added.

    Raises:
        FisherlabError: For an empty table, repeated ranks or a negative tolerance.

    Example:
        >>> t = pd.DataFrame({"rank": [0, 1, 2, 3], "validation_accuracy": [0.99, 0.98, 0.9, 0.5]})
        >>> choose_strengths(t, 0.99, 0.02)["role"].tolist()
        ['weaker', 'operating', 'stronger', '']
    """
    if not tolerance >= 0:
        raise FisherlabError(f"tolerance must be >= 0, got {tolerance}")
    if table.empty or table["rank"].duplicated().any():
        raise FisherlabError("choose_strengths needs one row per rank, and at least one row")
    out = table.sort_values("rank").reset_index(drop=True)
    out["baseline_accuracy"] = float(baseline_accuracy)
    out["drop"] = out["baseline_accuracy"] - out["validation_accuracy"]
    # a tiny slack so that a drop of exactly `tolerance` counts despite float rounding
    out["within_tolerance"] = out["drop"] <= tolerance + 1e-12
    trained = out["validation_accuracy"].notna()  # NaN: diverged in some seed
    if not trained.any():
        raise FisherlabError("every candidate strength diverged: start the grid weaker")
    ok = out.index[out["within_tolerance"]]
    operating = int(ok.max()) if len(ok) else int(out.index[trained][0])
    roles = {operating - 1: "weaker", operating: "operating", operating + 1: "stronger"}
    out["role"] = [roles.get(i, "") if trained[i] else "" for i in range(len(out))]
    out["chosen"] = out["role"] != ""
    return out


def _candidate_strengths(
    defense: str, candidates: Sequence[Mapping[str, float] | float]
) -> tuple[list[dict[str, float]], list[str]]:
    """Candidates as complete strength dicts (checked), and the defense's strength fields."""
    fields = list(build_defense(defense).strengths)
    if not fields:
        raise FisherlabError(f"defense {defense!r} has no strength to tune")
    if not candidates:
        raise FisherlabError("tune_defense needs at least one candidate strength")
    out = []
    for c in candidates:
        if not isinstance(c, Mapping):
            if len(fields) != 1:
                raise FisherlabError(
                    f"defense {defense!r} has strengths {fields}: give each candidate as a "
                    f"dict, e.g. {dict.fromkeys(fields, 0.1)}"
                )
            c = {fields[0]: c}
        out.append(build_defense(defense, **c).settings())
    return out, fields


def tune_defense(
    base: TrainConfig,
    defense: str,
    candidates: Sequence[Mapping[str, float] | float],
    *,
    tolerance: float = 0.02,
    validation_fraction: float = 0.2,
    seeds: Sequence[int] = (0,),
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> DefenseTuning:
    """Fine-tune ``base`` without and with each candidate strength; choose by validation accuracy.

    Every run is ``base`` with ``validation_fraction`` set (the same
    stratified hold-out of the private training split for all, seeded by
    ``base.split_seed``), the defense and strengths replaced, and ``seed``
    from ``seeds``. Its score is the validation accuracy after the last epoch
    (mean over ``seeds``). :func:`choose_strengths` then marks the chosen
    candidates.

    With ``out_dir``, each run writes ``<key>.history.csv`` and
    ``<key>.run.json`` there (no checkpoint), a run whose history exists is
    read instead of retrained, and the result is saved as
    ``tuning-<defense>.csv``, ``tuning-<defense>.runs.csv`` and
    ``tuning-<defense>.json``.

    Args:
        base: The fine-tuning recipe (data, ``init``, epochs, lr, freeze
            boundary, ...); its defense and ``seed`` are replaced.
        defense: ``mid``, ``bido`` or ``ls``.
        candidates: Strengths, **weakest defense first**: dicts such as
            ``{"beta": 0.01}`` (every strength of the defense; missing ones
            take their defaults), or plain numbers for a one-strength defense.
            For label smoothing "weaker" means closer to 0 (``-0.01`` before
            ``-0.1``).
        tolerance: Largest accepted drop of validation accuracy below the
            undefended model's.
        validation_fraction: Fraction of each class held out, in ``(0, 1)``.
        seeds: Training seeds; accuracies are averaged over them.
        out_dir: Where to keep run histories and the result (``None``: nowhere).
        progress: Show progress bars.

    Returns:
        The table, the runs and the settings.

    Raises:
        FisherlabError: For a bad defense, candidate, tolerance, fraction or config.
    """
    if not seeds:
        raise FisherlabError("tune_defense needs at least one seed")
    strengths, fields = _candidate_strengths(defense, candidates)
    unset = dict.fromkeys(STRENGTH_FIELDS)
    base = replace(base, defense="none", validation_fraction=validation_fraction, **unset)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, values in [(-1, {}), *enumerate(strengths)]:
        name = "none" if rank < 0 else defense
        for seed in seeds:
            config = replace(base, defense=name, seed=seed, **values)
            last = _last_epoch(config, out, progress)
            rows.append(
                {
                    "defense": name,
                    "rank": rank,
                    **{f: values.get(f, float("nan")) for f in fields},
                    "seed": seed,
                    "key": config.key(),
                    "validation_accuracy": float(last["validation_accuracy"]),
                    "train_accuracy": float(last["train_accuracy"]),
                }
            )
    runs = pd.DataFrame(rows)
    baseline = float(runs.loc[runs["rank"] < 0, "validation_accuracy"].mean())
    grouped = runs[runs["rank"] >= 0].groupby("rank", sort=True)
    table = grouped[["defense", *fields]].first().reset_index()
    # a candidate that diverged in any seed has no accuracy (NaN), not that of its other seeds
    mean = grouped["validation_accuracy"].agg(lambda v: v.mean(skipna=False))
    table["validation_accuracy"] = mean.to_numpy()
    table["validation_accuracy_std"] = grouped["validation_accuracy"].std(ddof=0).to_numpy()
    table = choose_strengths(table, baseline, tolerance)
    settings = {
        "defense": defense,
        "strength_fields": fields,
        "candidates": strengths,
        "tolerance": tolerance,
        "validation_fraction": validation_fraction,
        "seeds": list(seeds),
        "baseline_accuracy": baseline,
        "base": base.to_dict(),
        "rule": "strongest candidate with validation accuracy >= baseline - tolerance, "
        "plus its weaker and stronger neighbours",
    }
    result = DefenseTuning(table, runs, settings)
    if out is not None:
        stem = out / f"tuning-{defense}"
        write_atomic(f"{stem}.csv", lambda p: table.to_csv(p, index=False))
        write_atomic(f"{stem}.runs.csv", lambda p: runs.to_csv(p, index=False))
        write_json(f"{stem}.json", {**settings, "chosen": [dict(v) for _, v in result.chosen()]})
    return result


def _last_epoch(config: TrainConfig, out: Path | None, progress: bool) -> pd.Series:
    """The last history row of ``config``'s run: read from ``out`` if there, else trained."""
    if out is not None and (history := out / f"{config.key()}.history.csv").is_file():
        return pd.read_csv(history).iloc[-1]
    diverged = None
    try:
        history = train(config, progress=progress).history
    except TrainingDiverged as exc:  # a candidate too strong to train: a result, not a crash
        diverged = str(exc)
        nan = float("nan")
        history = pd.DataFrame([{"validation_accuracy": nan, "train_accuracy": nan}])
    if out is not None:
        key = config.key()
        write_atomic(f"{out / key}.history.csv", lambda p: history.to_csv(p, index=False))
        record = {"key": key, "config": config.to_dict(), "diverged": diverged}
        write_json(f"{out / key}.run.json", record)
    return history.iloc[-1]

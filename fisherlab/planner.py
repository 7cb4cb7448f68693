"""From Fisher profiles to a freeze boundary: :func:`recommend_freeze`.

TL-DMI (Ho et al., CVPR 2024) freezes the first layers of a pretrained model
and fine-tunes the rest (theta_C) on private data. Its Fisher-information
argument is that the model-inversion (MI) objective draws on the first layers
and classification on the last. The planner turns that argument into a rule.

For a model with layers ``0..L-1`` (the head ``L-1`` is always trained), let
``s_I(l)`` be layer ``l``'s share of the inversion Fisher trace and ``s_C(l)``
its share of the classification Fisher trace. Freezing the layers ``[0, b)``
holds the cumulative shares

    I(b) = sum_{l < b} s_I(l),        C(b) = sum_{l < b} s_C(l),

both rising from 0 at ``b = 0`` (full fine-tuning). The planner picks

    b* = argmax_{b in {0..L-1}, C(b) <= budget}  I(b) - lam * C(b),

breaking ties towards the larger ``b`` (fewer trainable parameters).

* ``lam`` (default 1) prices classification Fisher against inversion Fisher.
  With ``lam = 1`` the score is the excess of inversion over classification
  Fisher that the frozen layers take out of the attacker's reach; it grows
  while the layers added to the frozen prefix are inversion-dominated
  (``s_I(l) > s_C(l)``) and falls once they are classification-dominated.
  ``lam > 1`` protects accuracy, ``lam < 1`` favours privacy, ``lam = 0``
  freezes as much as the budget allows.
* ``budget`` in [0, 1] caps the frozen classification share ``C(b)``
  (default 1: no cap). ``lam=0`` with a budget is the rule "freeze as much
  inversion Fisher as possible while the frozen classification share stays
  under the budget".

The inversion profile is an attack's recorded Fisher (``fisher.csv`` from
``fisherlab attack --fisher-every K``), one set of per-layer traces per
recorded (restart, iteration). How those steps become one profile is the
``aggregate`` rule of :func:`layer_shares` (:data:`AGGREGATIONS`):

* ``"shares"`` (the default): take each recorded step's layer shares, then
  average them over steps. Every step of the attack counts equally.
* ``"traces"``: average the traces over steps, then take shares (fisherlab
  before 0.2). The step with the largest trace decides.
* ``"late"``: ``"shares"`` over the steps after the first tenth of each
  restart's iterations (the start excluded).

Why ``"shares"``: the inversion Fisher's scale changes by orders of magnitude
along an attack. At GMI's first step the latents are random, the identity
loss is large and the trace is about 14,000 on the reproduction's target,
against under 80 from the tenth step on; averaged traces then give the first
step 89-99 % of the weight, so the profile describes random latents rather
than the attack. The planner asks which layers the attack *draws on*, a
question about the distribution over layers at each step, so it averages
distributions and lets no single step dominate. ``"late"`` is the check that
the start does not decide the answer either way; the README reports C1 and
the planner's picks under all three rules. Shares use the trace, not the
per-parameter mean, because freezing a layer removes all of its parameters
at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from fisherlab._device import resolve_device
from fisherlab._io import is_complete, output_set, write_atomic, write_json
from fisherlab.attacks.base import AttackConfig
from fisherlab.attacks.run import attack
from fisherlab.errors import FisherlabError
from fisherlab.fisher.profile import profile
from fisherlab.models.layers import layers
from fisherlab.models.meta import model_meta

PROFILE_KEYS = ["index", "name", "n_params"]
"""Columns that identify a layer; two profiles must agree on them."""

AGGREGATIONS = ("shares", "traces", "late")
"""How an attack's recorded steps become one profile (module docs); the first is the default."""

LATE_START = 0.1
"""``"late"`` drops the steps in the first this fraction of each restart's iterations."""

MODEL_COLUMNS = ("arch", "domain", "setting", "boundary", "seed", "attack", "objective", "defense")
"""Columns of the results tables that tell models apart (named when a profile mixes them)."""

STEP_KEYS = ["restart", "iteration"]
"""Columns that identify a recorded step of an attack's Fisher."""

__all__ = [
    "AGGREGATIONS",
    "Recommendation",
    "check_rule",
    "layer_shares",
    "read_profile",
    "recommend_freeze",
    "recommended_boundary",
]


@dataclass
class Recommendation:
    """A recommended freeze boundary and the reasoning behind it.

    Attributes:
        boundary: Freeze the layers ``[0, boundary)``; train the rest.
        n_trainable_params: |theta_C|, the parameters that stay trainable.
        n_params: All parameters of the model.
        lam: Price of classification Fisher in the score.
        budget: Cap on the frozen classification share.
        aggregate: How the inversion profile's steps were combined (:data:`AGGREGATIONS`).
        table: One row per candidate boundary: ``boundary``,
            ``frozen_layers``, ``inversion_share`` (I(b)),
            ``classification_share`` (C(b)), ``score``, ``feasible``,
            ``n_trainable_params``, ``chosen``.
        layers: One row per layer: ``index``, ``name``, ``n_params``,
            ``inversion_share``, ``classification_share``.
        explanation: One paragraph in words.
        warnings: One line each where the inputs mean little (e.g. a model
            whose natural accuracy is near chance; set by the caller).
    """

    boundary: int
    n_trainable_params: int
    n_params: int
    lam: float
    budget: float
    table: pd.DataFrame
    layers: pd.DataFrame
    explanation: str = field(default="")
    aggregate: str = "shares"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``--json``)."""
        return {
            "boundary": self.boundary,
            "frozen_layers": list(range(self.boundary)),
            "n_trainable_params": self.n_trainable_params,
            "n_params": self.n_params,
            "lam": self.lam,
            "budget": self.budget,
            "aggregate": self.aggregate,
            "rule": "argmax_b I(b) - lam * C(b) subject to C(b) <= budget; ties -> larger b",
            "table": json.loads(self.table.to_json(orient="records")),
            "layers": json.loads(self.layers.to_json(orient="records")),
            "explanation": self.explanation,
            "warnings": list(self.warnings),
        }


def check_rule(lam: float, budget: float) -> None:
    """Refuse a rule the planner cannot apply (before any profile is computed).

    Raises:
        FisherlabError: For ``lam`` not a finite number >= 0, or ``budget``
            outside [0, 1].
    """
    if not 0.0 <= budget <= 1.0:
        raise FisherlabError(f"the budget must be in [0, 1], got {budget}")
    if not (math.isfinite(lam) and lam >= 0.0):
        raise FisherlabError(f"lam must be >= 0 and finite, got {lam}")


def read_profile(path: str | Path) -> pd.DataFrame:
    """Read a profile written by ``fisherlab profile`` or ``fisherlab attack``.

    Args:
        path: ``profile.csv``, an attack's ``fisher.csv``, or the directory
            holding either.

    Returns:
        The frame; ``frame.attrs["model"]`` holds the model's fingerprint when
        the sidecar (``run.json`` or ``summary.json``) records one.

    Raises:
        FisherlabError: If the file is missing, unreadable or empty.
    """
    path = Path(path)
    if path.is_dir():
        found = [
            (path / n, manifest)
            for n, manifest in (("profile.csv", "run.json"), ("fisher.csv", "summary.json"))
            if (path / n).is_file()
        ]
        if not found and (path / "summary.json").is_file():
            raise FisherlabError(
                f"{path} is an attack that recorded no Fisher (no fisher.csv): rerun "
                "fisherlab attack with --fisher-every K"
            )
        if not found:
            raise FisherlabError(
                f"{path} holds neither profile.csv nor fisher.csv: give the --out directory "
                "of fisherlab profile or fisherlab attack --fisher-every K"
            )
        path, manifest = found[0]
        unfinished = not is_complete(path.parent, manifest)
    else:
        unfinished, manifest = False, ""
    if not path.is_file():
        if path.name == "fisher.csv" and (path.parent / "summary.json").is_file():
            raise FisherlabError(
                f"{path} does not exist: the attack in {path.parent} recorded no Fisher; "
                "rerun fisherlab attack with --fisher-every K"
            )
        raise FisherlabError(f"{path} does not exist")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise FisherlabError(f"{path} is not a profile CSV: {exc}") from None
    if frame.empty:
        hint = " (was the attack run with --fisher-every K?)" if path.name == "fisher.csv" else ""
        raise FisherlabError(f"{path} is an empty profile{hint}")
    if unfinished:
        raise FisherlabError(
            f"{path.parent} has {path.name} but no {manifest}: the run that wrote it did "
            "not finish; run it again"
        )
    for sidecar, key in (("run.json", "model"), ("summary.json", "target")):
        side = path.parent / sidecar
        try:
            record = json.loads(side.read_text()).get(key) if side.is_file() else None
        except (OSError, ValueError, AttributeError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("fingerprint"), str):
            frame.attrs["model"] = record["fingerprint"]
    return frame


def layer_shares(
    frame: pd.DataFrame, what: str = "profile", aggregate: str = "shares"
) -> pd.DataFrame:
    """Per-layer share of the Fisher trace; recorded attack steps combine by ``aggregate``.

    Args:
        frame: A profile frame (``fisherlab profile``) or an attack's recorded
            Fisher (with ``iteration`` and, optionally, ``restart`` columns).
        what: Its name in error messages.
        aggregate: How recorded steps combine (:data:`AGGREGATIONS`, module
            docs): ``"shares"`` averages each step's shares, ``"traces"``
            takes the shares of the averaged traces, ``"late"`` is
            ``"shares"`` without the first tenth of the iterations. A frame
            without ``iteration`` is one step, where all three agree.

    Returns:
        One row per layer: ``index``, ``name``, ``n_params``, ``trace`` (the
        mean over the steps used), ``share`` and ``n_steps`` (steps used).

    Raises:
        FisherlabError: For an empty frame, missing columns, a zero trace, an
            unknown ``aggregate``, or layers listed with inconsistent sizes.

    Example:
        >>> rows = pd.DataFrame({"iteration": [1, 1, 10, 10], "index": [0, 1, 0, 1],
        ...     "name": ["a", "b", "a", "b"], "n_params": [4, 4, 4, 4],
        ...     "trace": [900.0, 100.0, 1.0, 3.0]})
        >>> layer_shares(rows)["share"].round(3).tolist()  # (0.9 + 0.25) / 2, (0.1 + 0.75) / 2
        [0.575, 0.425]
        >>> layer_shares(rows, aggregate="traces")["share"].round(3).tolist()  # 450.5 / 502
        [0.897, 0.103]
    """
    if aggregate not in AGGREGATIONS:
        raise FisherlabError(
            f"unknown aggregation {aggregate!r}: expected one of {', '.join(AGGREGATIONS)}"
        )
    if frame is None or len(frame) == 0:
        raise FisherlabError(f"the {what} profile is empty")
    missing = [c for c in [*PROFILE_KEYS, "trace"] if c not in frame.columns]
    if missing:
        raise FisherlabError(
            f"the {what} profile lacks the columns {missing}: give a profile.csv from "
            "fisherlab profile or a fisher.csv from fisherlab attack"
        )
    traces = pd.to_numeric(frame["trace"], errors="coerce")
    if not np.isfinite(traces.to_numpy(dtype=float)).all():
        bad = frame.loc[~np.isfinite(traces.to_numpy(dtype=float)), "trace"].head(3).tolist()
        raise FisherlabError(
            f"the {what} profile has non-finite or non-numeric traces (e.g. {bad}): "
            "recompute it; a model with non-finite weights or outputs has no Fisher"
        )
    frame = frame.assign(trace=traces)
    if not (frame["trace"] >= 0).all():
        raise FisherlabError(f"the {what} profile has negative or missing traces")
    steps = [c for c in STEP_KEYS if c in frame.columns]
    if "iteration" not in steps:
        steps = []
    repeated = frame.duplicated([*steps, "index"])
    if repeated.any():  # several models' rows (a results table): their mean would be no model's
        marks = [c for c in MODEL_COLUMNS if c in frame.columns and frame[c].nunique() > 1]
        where = f" (they differ in {', '.join(marks)})" if marks else ""
        per = "recorded step and layer" if steps else "layer"
        raise FisherlabError(
            f"the {what} profile has {int(repeated.sum())} repeated rows per {per}{where}: it "
            "holds several profiles; select one model's rows (one profile.csv or fisher.csv)"
        )
    if aggregate == "late" and steps:
        last = (
            frame.groupby("restart")["iteration"].transform("max")
            if "restart" in steps
            else frame["iteration"].max()
        )
        kept = frame[frame["iteration"] > LATE_START * last]
        frame = kept if len(kept) else frame
    per_layer = frame.groupby(PROFILE_KEYS, as_index=False, sort=True)["trace"].mean()
    if per_layer["index"].duplicated().any():
        raise FisherlabError(f"the {what} profile lists a layer index twice with other names")
    total = float(per_layer["trace"].sum())
    if not total > 0:
        raise FisherlabError(f"the {what} profile's Fisher trace is zero in every layer")
    if aggregate == "traces" or not steps:
        per_layer["share"] = per_layer["trace"] / total
        per_layer["n_steps"] = frame.groupby(steps).ngroups if steps else 1
    else:
        step_total = frame.groupby(steps)["trace"].transform("sum")
        # a step whose every trace is 0 says nothing about where the Fisher is: skipped
        used = frame[step_total > 0].assign(share=frame["trace"] / step_total)
        n_steps = used.groupby(steps).ngroups
        shares = used.groupby(PROFILE_KEYS, sort=True)["share"].sum() / n_steps
        per_layer["share"] = shares.reindex(
            pd.MultiIndex.from_frame(per_layer[PROFILE_KEYS]), fill_value=0.0
        ).to_numpy()
        per_layer["n_steps"] = n_steps
    return per_layer.sort_values("index").reset_index(drop=True)


def _check_same_layers(cls: pd.DataFrame, inv: pd.DataFrame) -> None:
    a = cls[PROFILE_KEYS].to_records(index=False).tolist()
    b = inv[PROFILE_KEYS].to_records(index=False).tolist()
    if a != b:
        diff = next(
            (f"layer {x} vs {y}" for x, y in zip(a, b, strict=False) if x != y),
            f"{len(a)} vs {len(b)} layers",
        )
        raise FisherlabError(
            "the classification and inversion profiles come from different layer maps "
            f"(first difference: {diff}): profile the same model for both"
        )
    if list(cls["index"]) != list(range(len(cls))):
        raise FisherlabError(
            f"the profiles cover layers {list(cls['index'])}: the planner needs every layer "
            "0..L-1 of the model"
        )


def _explain(rec: Recommendation) -> str:
    t = rec.table.set_index("boundary")
    b = rec.boundary
    n_layers = len(rec.layers)
    row = t.loc[b]
    names = rec.layers.set_index("index")["name"]
    if b == 0:
        first = rec.layers.iloc[0]
        why = (
            f"already the first layer ({first['name']}) carries more classification Fisher "
            f"({first['classification_share']:.1%}) than the price-weighted inversion Fisher "
            f"({first['inversion_share']:.1%}), so no frozen prefix scores above zero"
        )
        return (
            f"Recommendation: fine-tune all {n_layers} layers (boundary 0, "
            f"{rec.n_trainable_params:,} of {rec.n_params:,} parameters trainable): {why}. "
            "The Fisher profiles give no reason to freeze anything; TL-DMI's premise does not "
            "hold for this model."
        )
    frozen = (
        f"layers 0-{b - 1} ({names[0]} to {names[b - 1]})" if b > 1 else f"layer 0 ({names[0]})"
    )
    text = (
        f"Recommendation: freeze {frozen} and fine-tune layers {b}-{n_layers - 1} "
        f"(boundary {b}; {rec.n_trainable_params:,} of {rec.n_params:,} parameters, "
        f"{rec.n_trainable_params / rec.n_params:.1%}, stay trainable). The frozen layers hold "
        f"{row['inversion_share']:.1%} of the inversion Fisher but only "
        f"{row['classification_share']:.1%} of the classification Fisher, the best "
        f"trade-off I(b) - {rec.lam:g} C(b) = {row['score']:.3f} over all boundaries"
    )
    if b + 1 in t.index:
        nxt = rec.layers.iloc[b]
        limit = (
            f"freezing layer {b} ({nxt['name']}) as well would breach the budget "
            f"C <= {rec.budget:g}"
            if not bool(t.loc[b + 1, "feasible"])
            else f"layer {b} ({nxt['name']}) is classification-heavy "
            f"({nxt['classification_share']:.1%} of the classification Fisher against "
            f"{nxt['inversion_share']:.1%} of the inversion Fisher), so freezing it would "
            "lower the score"
        )
        text += f"; {limit}"
    if rec.budget < 1:
        text += f". The frozen classification share is capped at {rec.budget:g}"
    return text + "."


def recommend_freeze(
    classification_profile: pd.DataFrame | str | Path,
    inversion_profile: pd.DataFrame | str | Path,
    *,
    lam: float = 1.0,
    budget: float = 1.0,
    aggregate: str = "shares",
) -> Recommendation:
    """Recommend a TL-DMI freeze boundary from a classification and an inversion profile.

    The rule (see the module docs): ``b* = argmax_b I(b) - lam * C(b)`` over
    the boundaries ``b`` whose frozen classification share ``C(b)`` is at most
    ``budget``, ties going to the larger ``b``.

    Args:
        classification_profile: Profile of the classification loss on private
            data (frame or ``fisherlab profile`` output).
        inversion_profile: Fisher recorded along an attack (frame or
            ``fisherlab attack --fisher-every K`` output), or any profile of
            the inversion objective.
        lam: Price of classification Fisher (>= 0).
        budget: Cap in [0, 1] on the frozen share of classification Fisher.
        aggregate: How the inversion profile's recorded steps combine
            (:data:`AGGREGATIONS`; see :func:`layer_shares`).

    Returns:
        The recommendation, with its table and explanation.

    Raises:
        FisherlabError: For an empty profile, profiles of different models or
            layer maps, ``lam < 0`` or ``budget`` outside [0, 1].

    Example:
        >>> import pandas as pd
        >>> rows = lambda shares: pd.DataFrame(
        ...     {"index": range(4), "name": list("abcd"), "n_params": [10, 20, 30, 5],
        ...      "trace": shares})
        >>> rec = recommend_freeze(rows([0.1, 0.2, 0.4, 0.3]), rows([0.4, 0.4, 0.1, 0.1]))
        >>> rec.boundary, rec.n_trainable_params
        (2, 35)
    """
    check_rule(lam, budget)
    frames = [
        read_profile(value) if isinstance(value, str | Path) else value
        for value in (classification_profile, inversion_profile)
    ]
    models = [f.attrs.get("model") if f is not None else None for f in frames]
    if all(models) and models[0] != models[1]:
        raise FisherlabError(
            f"the profiles come from different models (fingerprints {models[0]} and "
            f"{models[1]}): profile the same checkpoint for both objectives"
        )
    cls = layer_shares(frames[0], "classification")
    inv = layer_shares(frames[1], "inversion", aggregate)
    _check_same_layers(cls, inv)
    n_layers = len(cls)
    n_params = [int(n) for n in cls["n_params"]]
    rows = []
    for b in range(n_layers):  # the head (layer L-1) is always trained
        c = float(cls["share"].iloc[:b].sum())
        i = float(inv["share"].iloc[:b].sum())
        rows.append(
            {
                "boundary": b,
                "frozen_layers": b,
                "inversion_share": i,
                "classification_share": c,
                "score": i - lam * c,
                "feasible": c <= budget + 1e-12,
                "n_trainable_params": sum(n_params[b:]),
            }
        )
    table = pd.DataFrame(rows)
    feasible = table[table["feasible"]]
    best = feasible["score"].max()
    boundary = int(feasible.loc[feasible["score"] >= best - 1e-12, "boundary"].max())
    table["chosen"] = table["boundary"] == boundary
    per_layer = pd.DataFrame(
        {
            "index": cls["index"],
            "name": cls["name"],
            "n_params": cls["n_params"],
            "inversion_share": inv["share"],
            "classification_share": cls["share"],
        }
    )
    rec = Recommendation(
        boundary=boundary,
        n_trainable_params=int(table.loc[boundary, "n_trainable_params"]),
        n_params=sum(n_params),
        lam=float(lam),
        budget=float(budget),
        table=table,
        layers=per_layer,
        aggregate=aggregate,
    )
    rec.explanation = _explain(rec)
    return rec


def profiles_for(
    model: nn.Module,
    data: str,
    generator: str | Path,
    *,
    attack_name: str = "gmi",
    iterations: int = 300,
    per_class: int = 5,
    fisher_every: int = 10,
    max_samples: int | None = 1000,
    progress: bool = False,
    device: str | torch.device | None = None,
    workers: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both profiles the planner needs, computed for one model.

    The classification profile is taken on ``data`` (the private data); the
    inversion profile is the Fisher recorded along one restart of an attack
    with the GAN prior ``generator`` on every class of the model.

    Args:
        model: The model (its checkpoint's metadata names its classes).
        data: Private dataset string.
        generator: GAN prior checkpoint for the attack.
        attack_name: An attack with a GAN prior (``gmi`` or ``kedmi``).
        iterations: Attack iterations.
        per_class: Reconstructions per class.
        fisher_every: Record the Fisher every this many iterations.
        max_samples: Samples of the classification profile (a class-balanced
            subset, :func:`fisherlab.data.stratified_indices`).
        progress: Show progress bars.
        device: Where both run (``None``/``"auto"``: CUDA when available, else
            the CPU); the Fisher is computed in full precision either way.
        workers: Data-loading processes for image folders (0: this one).

    Returns:
        ``(classification profile, inversion profile)``.
    """
    chosen = resolve_device(device)
    cls = profile(
        model, data, max_samples=max_samples, progress=progress, device=chosen, workers=workers
    )
    names = model_meta(model).class_names
    classes = tuple(range(len(names))) if names else AttackConfig.classes
    config = AttackConfig(
        attack=attack_name,
        classes=classes,
        per_class=per_class,
        iterations=iterations,
        restarts=1,
        fisher_every=fisher_every,
    )
    outcome = attack(
        model, generator, None, config, progress=progress, device=chosen, workers=workers
    )
    return cls, outcome.result.fisher


def write_recommendation(
    rec: Recommendation,
    out: str | Path,
    profiles: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> list[Path]:
    """Write ``recommendation.csv`` and ``recommendation.json`` (and the profiles) to ``out``.

    The files come as one set, ``recommendation.json`` last (a folder without
    it is an unfinished recommendation).

    Args:
        rec: The recommendation.
        out: The folder.
        profiles: The classification and inversion profiles, when they were
            computed here (saved as ``classification.csv`` and ``inversion.csv``).

    Returns:
        The written paths.
    """
    out = Path(out)
    table = rec.table.assign(lam=rec.lam, budget=rec.budget)
    names = ["recommendation.csv"]
    with output_set(out, "recommendation.json") as tmp:
        write_atomic(tmp / "recommendation.csv", lambda p: table.to_csv(p, index=False))
        if profiles is not None:
            for name, frame in zip(("classification", "inversion"), profiles, strict=True):
                write_atomic(tmp / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
                names.append(f"{name}.csv")
        write_json(tmp / "recommendation.json", rec.to_dict())
        names.append("recommendation.json")
    return [out / n for n in names]


def recommended_boundary(plan: str | Path, model: nn.Module | None = None) -> int:
    """The freeze boundary a saved recommendation chose, checked against ``model``.

    This is how a plan drives training: ``fisherlab train --freeze-boundary-from
    PLAN`` and ``TrainConfig(freeze_boundary=recommended_boundary(PLAN, model))``.

    Args:
        plan: A recommendation folder (``fisherlab recommend-freeze --out``,
            ``fisherlab defend``'s ``recommendation/``) or its
            ``recommendation.json``.
        model: The model about to be trained. When given, its layer map must
            match the plan's layer by layer (names, and sizes except the head,
            which fine-tuning may replace): a boundary counts layers, so a plan
            made for another architecture would freeze the wrong ones.

    Returns:
        The boundary ``b``: freeze the layers ``[0, b)``.

    Raises:
        FisherlabError: For a missing, unfinished or malformed plan, or one
            made for another layer map.
    """
    path = Path(plan)
    if path.is_dir():
        if not is_complete(path, "recommendation.json"):
            raise FisherlabError(
                f"{path} holds no finished recommendation (no recommendation.json): run "
                "`fisherlab recommend-freeze --out` or `fisherlab defend` first"
            )
        path = path / "recommendation.json"
    if not path.is_file():
        raise FisherlabError(
            f"no plan at {plan}: give a recommendation folder or its recommendation.json"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FisherlabError(f"{path} is not a recommendation (not JSON: {exc})") from None
    boundary = record.get("boundary") if isinstance(record, dict) else None
    planned = record.get("layers") if isinstance(record, dict) else None
    if (
        not isinstance(boundary, int)
        or isinstance(boundary, bool)
        or not isinstance(planned, list)
        or not all(isinstance(r, dict) and "name" in r and "n_params" in r for r in planned)
        or not 0 <= boundary < max(len(planned), 1)
    ):
        raise FisherlabError(
            f"{path} is not a fisherlab recommendation (it needs an integer 'boundary' inside its "
            "'layers' list): write one with `fisherlab recommend-freeze --out`"
        )
    if model is not None:
        have = [(layer.name, layer.n_params) for layer in layers(model)]
        want = [(str(r["name"]), int(r["n_params"])) for r in planned]
        same = len(have) == len(want) and all(
            h[0] == w[0] and (h[1] == w[1] or i == len(want) - 1)
            for i, (h, w) in enumerate(zip(have, want, strict=True))
        )
        if not same:
            raise FisherlabError(
                f"{path} plans for a model with {len(want)} layers "
                f"({', '.join(n for n, _ in want[:4])}{', ...' if len(want) > 4 else ''}) but "
                f"this model has {len(have)} "
                f"({', '.join(n for n, _ in have[:4])}{', ...' if len(have) > 4 else ''}): "
                "plan on the model you train"
            )
    return boundary

"""The step cache of a reproduction: every unit of work runs once, keyed by its config.

A :class:`Step` is described by its kind and config (upstream steps appear by
their keys); its key is a hash of both (:func:`step_key`), and its outputs go
to ``OUT/steps/<kind>-<key>/``. :func:`compute` runs a step's work unless its
``step.json``, written last, exists: an interrupted run resumes at the first
unfinished step and a rerun reuses everything. :class:`Runner` collects the
steps a reproduction describes and runs them in batches (:meth:`Runner.flush`),
here one after another or on Ray (:mod:`fisherlab.experiments.executors`).

Concurrent runs on one folder are safe: a step is computed under an exclusive
lock on ``OUT/steps/.<kind>-<key>.lock`` (:func:`locked`), so a second process
that reaches a step the first is computing waits for it, says so, and then
reuses its result; nobody removes a step folder that is being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from fisherlab._io import write_json
from fisherlab._progress import tqdm
from fisherlab.errors import FisherlabError


def step_key(kind: str, config: dict[str, Any]) -> str:
    """A 12-hex-digit hash of a step's kind and config (JSON with sorted keys)."""
    text = json.dumps({"kind": kind, **config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Step:
    """One cached unit of work.

    Attributes:
        kind: What it does (``pretrain``, ``finetune``, ``attack``, ...).
        label: A readable name for progress lines.
        config: Its config (upstream steps appear by their keys).
        key: Hash of ``kind`` and ``config``.
        dir: ``OUT/steps/<kind>-<key>``.
        result: What the step recorded in its ``step.json`` (set once it ran).
        number: Its place in the run (set when submitted), for progress lines.
    """

    kind: str
    label: str
    config: dict[str, Any]
    key: str = ""
    dir: Path = field(default_factory=Path)
    result: dict[str, Any] = field(default_factory=dict)
    number: int = 0

    @property
    def done(self) -> bool:
        """Whether the step finished (its ``step.json`` exists)."""
        return (self.dir / "step.json").is_file()


@contextlib.contextmanager
def locked(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if absent) inside the block.

    Args:
        path: The lock file.
        on_wait: Called once if another process holds the lock (then this one waits).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Compute with ``threads`` torch threads inside the block (``None``: as they are)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Work = Callable[[Path], "dict[str, Any] | None"]
"""A step's work: computes into the step's folder, returns what ``step.json`` records."""


class StepFailed(FisherlabError):
    """A step's work raised: names the step's key and the error in one line."""


def failure(step: Step, error: str, out: Path) -> StepFailed:
    """The one-line report of a failed step (the other finished steps stay cached)."""
    return StepFailed(
        f"step {step.dir.name} ({step.label}) failed: {error}; the finished steps stay cached "
        f"in {out / 'steps'}: fix the cause and rerun (with either executor) to resume"
    )


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


def _read_back(step: Step) -> dict[str, Any]:
    return {**json.loads((step.dir / "step.json").read_text()), "cached": True}


def compute(step: Step, work: Work, on_wait: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run ``work`` for ``step`` unless it is cached, and return its ``step.json`` record.

    This is the whole protocol of a step, the same in every process that runs
    one (the serial executor's and a Ray worker): under the step's lock
    (:func:`locked`), a finished step is read back; otherwise a folder left
    by an interrupted attempt is removed, the work runs in a fresh one, and
    ``step.json`` is written last.

    Args:
        step: The step.
        work: Its work.
        on_wait: Called once if another process holds the step's lock.

    Returns:
        The record (``config``, ``result``, ``timing``: the label, kind, key,
        seconds and torch threads it computed with) with ``cached`` added.
    """
    if step.done:  # without a lock: a cached step needs none
        return _read_back(step)
    with locked(step.dir.parent / f".{step.dir.name}.lock", on_wait):
        if step.done:  # another process finished it while this one waited
            return _read_back(step)
        if step.dir.exists():
            shutil.rmtree(step.dir)  # an interrupted attempt
        step.dir.mkdir(parents=True)
        start = time.perf_counter()
        result = work(step.dir) or {}
        seconds = time.perf_counter() - start
        timing = {"step": step.label, "kind": step.kind, "key": step.key, "seconds": seconds}
        timing["threads"] = torch.get_num_threads()  # CPU numbers depend on it: provenance
        record = {"config": step.config, "result": result, "timing": timing}
        record = json.loads(json.dumps(record, default=str))  # as a cached run reads it
        write_json(step.dir / "step.json", record)
    return {**record, "cached": False}


class Executor(Protocol):
    """Runs a batch of described steps (see :mod:`fisherlab.experiments.executors`)."""

    def execute(self, runner: Runner, batch: list[tuple[Step, Work]]) -> None:
        """Run ``batch`` (in dependency order) and call ``runner.finished`` for each step."""

    def describe(self) -> dict[str, Any]:
        """What ran the steps, for a run's ``config.json``."""

    def close(self) -> None:
        """Release what the executor started (e.g. a local Ray instance)."""


class Runner:
    """Collects described steps, runs them in batches, and reports progress and timings.

    :meth:`submit` only describes a step; :meth:`flush` runs every step
    submitted since the last flush, by the runner's executor (``None``: one
    after another in this process, in the order they were submitted, which is
    an order their dependencies allow). Code that reads a step's result or
    files calls :meth:`flush` first.
    """

    def __init__(
        self,
        out: Path,
        progress: bool,
        executor: Executor | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.out = Path(out).absolute()
        """The output folder, absolute: a Ray worker may start in another folder."""
        self.threads = threads
        """Torch threads of each step (``None``: torch's default here, a Ray step's CPUs there)."""
        self.progress = progress
        self.device = device
        """Where the steps compute (an executor places them accordingly)."""
        self.bars = progress
        """Whether the steps' work shows progress bars (a Ray run turns them off)."""
        self.executor = executor
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self.pending: list[tuple[Step, Work]] = []

    def step(self, kind: str, label: str, config: dict[str, Any]) -> Step:
        """Describe a step (nothing runs)."""
        key = step_key(kind, config)
        return Step(kind, label, config, key, self.out / "steps" / f"{kind}-{key}")

    def submit(self, step: Step, work: Work) -> None:
        """Queue ``work`` for ``step``; it runs at the next :meth:`flush`."""
        self.count += 1
        step.number = self.count
        self.pending.append((step, work))

    def run(self, step: Step, work: Work) -> None:
        """Submit one step and flush at once (sets ``step.result``)."""
        self.submit(step, work)
        self.flush()

    def flush(self) -> None:
        """Run every submitted step not run yet; sets their results.

        Raises:
            StepFailed: A step failed (its dependent steps did not run; every
                finished step stays cached).
        """
        batch, self.pending = self.pending, []
        if not batch:
            return
        start = len(self.records)
        if self.executor is None:
            for step, work in batch:
                self._run_here(step, work)
        else:
            self.executor.execute(self, batch)
        # the records in submission order, whatever order the steps finished in
        done = sorted(self.records[start:], key=lambda r: r["_number"])
        self.records[start:] = [{k: v for k, v in r.items() if k != "_number"} for r in done]

    def _run_here(self, step: Step, work: Work) -> None:
        if self.progress and not step.done:
            tqdm.write(f"[{step.number}] {step.label} ...")
        message = f"[{step.number}] {step.label}: waiting for another process computing it"
        try:
            with torch_threads(self.threads):
                on_wait = (lambda: tqdm.write(message)) if self.progress else None
                record = compute(step, work, on_wait)
        except (KeyboardInterrupt, StepFailed):
            raise
        except Exception as exc:
            raise failure(step, describe_error(exc), self.out) from exc
        self.finished(step, record)

    def finished(self, step: Step, record: dict[str, Any], note: str = "") -> None:
        """Take a finished step's record: set its result, keep its timing, print its line."""
        step.result = record["result"]
        timing = record["timing"]
        row = {c: timing[c] for c in ("step", "kind", "key", "seconds")}  # one column order
        self.records.append(row | {"cached": record["cached"], "_number": step.number})
        if self.progress:
            took = f"cached ({step.dir.name})" if record["cached"] else f"{timing['seconds']:.1f} s"
            tqdm.write(f"[{step.number}] {step.label}: {took}{note}")

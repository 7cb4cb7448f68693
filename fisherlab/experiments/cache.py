"""The step cache of a reproduction: every unit of work runs once, keyed by its config.

A :class:`Step` is described by its kind and config (upstream steps appear by
their keys); its key is a hash of both (:func:`step_key`), and its outputs go
to ``OUT/steps/<kind>-<key>/``. :class:`Runner` runs a step's work unless its
``step.json``, written last, exists: an interrupted run resumes at the first
unfinished step and a rerun reuses everything.

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
from typing import Any

from fisherlab._io import write_json
from fisherlab._progress import tqdm


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
    """

    kind: str
    label: str
    config: dict[str, Any]
    key: str = ""
    dir: Path = field(default_factory=Path)
    result: dict[str, Any] = field(default_factory=dict)

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


class Runner:
    """Runs steps once, caches them, and reports progress and timings."""

    def __init__(self, out: Path, progress: bool) -> None:
        self.out = out
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.count = 0

    def step(self, kind: str, label: str, config: dict[str, Any]) -> Step:
        """Describe a step (nothing runs)."""
        key = step_key(kind, config)
        return Step(kind, label, config, key, self.out / "steps" / f"{kind}-{key}")

    def run(self, step: Step, work: Callable[[Path], dict[str, Any] | None]) -> None:
        """Run ``work(step.dir)`` unless cached; sets ``step.result``."""
        self.count += 1
        if not step.done:  # without a lock: a cached step needs none
            lock = step.dir.parent / f".{step.dir.name}.lock"
            message = f"[{self.count}] {step.label}: waiting for another process computing it"
            with locked(lock, (lambda: tqdm.write(message)) if self.progress else None):
                self._run_unlocked(step, work)
            return
        self._run_unlocked(step, work)

    def _run_unlocked(self, step: Step, work: Callable[[Path], dict[str, Any] | None]) -> None:
        if step.done:
            record = json.loads((step.dir / "step.json").read_text())
            step.result = record["result"]
            self.records.append({**record["timing"], "cached": True})
            if self.progress:
                tqdm.write(f"[{self.count}] {step.label}: cached ({step.dir.name})")
            return
        if step.dir.exists():
            shutil.rmtree(step.dir)  # an interrupted attempt
        step.dir.mkdir(parents=True)
        if self.progress:
            tqdm.write(f"[{self.count}] {step.label} ...")
        start = time.perf_counter()
        result = work(step.dir) or {}
        seconds = time.perf_counter() - start
        timing = {"step": step.label, "kind": step.kind, "key": step.key, "seconds": seconds}
        record = {"config": step.config, "result": result, "timing": timing}
        record = json.loads(json.dumps(record, default=str))  # as a cached run reads it
        write_json(step.dir / "step.json", record)
        step.result = record["result"]
        self.records.append({**timing, "cached": False})
        if self.progress:
            tqdm.write(f"[{self.count}] {step.label}: {seconds:.1f} s")

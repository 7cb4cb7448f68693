"""The step cache of a reproduction: every unit of work runs once, keyed by its config.

A :class:`Step` is described by its kind and config (upstream steps appear by
their keys); its key is a hash of both (:func:`step_key`), and its outputs go
to ``OUT/steps/<kind>-<key>/``. :class:`Runner` runs a step's work unless its
``step.json``, written last, exists: an interrupted run resumes at the first
unfinished step and a rerun reuses everything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fisherlab._io import write_json


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

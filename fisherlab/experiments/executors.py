"""Who runs a reproduction's steps: this process, one after another, or Ray.

A reproduction (or ``fisherlab defend``) describes its steps to a
:class:`~fisherlab.experiments.cache.Runner`, which runs them in batches. A
step's config holds the keys of the steps it reads, so a batch is a graph:
a step depends on every step of the batch whose key appears in its config
(:func:`upstream`). Without an executor the runner computes the batch in the
order it was described, which is an order the graph allows. A
:class:`RayExecutor` makes every step a Ray task that is submitted once the
steps it depends on have finished, on a local Ray instance or a running
cluster, with resources per kind of step (:data:`STEP_RESOURCES`).

Either way a step is computed by :func:`~fisherlab.experiments.cache.compute`
(the step's lock, ``step.json`` written last), so the cache is the source of
truth: a run interrupted under one executor resumes under the other, and two
workers never write one step folder. The output folder must be on storage
that every worker sees at the same path (a local folder on one machine, a
shared file system on a cluster); a worker that cannot see it fails its step
with a message that says so.

A reproduction runs two batches, not one graph: a fine-tuning's key hashes
the content of the checkpoint it starts from, so the fine-tunings are
described once pretraining has finished. ``fisherlab defend`` runs three (its
recommendation needs the reference's attacks).

**Threads.** A CPU result depends on torch's intra-op thread count (a
reduction is split by thread), and a fine-tuning's key hashes the checkpoint
it starts from, so two runs share steps and numbers bitwise only at one
thread count. A Ray step computes with as many threads as it has CPUs (one by
default; two steps of two threads each on two cores oversubscribe them and
crawl), a serial step with torch's default (all cores) unless the run sets
``threads``: ``reproduce(..., threads=1)`` (``--threads 1``) one after
another here computes exactly what the Ray run computes, and either resumes
the other. Runs at different thread counts mix nothing: the steps downstream
of a differing checkpoint get other keys and are computed anew.

When a step fails, the steps that depend on it are not run, the others of
the batch finish and stay cached, and the run stops with one line naming the
failed step's key and its error (:class:`~fisherlab.experiments.cache.StepFailed`).
"""

from __future__ import annotations

import json
import math
import re
import socket
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fisherlab.errors import FisherlabError
from fisherlab.experiments.cache import (
    Executor,
    Runner,
    Step,
    StepFailed,
    Work,
    compute,
    describe_error,
    failure,
    torch_threads,
)

__all__ = [
    "EXECUTORS",
    "STEP_RESOURCES",
    "Executor",
    "RayExecutor",
    "check_threads",
    "make_executor",
    "upstream",
]

EXECUTORS = ("local", "ray")
"""The executors ``--executor`` names."""

STEP_RESOURCES: dict[str, dict[str, float]] = {
    "train": {"num_cpus": 1, "num_gpus": 1},
    "gan": {"num_cpus": 1, "num_gpus": 1},
    "attack": {"num_cpus": 1, "num_gpus": 1},
    "distill": {"num_cpus": 1, "num_gpus": 1},
    "profile": {"num_cpus": 1, "num_gpus": 1},
}
"""Ray resources of one step, by kind (pretraining and fine-tuning are ``train``).

``num_gpus`` is asked for only when the steps compute on CUDA (a cluster
without GPUs is then refused); on the CPU a step takes its CPUs only. A step's work uses
as many torch threads as it has CPUs, unless the run sets ``threads``. The
tables are assembled by the driver and take no worker. Override per kind with
``RayExecutor(resources={"attack": {"num_gpus": 0.5}})`` or
``--ray-resources '{"attack": {"num_gpus": 0.5}}'``.
"""

_KEY = re.compile(r"[0-9a-f]{12}")


def upstream(step: Step, keys: set[str]) -> set[str]:
    """The keys among ``keys`` that ``step``'s config names: the steps it reads."""
    text = json.dumps(step.config, sort_keys=True, default=str)
    return (set(_KEY.findall(text)) & keys) - {step.key}


def check_resources(resources: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """:data:`STEP_RESOURCES` with ``resources`` laid over it, checked.

    Raises:
        FisherlabError: For an unknown kind of step or resource, or a value
            that is not a finite number (CPUs > 0, GPUs >= 0) or is finer than
            Ray's unit, 0.0001.
    """
    merged = {kind: dict(r) for kind, r in STEP_RESOURCES.items()}
    if not isinstance(resources, Mapping):
        raise FisherlabError(
            "Ray resources must map a kind of step to its resources, "
            'e.g. {"attack": {"num_gpus": 1}}'
        )
    for kind, asked in resources.items():
        if kind not in merged:
            raise FisherlabError(
                f"Ray resources for an unknown kind of step {kind!r}: expected {sorted(merged)}"
            )
        if not isinstance(asked, Mapping):
            raise FisherlabError(f"Ray resources of {kind!r} must be a mapping, got {asked!r}")
        for name, value in asked.items():
            if name not in ("num_cpus", "num_gpus"):
                raise FisherlabError(
                    f"unknown Ray resource {name!r} for {kind!r}: expected num_cpus, num_gpus"
                )
            number = value if isinstance(value, int | float) else math.nan
            low_ok = number > 0 if name == "num_cpus" else number >= 0
            if isinstance(value, bool) or not math.isfinite(number) or not low_ok:
                bound = "> 0" if name == "num_cpus" else ">= 0"
                raise FisherlabError(
                    f"Ray resource {name} of {kind!r} must be a finite number {bound}, "
                    f"got {value!r}"
                )
            if 0 < number < 1e-4:
                raise FisherlabError(
                    f"Ray resource {name} of {kind!r} is finer than Ray's unit, 0.0001: "
                    f"got {value!r}"
                )
            merged[kind][name] = float(value)
    return merged


def _run_step(token: str, step: Step, work: Work, threads: int) -> dict[str, Any]:
    """A Ray task: compute one step on a worker; errors come back as values."""
    if not Path(token).is_file():
        return {
            "error": f"the worker on {socket.gethostname()} cannot see the output folder "
            f"{Path(token).parent.parent}: put --out on storage every worker mounts at the same "
            "path (a shared file system), or run on one machine"
        }
    try:
        with torch_threads(max(1, threads)):
            return {"record": compute(step, work)}
    except Exception as exc:  # noqa: BLE001 (the driver reports it in one line)
        return {"error": describe_error(exc)}


def _check_reachable(address: str) -> None:
    """Refuse a cluster address that does not answer (Ray itself retries for minutes).

    Raises:
        FisherlabError: For an address that is not ``HOST:PORT`` or
            ``ray://HOST:PORT``, or that nothing answers at within 5 seconds.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise FisherlabError(
            f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise FisherlabError(
            f"no Ray cluster answers at {address} ({describe_error(exc)}): start one there "
            "(ray start --head) or check --ray-address"
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FisherlabError(
            "--executor ray needs Ray, which is not installed: pip install 'fisherlab[ray]' "
            "(or pip install ray), or use --executor local"
        ) from None
    return ray


@dataclass
class RayExecutor:
    """Runs each step as a Ray task once the steps it depends on have finished.

    Attributes:
        address: ``None`` starts a local Ray instance (stopped by
            :meth:`close`: ``reproduce`` and ``defend`` close an executor they
            made from a name, the command line always; a caller closes its
            own); ``"auto"`` joins the cluster this machine belongs to; or a
            cluster's address (``ray://host:10001``, ``host:6379``).
        num_cpus: CPUs of a started local instance (``None``: all); with one
            CPU per step, the steps that run at once.
        resources: Overrides of :data:`STEP_RESOURCES`, by kind of step.
    """

    address: str | None = None
    num_cpus: int | None = None
    resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    _started: bool = field(default=False, init=False, repr=False)
    _gpus: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self._per_kind = check_resources(self.resources)
        if self.num_cpus is not None and (
            not isinstance(self.num_cpus, int)
            or isinstance(self.num_cpus, bool)
            or self.num_cpus < 1
        ):
            raise FisherlabError(f"--ray-cpus must be an integer >= 1, got {self.num_cpus!r}")
        if self.num_cpus is not None and self.address is not None:
            raise FisherlabError(
                "--ray-cpus sizes a local Ray instance; the cluster at --ray-address has its own"
            )
        self._ray = _import_ray()

    def _connect(self) -> Any:
        ray = self._ray
        if self.address not in (None, "auto"):
            _check_reachable(self.address)
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    num_cpus=self.num_cpus,
                    include_dashboard=False,
                    logging_level="ERROR",
                    log_to_driver=True,
                )
            except Exception as exc:  # Ray raises many kinds (OSError too): one line for all
                where = self.address or "a local Ray instance"
                raise FisherlabError(
                    f"could not start or join {where}: {describe_error(exc)}"
                ) from exc
            self._started = self.address is None
        return ray

    def describe(self) -> dict[str, Any]:
        """The executor's settings, what each kind of step asked for, and the cluster's size."""
        about: dict[str, Any] = {"name": "ray", "address": self.address, "num_cpus": self.num_cpus}
        about["resources"] = {  # as asked of Ray: GPUs only when the steps ran on CUDA
            kind: {k: v for k, v in self._options(kind, self._gpus).items() if k != "max_retries"}
            for kind in self._per_kind
        }
        if self._ray.is_initialized():
            cluster = self._ray.cluster_resources()
            about["cluster"] = {"CPU": cluster.get("CPU", 0), "GPU": cluster.get("GPU", 0)}
        about["ray"] = self._ray.__version__
        return about

    def close(self) -> None:
        """Stop the local Ray instance this executor started (a joined cluster stays)."""
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def _options(self, kind: str, gpus: bool) -> dict[str, float]:
        asked = self._per_kind.get(kind, {"num_cpus": 1, "num_gpus": 0})
        return {
            "num_cpus": asked["num_cpus"],
            "num_gpus": asked["num_gpus"] if gpus else 0,
            "max_retries": 0,
        }

    def execute(self, runner: Runner, batch: list[tuple[Step, Work]]) -> None:
        """Run ``batch`` on Ray: each step once its upstream steps have finished.

        Cached steps are reported at once; a step submitted more than once
        in the batch (a shared prior) runs once and its later submissions
        read it back, as they would one after another.

        Raises:
            StepFailed: A step failed (after the steps independent of it finished).
            FisherlabError: A step needs a GPU index, or Ray cannot start.
        """
        device = runner.device
        if device.startswith("cuda:"):
            raise FisherlabError(
                f"--device {device} with --executor ray: Ray gives each step its own GPU, "
                "so pass --device cuda"
            )
        ray = self._connect()
        gpus = self._gpus = device == "cuda"
        if gpus and ray.cluster_resources().get("GPU", 0) <= 0:
            raise FisherlabError(
                "--device cuda but the Ray cluster has no GPUs: pass --device cpu, or add GPU nodes"
            )
        self._check_fits(ray, {step.kind for step, _ in batch}, gpus)
        task = ray.remote(_run_step)
        steps_dir = runner.out / "steps"
        steps_dir.mkdir(parents=True, exist_ok=True)
        token = steps_dir / f".visible-{uuid.uuid4().hex}"
        token.write_text("a Ray worker that cannot read this file cannot see the output folder\n")
        try:
            self._schedule(runner, batch, ray, task, str(token), gpus)
        finally:
            token.unlink(missing_ok=True)

    def _check_fits(self, ray: Any, kinds: set[str], gpus: bool) -> None:
        """Refuse (a local instance) or warn (a cluster) when no node fits a kind's request.

        Ray would keep such a task pending forever; a cluster may still grow.
        """
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        largest = {r: max((n.get(r, 0) for n in nodes), default=0) for r in ("CPU", "GPU")}
        for kind in sorted(kinds):
            asked = self._options(kind, gpus)
            for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
                if asked[option] <= largest[resource]:
                    continue
                message = (
                    f"each {kind} step asks Ray for {asked[option]:g} {resource} but the largest "
                    f"node has {largest[resource]:g}: lower {option} of {kind!r} in "
                    "--ray-resources, or give Ray more (--ray-cpus, a larger node)"
                )
                if self.address is None:
                    raise FisherlabError(message)
                warnings.warn(f"{message}; the steps wait in case the cluster grows", stacklevel=2)

    def _schedule(
        self,
        runner: Runner,
        batch: list[tuple[Step, Work]],
        ray: Any,
        task: Any,
        token: str,
        gpus: bool,
    ) -> None:
        first: dict[str, tuple[Step, Work]] = {}
        repeats: list[Step] = []
        for step, work in batch:
            if step.key in first:
                repeats.append(step)
            else:
                first[step.key] = (step, work)
        waiting: dict[str, tuple[Step, Work]] = {}
        for key, (step, work) in first.items():
            if step.done:
                runner.finished(step, compute(step, work))
            else:
                waiting[key] = (step, work)
        needs = {k: upstream(s, set(waiting)) for k, (s, _) in waiting.items()}
        running: dict[Any, str] = {}
        finished: set[str] = set()
        failed: dict[str, str] = {}
        not_run: set[str] = set()
        while waiting or running:
            for key in list(waiting):
                if needs[key] & (set(failed) | not_run):
                    not_run.add(key)
                    del waiting[key]
                elif needs[key] <= finished:
                    step, work = waiting.pop(key)
                    options = self._options(step.kind, gpus)
                    threads = runner.threads or max(1, int(options["num_cpus"]))
                    ref = task.options(**options).remote(token, step, work, threads)
                    running[ref] = key
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            key = running.pop(ready[0])
            step = first[key][0]
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died (memory, a signal)
                outcome = {"error": describe_error(exc).split(" Traceback")[0]}
            state = f"  ({len(running)} on Ray, {len(waiting)} waiting for their inputs)"
            if "error" in outcome:
                failed[key] = outcome["error"]
                if runner.progress:
                    print(f"[{step.number}] {step.label}: FAILED: {outcome['error']}{state}")
                continue
            finished.add(key)
            runner.finished(step, outcome["record"], state if runner.progress else "")
        for step in repeats:
            if step.key in finished or step.done:
                runner.finished(step, compute(step, first[step.key][1]))
        if failed:
            key, error = next(iter(failed.items()))
            more = f" ({len(failed) - 1} more failed)" if len(failed) > 1 else ""
            report = failure(first[key][0], error + more, runner.out)
            raise StepFailed(f"{report}; {len(not_run)} dependent steps did not run")


def check_threads(threads: int | None) -> int | None:
    """``threads`` if it is ``None`` or an integer >= 1.

    Raises:
        FisherlabError: Otherwise.
    """
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise FisherlabError(f"--threads must be an integer >= 1, got {threads!r}")
    return threads


def make_executor(
    executor: str | Executor | None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    resources: Mapping[str, Mapping[str, float]] | None = None,
) -> Executor | None:
    """The executor a name stands for (``None`` for ``"local"``: the runner's own loop).

    Args:
        executor: ``"local"``, ``"ray"``, ``None`` or an executor (returned as is).
        address: Ray's address (see :class:`RayExecutor`).
        num_cpus: CPUs of a local Ray instance.
        resources: Overrides of :data:`STEP_RESOURCES`.

    Raises:
        FisherlabError: For an unknown name, Ray options with the local
            executor, or Ray not installed.
    """
    ray_options = address is not None or num_cpus is not None or bool(resources)
    if executor is None or executor == "local":
        if ray_options:
            raise FisherlabError(
                "--ray-address, --ray-cpus and --ray-resources need --executor ray"
            )
        return None
    if executor == "ray":
        return RayExecutor(address, num_cpus, resources or {})
    if isinstance(executor, str):
        raise FisherlabError(f"unknown executor {executor!r}: expected one of {list(EXECUTORS)}")
    return executor

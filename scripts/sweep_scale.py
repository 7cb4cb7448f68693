"""How a reproduction's step graph scales with workers: its size, critical path and makespan.

Two graphs (issue 18):

* ``--results DIR``: a finished reproduction's own graph, read from
  ``DIR/steps/*/step.json`` (each step's config names the keys of the steps
  it reads, :func:`fisherlab.experiments.executors.upstream`), with each
  step's *measured* seconds;
* ``--paper``: the paper's grid as a graph of the same kinds of step, with
  per-step costs on one GPU that are *assumptions* (:data:`PAPER_COSTS_H`,
  printed beside the table), since no GPU measured them here; with
  ``--results DIR`` too, the same grid is also costed with the *measured*
  median seconds of each kind of step in that reproduction
  (:func:`measured_costs`: this CPU, 28x28 images), which fixes the shape of
  the schedule from measurements rather than assumptions.

For each it prints the number of steps, the total work, the critical path
(the longest chain of dependent steps: no number of workers finishes sooner)
and the makespan of a greedy list schedule (longest remaining path first) on
1, 2, 8 and 64 workers. The schedule ignores Ray's per-task overhead (about
a second) and data movement, and the reproduction's two batches: a lower
bound on what Ray achieves.

Usage:
    python scripts/sweep_scale.py --results results/default
    python scripts/sweep_scale.py --paper
    python scripts/sweep_scale.py --results results/default --paper
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fisherlab.experiments.cache import Step
from fisherlab.experiments.executors import upstream


@dataclass
class Graph:
    """Steps with their costs and the steps each one needs."""

    cost: dict[str, float]
    needs: dict[str, set[str]]
    kind: dict[str, str]

    @cached_property
    def users(self) -> dict[str, list[str]]:
        """The steps that need each step."""
        users: dict[str, list[str]] = {k: [] for k in self.cost}
        for k, ins in self.needs.items():
            for i in ins:
                users[i].append(k)
        return users


def from_results(folder: Path) -> Graph:
    """The measured graph of a finished reproduction: the steps its ``steps.csv`` lists."""
    listed = folder / "steps.csv"
    if not listed.is_file():
        raise SystemExit(f"{listed} is missing: run the reproduction to its end first")
    with listed.open(newline="") as handle:
        names = {f"{row['kind']}-{row['key']}" for row in csv.DictReader(handle)}
    cost, kind, steps = {}, {}, []
    for name in sorted(names):
        record = json.loads((folder / "steps" / name / "step.json").read_text())
        step_kind, key = name.split("-", 1)
        cost[key] = float(record["timing"]["seconds"])
        kind[key] = step_kind
        steps.append(Step(step_kind, name, record["config"], key))
    needs = {s.key: upstream(s, set(cost)) for s in steps}  # as the Ray executor reads them
    return Graph(cost, needs, kind)


PAPER_COSTS_H = {
    "evaluator": 2.0,
    "gmi prior": 8.0,
    "finetune": 1.0,
    "kedmi prior": 8.0,
    "plgmi prior": 6.0,
    "distill": 0.5,
    "gmi": 0.5,
    "kedmi": 0.5,
    "lomma-gmi": 1.0,
    "lomma-kedmi": 1.0,
    "plgmi": 0.5,
    "profile": 0.1,
}
"""Assumed hours on one GPU of each step at 64x64 (1,000 identities, VGG16-class target).

Not measured (no GPU was lent). Orders of magnitude from the attacks' papers
and code: priors are trained for tens of thousands of steps; an attack
inverts 300 identities for 2,400-3,000 iterations (LOMMA with four models);
a fine-tuning is tens of epochs over about 30,000 images.
"""

PAPER_GRID = {
    "setups": 20,  # (private data, architecture) pairs: 3 datasets x 9 architectures, as run
    "datasets": 3,
    "boundaries": 5,  # per setup: full fine-tuning and four freeze boundaries
    "checkpoints": 4,  # GMI on several checkpoints of each fine-tuning (Fig. 2)
    "seeds": 3,
    "surrogates": 3,
}
"""The grid assumed for the paper's full evaluation (its 20 MI setups and 9 architectures)."""


MEASURED_AS = {
    "evaluator": ("evaluation model",),
    "gmi prior": ("GMI prior",),
    "finetune": ("fine-tune",),
    "kedmi prior": ("KEDMI prior",),
    "plgmi prior": ("PLG-MI prior",),
    "distill": ("distil",),
    "gmi": ("gmi on",),
    "kedmi": ("kedmi on",),
    "lomma-gmi": ("lomma-gmi on",),
    "lomma-kedmi": ("lomma-kedmi on", "lomma-gmi on"),
    "plgmi": ("plgmi on",),
    "profile": ("profile",),
}
"""Each kind of step of the paper's grid, and the labels in ``steps.csv`` that measure it.

The labels are tried in order: the default preset runs no LOMMA-KEDMI, so it
is costed as LOMMA-GMI (the same surrogates and iterations).
"""


def measured_costs(folder: Path) -> dict[str, float]:
    """The median measured hours of each kind of step of a finished reproduction."""
    with (folder / "steps.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    costs = {}
    for kind, labels in MEASURED_AS.items():
        for label in labels:
            seconds = sorted(float(r["seconds"]) for r in rows if r["step"].startswith(label))
            if seconds:
                costs[kind] = seconds[len(seconds) // 2] / 3600
                break
        else:
            raise SystemExit(f"{folder}/steps.csv has no step like {labels[0]!r} to cost {kind}")
    return costs


def paper_graph(grid: dict[str, int], costs: dict[str, float]) -> Graph:
    """The paper's grid as a step graph (node costs in seconds)."""
    cost, needs, kind = {}, {}, {}

    def add(name: str, step_kind: str, inputs: set[str]) -> str:
        cost[name] = costs[step_kind] * 3600
        needs[name] = set(inputs)
        kind[name] = step_kind
        return name

    for d in range(grid["datasets"]):
        add(f"eval{d}", "evaluator", set())
        add(f"prior{d}", "gmi prior", set())
    for s in range(grid["setups"]):
        d = s % grid["datasets"]
        ev, prior = f"eval{d}", f"prior{d}"
        for seed in range(grid["seeds"]):
            for b in range(grid["boundaries"]):
                tag = f"s{s}b{b}r{seed}"
                ft = add(f"ft {tag}", "finetune", set())
                add(f"profile {tag}", "profile", {ft})
                for c in range(grid["checkpoints"]):
                    add(f"gmi {tag} c{c}", "gmi", {ft, prior, ev})
                kp = add(f"kedmi prior {tag}", "kedmi prior", {ft})
                add(f"kedmi {tag}", "kedmi", {ft, kp, ev})
                sur = {
                    add(f"distill {tag} {k}", "distill", {ft}) for k in range(grid["surrogates"])
                }
                add(f"lomma-gmi {tag}", "lomma-gmi", {ft, prior, ev} | sur)
                add(f"lomma-kedmi {tag}", "lomma-kedmi", {ft, kp, ev} | sur)
                pp = add(f"plgmi prior {tag}", "plgmi prior", {ft})
                add(f"plgmi {tag}", "plgmi", {ft, pp, ev})
    return Graph(cost, needs, kind)


def critical_path(g: Graph) -> tuple[float, dict[str, float]]:
    """The longest chain's cost, and each step's longest remaining path (itself included)."""
    users = g.users
    tail: dict[str, float] = {}
    order = _topological(g)
    for k in reversed(order):
        tail[k] = g.cost[k] + max((tail[u] for u in users[k]), default=0.0)
    return max(tail.values(), default=0.0), tail


def _topological(g: Graph) -> list[str]:
    left = {k: len(v) for k, v in g.needs.items()}
    users = g.users
    ready = [k for k, n in left.items() if n == 0]
    order = []
    while ready:
        k = ready.pop()
        order.append(k)
        for u in users[k]:
            left[u] -= 1
            if left[u] == 0:
                ready.append(u)
    if len(order) != len(g.cost):
        raise SystemExit("the step graph has a cycle")
    return order


def makespan(g: Graph, workers: int, tail: dict[str, float]) -> float:
    """A greedy list schedule's finishing time: the ready step with the longest tail first."""
    left = {k: len(v) for k, v in g.needs.items()}
    users = g.users
    ready = [(-tail[k], k) for k, n in left.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, k = heapq.heappop(ready)
            heapq.heappush(running, (now + g.cost[k], k))
        now = running[0][0]
        while running and running[0][0] == now:  # every step finishing now frees its users
            _, k = heapq.heappop(running)
            for u in users[k]:
                left[u] -= 1
                if left[u] == 0:
                    heapq.heappush(ready, (-tail[u], u))
    return now


def report(g: Graph, unit: str, scale: float, work_unit: str) -> None:
    """Print the graph's size, work (in ``work_unit``), critical path and makespans (``unit``)."""
    path, tail = critical_path(g)
    total = sum(g.cost.values())
    kinds: dict[str, int] = {}
    for k in g.kind.values():
        kinds[k] = kinds.get(k, 0) + 1
    print(f"steps: {len(g.cost)} ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")
    print(f"total work: {total / scale:,.1f} {work_unit}", end="; ")
    print(f"critical path: {path / scale:,.2f} {unit}")
    print("| workers | makespan | speed-up | bound by |")
    print("| --- | --- | --- | --- |")
    for n in (1, 2, 8, 64):
        span = makespan(g, n, tail)
        bound = "critical path" if span <= path * 1.05 else "work / workers"
        print(f"| {n} | {span / scale:,.2f} {unit} | {total / span:.1f}x | {bound} |")


def main() -> None:
    """Print the tables (module docs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="a finished reproduction's folder")
    parser.add_argument("--paper", action="store_true", help="the paper's grid, assumed costs")
    args = parser.parse_args()
    if args.results is None and not args.paper:
        parser.error("give --results DIR or --paper")
    if args.results is not None:
        g = from_results(args.results)
        if not g.cost:
            raise SystemExit(f"no finished steps in {args.results}/steps")
        print(f"## {args.results}: measured seconds of each step (this machine)")
        report(g, "min", 60.0, "min")
    if args.paper:
        print("## the paper's grid:", ", ".join(f"{k} {v}" for k, v in PAPER_GRID.items()))
        print("assumed GPU-hours per step:", json.dumps(PAPER_COSTS_H))
        report(paper_graph(PAPER_GRID, PAPER_COSTS_H), "h", 3600.0, "GPU-h")
    if args.paper and args.results is not None:
        costs = measured_costs(args.results)
        print(f"## the paper's grid, each step at its kind's median in {args.results} (this CPU)")
        seconds = {k: round(v * 3600) for k, v in costs.items()}
        print("measured seconds per step:", json.dumps(seconds))
        report(paper_graph(PAPER_GRID, costs), "h", 3600.0, "CPU-h")


if __name__ == "__main__":
    main()

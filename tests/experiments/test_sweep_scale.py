"""``scripts/sweep_scale.py``: its critical path and schedule against brute force."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sweep_scale.py"
_spec = importlib.util.spec_from_file_location("sweep_scale", _SCRIPT)
sweep_scale = importlib.util.module_from_spec(_spec)
sys.modules["sweep_scale"] = sweep_scale  # its dataclass looks its module up there
_spec.loader.exec_module(sweep_scale)


def random_graph(seed: int, size: int = 9) -> sweep_scale.Graph:
    """A random DAG: step ``i`` may read any earlier step, with integer costs."""
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(size)]
    cost = {n: float(rng.randint(1, 9)) for n in names}
    needs = {n: {m for m in names[:i] if rng.random() < 0.3} for i, n in enumerate(names)}
    return sweep_scale.Graph(cost, needs, {n: "step" for n in names})


def longest_chain(g: sweep_scale.Graph) -> float:
    """The most expensive chain of dependent steps, by enumerating every chain."""
    best = 0.0

    def walk(step: str, total: float) -> None:
        nonlocal best
        best = max(best, total)
        for user in (u for u, ins in g.needs.items() if step in ins):
            walk(user, total + g.cost[user])

    for step in g.cost:
        walk(step, g.cost[step])
    return best


def list_schedule_by_the_clock(g: sweep_scale.Graph, workers: int, tail: dict) -> float:
    """A list schedule simulated one time unit at a time (integer costs): the reference.

    At each tick, every step that finishes frees its worker and its users; then
    each free worker takes the ready step with the longest tail (ties by name).
    """
    finish: dict[str, int] = {}
    running: dict[str, int] = {}
    clock = 0
    while len(finish) < len(g.cost):
        for k, end in list(running.items()):
            if end == clock:
                finish[k] = end
                del running[k]
        started = finish.keys() | running.keys()
        ready = [k for k in g.cost if k not in started and g.needs[k] <= finish.keys()]
        for k in sorted(ready, key=lambda s: (-tail[s], s))[: workers - len(running)]:
            running[k] = clock + int(g.cost[k])
        clock += 1
    return float(max(finish.values()))


@pytest.mark.parametrize("seed", range(6))
def test_the_critical_path_is_the_longest_chain(seed):
    g = random_graph(seed)
    path, tail = sweep_scale.critical_path(g)
    assert path == longest_chain(g)
    assert max(tail.values()) == path


@pytest.mark.parametrize("seed", range(6))
def test_the_schedule_lies_between_its_bounds_and_is_exact_at_the_extremes(seed):
    g = random_graph(seed)
    path, tail = sweep_scale.critical_path(g)
    total = sum(g.cost.values())
    assert sweep_scale.makespan(g, 1, tail) == total
    assert sweep_scale.makespan(g, len(g.cost), tail) == path
    for workers in (2, 3):
        span = sweep_scale.makespan(g, workers, tail)
        assert max(path, total / workers) <= span <= total / workers + path  # Graham's bound


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_the_schedule_matches_one_simulated_by_the_clock(seed, workers):
    g = random_graph(seed, size=12)
    _, tail = sweep_scale.critical_path(g)
    assert sweep_scale.makespan(g, workers, tail) == list_schedule_by_the_clock(g, workers, tail)


def test_the_paper_grid_has_the_size_the_readme_states():
    g = sweep_scale.paper_graph(sweep_scale.PAPER_GRID, sweep_scale.PAPER_COSTS_H)
    assert len(g.cost) == 4506
    assert sum(g.cost.values()) / 3600 == pytest.approx(6510)
    path, _ = sweep_scale.critical_path(g)
    assert path / 3600 == pytest.approx(1.0 + 8.0 + 1.0)  # fine-tune, KEDMI prior, LOMMA-KEDMI


def test_measured_costs_take_each_kinds_median(tmp_path):
    rows = ["step,kind,key,seconds,cached"]
    labels = {label for labels in sweep_scale.MEASURED_AS.values() for label in labels[:1]}
    for label in sorted(labels - {"lomma-kedmi on"}):
        for i, seconds in enumerate((10.0, 30.0, 20.0)):
            rows.append(f"{label} x{i},k,{i:012x},{seconds * 3600},False")
    (tmp_path / "steps.csv").write_text("\n".join(rows) + "\n")
    costs = sweep_scale.measured_costs(tmp_path)
    assert costs["gmi prior"] == 20.0 and costs["lomma-kedmi"] == costs["lomma-gmi"] == 20.0
    (tmp_path / "steps.csv").write_text(rows[0] + "\n")
    with pytest.raises(SystemExit, match="no step like 'evaluation model'"):
        sweep_scale.measured_costs(tmp_path)

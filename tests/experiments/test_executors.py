"""Running a batch of steps: one after another here, or as Ray tasks (issue 18).

The steps here are small functions that write files, so the graph's order,
the cache and the failure reports can be checked exactly; the reproduction
run under Ray against the serial one is in ``test_reproduce_on_ray.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:  # an extra (pip install 'fisherlab[ray]'); make setup installs it
    import ray
except ImportError:  # an install without it: the tests below that need it are skipped
    ray = None

from fisherlab.errors import FisherlabError
from fisherlab.experiments import reproduce
from fisherlab.experiments.cache import Runner, StepFailed, compute
from fisherlab.experiments.executors import (
    STEP_RESOURCES,
    RayExecutor,
    _run_step,
    check_resources,
    check_threads,
    make_executor,
    upstream,
)

needs_ray = pytest.mark.skipif(ray is None, reason="needs the extra: pip install 'fisherlab[ray]'")
"""For the tests that call Ray without the session's instance (``ray_executor`` skips itself)."""


def _chain(runner: Runner, log: Path, fail: str | None = None):
    """a -> b -> c, and d independent; each appends its name to ``log`` when it computes.

    ``b`` reads ``a``'s file and ``c`` reads ``b``'s, so running one before its
    input would fail; ``fail`` names a step whose work raises.
    """
    steps = {}

    def maker(name, source):
        def work(d: Path):
            with log.open("a") as f:
                f.write(name)
            if name == fail:
                raise ValueError(f"{name} broke\non two lines")
            before = (source.dir / "value.txt").read_text() if source is not None else ""
            (d / "value.txt").write_text(before + name)
            return {"value": before + name}

        return work

    for name, source, config in (
        ("a", None, {"name": "a"}),
        ("b", "a", {"name": "b"}),
        ("c", "b", {"name": "c"}),
        ("d", None, {"name": "d"}),
    ):
        upstream_step = steps.get(source)
        if upstream_step is not None:
            config = {**config, "input": upstream_step.key}
        step = runner.step("demo", f"step {name}", config)
        runner.submit(step, maker(name, upstream_step))
        steps[name] = step
    return steps


def test_upstream_reads_the_keys_a_config_names(tmp_path):
    runner = Runner(tmp_path, progress=False)
    steps = _chain(runner, tmp_path / "log")
    keys = {s.key for s in steps.values()}
    assert upstream(steps["a"], keys) == set()
    assert upstream(steps["b"], keys) == {steps["a"].key}
    assert upstream(steps["c"], keys) == {steps["b"].key}
    assert upstream(steps["d"], keys) == set()
    at_epoch = runner.step("attack", "x", {"target": f"{steps['c'].key}@5"})
    assert upstream(at_epoch, keys) == {steps["c"].key}


def test_submit_defers_and_flush_runs_in_order(tmp_path, capsys):
    runner = Runner(tmp_path, progress=True)
    log = tmp_path / "log"
    steps = _chain(runner, log)
    again = runner.step("demo", "step a again", {"name": "a"})
    runner.submit(again, lambda d: pytest.fail("a step submitted twice runs once"))
    assert not log.exists() and not steps["a"].done
    runner.flush()
    assert log.read_text() == "abcd"
    assert steps["c"].result == {"value": "abc"} and again.result == {"value": "a"}
    assert [r["step"] for r in runner.records] == [
        "step a",
        "step b",
        "step c",
        "step d",
        "step a",
    ]
    assert [r["cached"] for r in runner.records] == [False, False, False, False, True]
    columns = ["step", "kind", "key", "seconds", "cached"]  # read back or computed alike
    assert all(list(r) == columns for r in runner.records)
    out = capsys.readouterr().out
    assert "[2] step b ..." in out and "[5] step a again: cached" in out


def test_ray_runs_the_graph_in_dependency_order(tmp_path, ray_executor, capsys):
    log = tmp_path / "log"
    runner = Runner(tmp_path / "out", progress=True, executor=ray_executor)
    steps = _chain(runner, log)
    again = runner.step("demo", "step b again", {"name": "b", "input": steps["a"].key})
    runner.submit(again, lambda d: pytest.fail("a step submitted twice runs once"))
    runner.flush()
    assert sorted(log.read_text()) == list("abcd")
    assert log.read_text().index("a") < log.read_text().index("b") < log.read_text().index("c")
    assert steps["c"].result == {"value": "abc"} and again.result == {"value": "ab"}
    assert [r["step"] for r in runner.records] == ["step a", "step b", "step c", "step d", "step b"]
    assert [r["cached"] for r in runner.records] == [False, False, False, False, True]
    for step in steps.values():  # step.json written by the worker, exactly as here
        record = json.loads((step.dir / "step.json").read_text())
        assert record["config"] == step.config and record["timing"]["key"] == step.key
    out = capsys.readouterr().out
    assert "on Ray" in out and "waiting for their inputs" in out
    described = ray_executor.describe()  # on the CPU no step asked Ray for a GPU
    assert described["resources"]["attack"] == {"num_cpus": 1, "num_gpus": 0}
    assert described["cluster"] == {"CPU": 2, "GPU": 0}
    # a rerun on Ray reads everything back; so does a serial one
    runner = Runner(tmp_path / "out", progress=False, executor=ray_executor)
    _chain(runner, log)
    runner.flush()
    serial = Runner(tmp_path / "out", progress=False)
    _chain(serial, log)
    serial.flush()
    assert len(log.read_text()) == 4
    assert all(r["cached"] for r in runner.records + serial.records)


@pytest.mark.parametrize("on_ray", [False, True], ids=["serial", "ray"])
def test_a_failure_names_the_step_and_keeps_the_finished_ones(tmp_path, request, on_ray):
    """Serially the run stops at the failure; on Ray the independent step d still finishes."""
    executor = request.getfixturevalue("ray_executor") if on_ray else None
    log = tmp_path / "log"
    runner = Runner(tmp_path / "out", progress=False, executor=executor)
    steps = _chain(runner, log, fail="b")
    with pytest.raises(StepFailed) as caught:
        runner.flush()
    message = str(caught.value)
    assert "\n" not in message
    assert (
        f"step demo-{steps['b'].key} (step b) failed: ValueError: b broke on two lines" in message
    )
    assert "rerun (with either executor) to resume" in message
    assert steps["a"].done and not steps["b"].done and not steps["c"].done
    if on_ray:
        assert message.endswith("1 dependent steps did not run")
        assert sorted(log.read_text()) == list("abd")  # c never ran; d, independent, finished
    else:
        assert log.read_text() == "ab"  # one after another: the run stops at the failure
    # rerun one after another here with the cause fixed: what finished is read back
    serial = Runner(tmp_path / "out", progress=False)
    steps = _chain(serial, log)
    serial.flush()
    assert steps["c"].result == {"value": "abc"}
    assert [r["cached"] for r in serial.records] == [True, False, False, on_ray]


@needs_ray
def test_two_ray_workers_compute_one_step_once(tmp_path, ray_executor):
    """The step's lock holds across workers: a second computes nothing and reads the first's."""
    ray_executor._connect()
    runner = Runner(tmp_path / "out", progress=False)
    step = runner.step("demo", "slow", {"x": 1})
    counter = tmp_path / "count"

    def work(d: Path):
        with counter.open("a") as f:
            f.write("x")
        import time

        time.sleep(2)
        (d / "out.txt").write_text("done")
        return {"value": 7}

    token = tmp_path / "out" / "steps" / ".visible-test"
    token.parent.mkdir(parents=True)
    token.write_text("")
    task = ray.remote(_run_step)
    outcomes = ray.get([task.remote(str(token), step, work, 1) for _ in range(2)])
    assert counter.read_text() == "x"
    assert sorted(o["record"]["cached"] for o in outcomes) == [False, True]
    assert all(o["record"]["result"] == {"value": 7} for o in outcomes)


def test_a_worker_that_cannot_see_the_output_folder_says_so(tmp_path):
    runner = Runner(tmp_path / "out", progress=False)
    step = runner.step("demo", "x", {"x": 1})
    outcome = _run_step(str(tmp_path / "out" / "steps" / ".visible-missing"), step, print, 1)
    assert "cannot see the output folder" in outcome["error"]
    assert "storage every worker mounts at the same path" in outcome["error"]
    assert not step.dir.exists()


def test_resources_per_kind_are_checked_and_overridable():
    merged = check_resources({"attack": {"num_gpus": 0.5}})
    assert merged["attack"] == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert merged["train"] == STEP_RESOURCES["train"]
    for bad, message in (
        ({"tables": {"num_cpus": 1}}, "unknown kind of step 'tables'"),
        ({"attack": {"memory": 1}}, "unknown Ray resource 'memory'"),
        ({"attack": {"num_cpus": 0}}, "num_cpus of 'attack' must be a finite number > 0"),
        ({"attack": {"num_gpus": -1}}, "num_gpus of 'attack' must be a finite number >= 0"),
        ({"attack": {"num_gpus": "one"}}, "must be a finite number"),
        ({"attack": 2}, "must be a mapping"),
        ({"attack": {"num_gpus": 1e-5}}, "finer than Ray's unit, 0.0001"),
    ):
        with pytest.raises(FisherlabError, match=message):
            check_resources(bad)


def test_executor_names_and_options_are_checked():
    assert make_executor("local") is None and make_executor(None) is None
    with pytest.raises(FisherlabError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(FisherlabError, match="need --executor ray"):
        make_executor("local", num_cpus=2)
    with pytest.raises(FisherlabError, match="--ray-cpus must be an integer >= 1"):
        make_executor("ray", num_cpus=0)
    with pytest.raises(FisherlabError, match="--threads must be an integer >= 1"):
        check_threads(1.5)
    assert check_threads(None) is None and check_threads(2) == 2
    with pytest.raises(FisherlabError, match="the cluster at --ray-address has its own"):
        make_executor("ray", address="auto", num_cpus=2)


@needs_ray
def test_an_address_without_a_cluster_is_refused_at_once(tmp_path):
    for address, message in (
        ("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"),
        ("ray://127.0.0.1:1", "no Ray cluster answers at ray://127.0.0.1:1"),
        ("somewhere", "expected auto, HOST:PORT or ray://HOST:PORT"),
    ):
        runner = Runner(tmp_path, False, RayExecutor(address=address))
        runner.submit(runner.step("demo", "x", {}), lambda d: None)
        with pytest.raises(FisherlabError, match=message):
            runner.flush()


def test_a_request_no_node_can_meet_is_refused_not_left_pending(tmp_path, ray_executor):
    ray_executor._connect()  # the session's instance of 2 CPUs
    greedy = RayExecutor(num_cpus=2, resources={"train": {"num_cpus": 4}})
    runner = Runner(tmp_path, progress=False, executor=greedy)
    step = runner.step("train", "x", {"x": 1})
    runner.submit(step, lambda d: pytest.fail("a step no node fits does not run"))
    with pytest.raises(FisherlabError, match="each train step asks Ray for 4 CPU but the largest"):
        runner.flush()
    assert not step.dir.exists()
    out = tmp_path / "new" / "run"  # a reproduction refused so leaves no empty folders
    with pytest.raises(FisherlabError, match="each train step asks Ray for 4 CPU"):
        reproduce("smoke", out, progress=False, executor=greedy)
    assert not (tmp_path / "new").exists()


def test_a_gpu_index_or_a_cluster_without_gpus_is_refused_under_ray(tmp_path, ray_executor):
    runner = Runner(tmp_path, progress=False, executor=ray_executor, device="cuda:1")
    runner.submit(runner.step("demo", "x", {}), lambda d: None)
    with pytest.raises(FisherlabError, match="pass --device cuda"):
        runner.flush()
    runner = Runner(tmp_path, progress=False, executor=ray_executor, device="cuda")
    runner.submit(runner.step("demo", "x", {}), lambda d: None)
    with pytest.raises(FisherlabError, match="the Ray cluster has no GPUs: pass --device cpu"):
        runner.flush()  # this instance has CPUs only


def test_without_ray_the_local_executor_works_and_ray_says_how_to_install(tmp_path, monkeypatch):
    """A ``ray`` that fails to import stands for an install without it."""
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError
    runner = Runner(tmp_path / "here", False, make_executor("local"))
    step = runner.step("demo", "x", {"x": 1})
    runner.submit(step, lambda d: {"v": 1})
    runner.flush()
    assert step.result == {"v": 1}
    with pytest.raises(FisherlabError, match=r"pip install 'fisherlab\[ray\]'"):
        make_executor("ray")
    # the command line: one line, nothing written
    fake = tmp_path / "no_ray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "runs"
    command = ["reproduce", "--preset", "smoke", "--executor", "ray", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "fisherlab", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fisherlab[ray]'" in lines[0], proc.stderr
    assert not out.exists()


def test_compute_reads_back_a_finished_step(tmp_path):
    runner = Runner(tmp_path, progress=False)
    step = runner.step("demo", "x", {"x": 2})
    first = compute(step, lambda d: {"v": 3})
    second = compute(step, lambda d: pytest.fail("a finished step is not computed again"))
    assert first["cached"] is False and second["cached"] is True
    assert second["result"] == first["result"] == {"v": 3}


def test_a_run_sets_each_steps_threads_and_restores_its_own(tmp_path, ray_executor):
    before = torch.get_num_threads()
    seen = {}
    for name, threads, executor in (
        ("here", 1, None),
        ("ray", None, ray_executor),
        ("ray, 2 threads", 2, ray_executor),
    ):
        runner = Runner(tmp_path / name, False, executor, threads=threads)
        step = runner.step("demo", name, {})
        runner.submit(step, lambda d: {"threads": torch.get_num_threads()})
        runner.flush()
        seen[name] = step.result["threads"]
        recorded = json.loads((step.dir / "step.json").read_text())["timing"]["threads"]
        assert recorded == seen[name]  # step.json says what it computed with
    assert seen == {"here": 1, "ray": 1, "ray, 2 threads": 2}  # a Ray step: its CPUs (1)
    assert torch.get_num_threads() == before

"""Reliability promises of issue 11: outputs come as sets, commands never clobber each
other's files, nonsense is refused before any work, concurrent runs share steps."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import run

from fisherlab._io import output_set, write_atomic
from fisherlab.attacks import AttackConfig
from fisherlab.errors import FisherlabError
from fisherlab.planner import check_rule, recommend_freeze
from fisherlab.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fisherlab: error:"), proc.stderr
    assert text in lines[0], lines[0]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A digits target, an evaluator and a white-box attack (no GAN) with Fisher recorded."""
    root = tmp_path_factory.mktemp("reliability")
    target, judge = root / "target.pt", root / "eval.pt"
    for arch, out in (("target_cnn", target), ("eval_cnn", judge)):
        config = TrainConfig(data="mnist5k:0-4", arch=arch, epochs=1, max_train_samples=200)
        train(config, out, progress=False)
    attack = root / "attack"
    proc = run(
        "attack", str(target), "--attack", "whitebox", "--eval-model", str(judge),
        "--classes", "0-1", "--per-class", "1", "--iterations", "3", "--restarts", "1",
        "--fisher-every", "1", "--quiet", "--out", str(attack),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {"target": target, "eval": judge, "attack": attack, "root": root}


# --------------------------------------------------------------------------- no clobbering
def test_evaluate_writes_only_its_own_files(models, tmp_path):
    attack = models["attack"]
    before = digests(attack)
    proc = run(
        "evaluate", str(models["target"]), "--reconstructions", str(attack),
        "--eval-model", str(models["eval"]),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    after = digests(attack)
    assert {k: after[k] for k in before} == before  # the attack's files are untouched
    assert set(after) - set(before) == {"evaluation.csv", "evaluation.json"}
    evaluation = json.loads((attack / "evaluation.json").read_text())
    summary = json.loads((attack / "summary.json").read_text())
    for key in ("attack_accuracy_top1", "knn_distance", "natural_accuracy"):
        assert evaluation[key] == pytest.approx(summary[key], rel=1e-6)
    # the attack's Fisher still feeds the planner
    rec = recommend_freeze(pd.read_csv(attack / "fisher.csv"), attack)
    assert 0 <= rec.boundary < 6


def test_an_unfinished_attack_folder_is_refused(models, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("fisher.csv", "reconstructions.pt"):
        (broken / name).write_bytes((models["attack"] / name).read_bytes())
    proc = run(
        "evaluate", str(models["target"]), "--reconstructions", str(broken),
        "--eval-model", str(models["eval"]),
    )  # fmt: skip
    one_line_error(proc, "no summary.json")
    proc = run("recommend-freeze", "--classification", str(broken), "--inversion", str(broken))
    one_line_error(proc, "no summary.json")
    assert sorted(p.name for p in broken.iterdir()) == ["fisher.csv", "reconstructions.pt"]


@pytest.mark.parametrize(
    "payload",
    [b"garbage", "torch-list", "torch-dict-missing", "torch-nan-images"],
)
def test_malformed_reconstructions_are_one_line(models, tmp_path, payload):
    file = tmp_path / "reconstructions.pt"
    if payload == b"garbage":
        file.write_bytes(payload)
    elif payload == "torch-list":
        torch.save([1, 2, 3], file)
    elif payload == "torch-dict-missing":
        torch.save({"images": torch.zeros(2, 1, 28, 28)}, file)
    else:
        saved = torch.load(models["attack"] / "reconstructions.pt", weights_only=True)
        saved["images"] = torch.full_like(saved["images"], float("nan"))
        torch.save(saved, file)
    proc = run(
        "evaluate", str(models["target"]), "--reconstructions", str(file),
        "--eval-model", str(models["eval"]), "--out", str(tmp_path / "out"),
    )  # fmt: skip
    one_line_error(proc, str(file))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- output sets
def test_a_failed_write_leaves_no_partial_set(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"), output_set(out, "run.json") as tmp:
        (tmp / "profile.csv").write_text("a\n1\n")
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with output_set(out, "run.json") as tmp:  # a first complete set
        (tmp / "profile.csv").write_text("old\n")
        (tmp / "run.json").write_text("{}")
    (out / "attack.csv").write_text("another command's file\n")
    with pytest.raises(RuntimeError), output_set(out, "run.json") as tmp:
        (tmp / "profile.csv").write_text("new\n")
        raise RuntimeError("boom")
    assert (out / "profile.csv").read_text() == "old\n" and (out / "run.json").is_file()
    with output_set(out, "run.json") as tmp:  # an overwrite keeps other commands' files
        (tmp / "profile.csv").write_text("new\n")
        (tmp / "run.json").write_text('{"v": 2}')
    assert (out / "profile.csv").read_text() == "new\n"
    assert (out / "attack.csv").read_text() == "another command's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_kill_9_leaves_no_set_and_the_next_write_cleans_up(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from fisherlab._io import output_set, write_atomic
        with output_set(Path({str(tmp_path / "run")!r}), "run.json") as tmp:
            (tmp / "profile.csv").write_text("half")
            with open({str(tmp_path / "file.csv")!r} + "", "w"):
                pass
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert leftovers and not (tmp_path / "run").exists()
    with output_set(tmp_path / "run", "run.json") as tmp:
        (tmp / "run.json").write_text("{}")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    # the same for a single file
    script = textwrap.dedent(
        f"""
        import os, signal
        from fisherlab._io import atomic_path
        with atomic_path({str(tmp_path / "table.csv")!r}) as tmp:
            tmp.write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".table.csv.")]
    write_atomic(tmp_path / "table.csv", lambda p: p.write_text("whole"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".table.csv.")]


# --------------------------------------------------------------------------- concurrency
def test_two_processes_compute_a_step_once(tmp_path):
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from fisherlab.experiments.cache import Runner
        out = Path({str(tmp_path / "out")!r})
        runner = Runner(out, progress=True)
        step = runner.step("demo", "a slow step", {{"x": 1}})
        def work(d):
            with open({str(tmp_path / "count")!r}, "a") as f:
                f.write("x")
            time.sleep(3)
            (d / "result.txt").write_text("done")
            return {{"value": 42}}
        runner.run(step, work)
        print("result", step.result["value"], runner.records[-1]["cached"])
        """
    )
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the first holds the lock by now (imports take about a second)
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    out_first, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert (tmp_path / "count").read_text() == "x"  # computed once
    assert "result 42 False" in out_first and "result 42 True" in second.stdout
    assert "waiting for another process" in second.stdout + second.stderr


# --------------------------------------------------------------------------- nonsense
def test_the_planner_refuses_non_finite_profiles_and_rules(tmp_path):
    rows = pd.DataFrame(
        {"index": [0, 1], "name": ["a", "b"], "n_params": [3, 4], "trace": [1.0, float("inf")]}
    )
    good = rows.assign(trace=[1.0, 2.0])
    with pytest.raises(FisherlabError, match="non-finite"):
        recommend_freeze(rows, good)
    for lam in (float("inf"), float("nan"), -1.0):
        with pytest.raises(FisherlabError, match="lam must be >= 0 and finite"):
            check_rule(lam, 1.0)
    (tmp_path / "c.csv").write_text(good.to_csv(index=False))
    proc = run(
        "recommend-freeze", "--classification", str(tmp_path / "c.csv"), "--inversion",
        str(tmp_path / "c.csv"), "--lam", "inf", "--out", str(tmp_path / "plan"),
    )  # fmt: skip
    one_line_error(proc, "lam must be >= 0 and finite")
    assert not (tmp_path / "plan").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lam": -5.0}, "--lam must be a finite number > 0"),
        ({"lam": float("inf")}, "--lam must be a finite number > 0"),
        ({"fisher_samples": 0}, "--fisher-samples must be an integer >= 1"),
        ({"momentum": 1.5}, "--momentum must be a finite number in [0, 1)"),
        ({"lr": float("nan")}, "--lr must be a finite number > 0"),
        ({"classes": tuple(range(40_000)), "per_class": 5}, "reconstructions"),
    ],
)
def test_attack_settings_are_checked(options, message):
    with pytest.raises(FisherlabError) as info:
        AttackConfig(**options)
    assert message in str(info.value)


def test_data_of_other_classes_than_the_model_is_refused(models, tmp_path):
    proc = run(
        "profile", str(models["target"]), "--data", "fashion:0-4", "--out", str(tmp_path / "p")
    )
    one_line_error(proc, "is class 'T-shirt/top' but the model's output 0 is '0'")
    proc = run(
        "profile", str(models["target"]), "--data", "mnist5k:1-3", "--out", str(tmp_path / "p")
    )
    one_line_error(proc, "is class '1' but the model's output 0 is '0'")
    proc = run(
        "profile", str(models["target"]), "--data", "mnist5k:0-6", "--max-samples", "32",
        "--out", str(tmp_path / "p"),
    )  # fmt: skip
    one_line_error(proc, "has 7 classes but the model has 5")
    proc = run(
        "attack", str(models["target"]), "--attack", "whitebox", "--eval-model",
        str(models["eval"]), "--private-data", "mnist5k:5-9", "--iterations", "1",
        "--restarts", "1", "--per-class", "1", "--out", str(tmp_path / "a"),
    )  # fmt: skip
    one_line_error(proc, "is class '5' but the model's output 0 is '0'")
    assert not (tmp_path / "p").exists() and not (tmp_path / "a").exists()


def test_bad_command_lines_are_one_line_errors_before_any_work(models, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--train-layers", "",
          "--init", "x"], None),
        (["train", "--init", str(models["target"]), "--data", "mnist5k:0-4", "--train-layers",
          "", "--out", str(tmp_path / "t.pt")], "layer selection"),
        (["train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--out", str(tmp_path)],
         "is an existing directory"),
        (["profile", str(models["target"]), "--data", "mnist5k:0-4", "--device", "xyz",
          "--out", str(tmp_path / "p")], "unknown device 'xyz'"),
        (["profile", str(models["target"]), "--data", "mnist5k:0-4", "--out", str(a_file)],
         "is an existing file"),
        (["profile", str(models["target"]), "--data", "mnist5k:0-4", "--out",
          str(a_file / "sub")], "is a file"),
        (["attack", str(models["target"]), "--attack", "whitebox", "--lam", "-5", "--out",
          str(tmp_path / "a")], "--lam must be a finite number > 0"),
        (["attack", str(models["target"]), "--attack", "whitebox", "--fisher-samples", "0",
          "--out", str(tmp_path / "a")], "--fisher-samples must be an integer >= 1"),
    ]  # fmt: skip
    for args, message in cases:
        proc = run(*args)
        if message is None:
            assert proc.returncode == 2 and "Traceback" not in proc.stderr  # usage error
            continue
        one_line_error(proc, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_ctrl_c_during_start_up_is_one_line():
    proc = subprocess.Popen(
        [sys.executable, "-m", "fisherlab", "data", "mnist5k"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    time.sleep(0.3)  # torch is still being imported
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "fisherlab: interrupted"

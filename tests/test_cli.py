"""The command line (fisherlab.cli): each command end to end, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pandas as pd
import pytest
import torch
import torchvision
from helpers import assert_one_line_error, layer_keys, run

from fisherlab.fisher import profile
from fisherlab.models import layer_state_keys, load_model, model_meta
from fisherlab.training import TrainConfig, train


@pytest.mark.parametrize("cmd", [[], ["train"], ["layers"], ["data"]])
def test_help(cmd):
    proc = run(*cmd, "--help")
    assert proc.returncode == 0 and "usage: fisherlab" in proc.stdout


def test_layers_of_checkpoint_and_bitwise_freeze_through_the_cli(pretrained, tmp_path):
    out = tmp_path / "ft.pt"
    proc = run(
        "train",
        "--init",
        str(pretrained),
        "--data",
        "mnist5k:0-4",
        "--freeze-boundary",
        "3",
        "--epochs",
        "1",
        "--max-train-samples",
        "200",
        "--quiet",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "natural accuracy" in proc.stdout and "frozen layers [0, 1, 2]" in proc.stdout
    proc = run("layers", str(out), "--csv")
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(StringIO(proc.stdout))
    assert frame["kind"].tolist() == ["conv_bn"] * 4 + ["linear"] * 2
    before, after = load_model(pretrained).state_dict(), load_model(out).state_dict()
    frozen = [k for m in frame["modules"][:3] for k in layer_state_keys(m, list(after))]
    assert len(frozen) == 3 * 7  # conv weight+bias, BN weight, bias, mean, var, count
    assert all(torch.equal(before[k], after[k]) for k in frozen)


def test_layers_of_an_architecture():
    proc = run("layers", "--arch", "resnet18_cifar", "--image-size", "32")
    assert proc.returncode == 0
    assert "residual_block" in proc.stdout and "conv1;bn1" in proc.stdout


def test_data_command():
    proc = run("data", "mnist5k:0-4")
    assert proc.returncode == 0 and "2000 train / 500 test" in proc.stdout


def test_unknown_dataset_is_one_line_and_writes_nothing(tmp_path):
    proc = run("train", "--arch", "target_cnn", "--data", "nope", "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(proc, 1, "unknown dataset 'nope'")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert_one_line_error(run("layers", str(bad)), 1, "not a readable torch file")
    proc = run(
        "train", "--init", str(bad), "--data", "mnist5k:0-4", "--out", str(tmp_path / "o.pt")
    )
    assert_one_line_error(proc, 1, "not a readable torch file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_boundary_out_of_range(pretrained, tmp_path):
    proc = run(
        "train",
        "--init",
        str(pretrained),
        "--data",
        "mnist5k:0-4",
        "--freeze-boundary",
        "9",
        "--out",
        str(tmp_path / "o.pt"),
    )
    assert_one_line_error(proc, 1, "freeze boundary 9 is out of range")
    assert list(tmp_path.iterdir()) == []


def test_diverging_training_names_the_batch_and_writes_nothing(pretrained, tmp_path):
    proc = run(
        "train",
        "--init",
        str(pretrained),
        "--data",
        "mnist5k:0-4",
        "--lr",
        "1e30",
        "--save-every",
        "1",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "o.pt"),
    )
    assert_one_line_error(proc, 1, "lower the learning rate")
    assert "batch" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_are_one_line():
    proc = run("train", "--data", "fashion")
    assert_one_line_error(proc, 2, "required")
    proc = run("train", "--arch", "alexnet", "--data", "fashion", "--out", "x.pt")
    assert_one_line_error(proc, 1, "unknown model 'alexnet' (torchvision's is torchvision:alexnet)")


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "ft.pt"
    train(
        TrainConfig(
            data="mnist5k:0-4",
            init=str(pretrained),
            epochs=1,
            max_train_samples=300,
            freeze_boundary=2,
        ),
        out=out,
        progress=False,
    )
    return out


def test_profile_writes_frame_config_and_plot(finetuned, tmp_path):
    out = tmp_path / "prof"
    proc = run(
        "profile",
        str(finetuned),
        "--data",
        "mnist5k:0-4",
        "--max-samples",
        "48",
        "--fisher",
        "true",
        "--mc-samples",
        "2",
        "--diagonal",
        "--quiet",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "diagonal.pt",
        "engines.csv",
        "profile.csv",
        "profile.png",
        "run.json",
    ]
    frame = pd.read_csv(out / "profile.csv")
    expected = profile(
        load_model(finetuned), "mnist5k:0-4", fisher="true", mc_samples=2, max_samples=48
    )
    # float32 model: another process may order its reductions differently
    assert frame["trace"].to_numpy() == pytest.approx(expected["trace"].to_numpy(), rel=1e-6)
    diag = torch.load(out / "diagonal.pt", weights_only=True)
    assert set(diag) == {n for n, _ in load_model(finetuned).named_parameters()}
    config = json.loads((out / "run.json").read_text())
    assert config["config"]["fisher"] == "true" and config["world_size"] == 1


def test_profile_bad_data_is_one_line_and_writes_nothing(finetuned, tmp_path):
    out = tmp_path / "prof"
    proc = run("profile", str(finetuned), "--data", "mnist5k", "--out", str(out), "--quiet")
    assert_one_line_error(proc, 1, "the model has 5 outputs")
    assert not out.exists()
    proc = run(
        "profile", str(finetuned), "--data", "fashion:0-4", "--max-samples", "0", "--out", str(out)
    )
    assert_one_line_error(proc, 1, "max_samples must be >= 1")
    assert not out.exists()


def test_torchrun_two_processes_equal_one(finetuned, tmp_path):
    args = [
        "profile",
        str(finetuned),
        "--data",
        "mnist5k:0-4",
        "--max-samples",
        "100",
        "--batch-size",
        "16",
        "--fisher",
        "true",
        "--quiet",
    ]
    single = run(*args, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "fisherlab",
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = pd.read_csv(tmp_path / "one" / "profile.csv")
    two = pd.read_csv(tmp_path / "two" / "profile.csv")
    assert two["n_samples"].tolist() == one["n_samples"].tolist() == [100] * len(one)
    # float32 model; torchrun runs each rank with one thread, so reductions differ slightly
    assert two["trace"].to_numpy() == pytest.approx(one["trace"].to_numpy(), rel=1e-6)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "engines.csv",
        "profile.csv",
        "profile.png",
        "run.json",
    ]


def test_train_gan_attack_and_evaluate_through_the_cli(finetuned, tmp_path):
    gan = tmp_path / "gan.pt"
    proc = run(
        "train-gan",
        "--data",
        "mnist5k:5-9",
        "--epochs",
        "1",
        "--max-train-samples",
        "256",
        "--quiet",
        "--out",
        str(gan),
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "gan.samples.png").is_file()
    judge = tmp_path / "eval.pt"
    proc = run(
        "train",
        "--arch",
        "eval_cnn",
        "--data",
        "mnist5k:0-4",
        "--epochs",
        "1",
        "--max-train-samples",
        "300",
        "--quiet",
        "--out",
        str(judge),
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "attack"
    proc = run(
        "attack",
        str(finetuned),
        "--generator",
        str(gan),
        "--eval-model",
        str(judge),
        "--classes",
        "0-1",
        "--per-class",
        "2",
        "--iterations",
        "3",
        "--restarts",
        "1",
        "--fisher-every",
        "1",
        "--quiet",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "attack.csv",
        "fisher.csv",
        "reconstructions.png",
        "reconstructions.pt",
        "summary.json",
        "trajectory.csv",
    ]
    fisher = pd.read_csv(out / "fisher.csv")
    assert sorted(fisher["iteration"].unique()) == [1, 2, 3] and len(fisher) == 3 * 6
    first = json.loads((out / "summary.json").read_text())
    proc = run(
        "evaluate",
        str(finetuned),
        "--reconstructions",
        str(out),
        "--eval-model",
        str(judge),
        "--out",
        str(tmp_path / "again"),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [
        "evaluation.csv",
        "evaluation.json",
    ]
    again = json.loads((tmp_path / "again" / "evaluation.json").read_text())
    for key in ("attack_accuracy_top1", "knn_distance", "fd_eval", "natural_accuracy"):
        assert again[key] == pytest.approx(first[key], rel=1e-6)


def test_attack_with_a_classifier_as_generator_is_one_line(finetuned, tmp_path):
    proc = run(
        "attack", str(finetuned), "--generator", str(finetuned), "--out", str(tmp_path / "a")
    )
    assert_one_line_error(proc, 1, "not a fisherlab GAN checkpoint")
    assert not (tmp_path / "a").exists()


def test_bring_your_own_model_from_state_dict_to_fine_tune(tmp_path):
    """A torchvision state dict through profile, attack, recommend-freeze, train and import."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=5)
    theirs.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # as build_from_spec adapts it
    torch.save(theirs.state_dict(), tmp_path / "sd.pt")
    model = ["torchvision:resnet18", "--weights", str(tmp_path / "sd.pt")]
    data = ["--data", "mnist5k:0-4"]
    proc = run("profile", *model, *data, "--max-samples", "16", "--out", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr
    assert "assuming 1x28x28, mean (0.1307,), std (0.3081,) (the data's default" in proc.stderr
    proc = run(
        "attack", *model, "--private-data", "mnist5k:0-4", "--attack", "whitebox",
        "--iterations", "4", "--per-class", "1", "--fisher-every", "2", "--quiet",
        "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = run(
        "recommend-freeze", "--classification", str(tmp_path / "p"),
        "--inversion", str(tmp_path / "a"), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    boundary = json.loads(proc.stdout)["boundary"]
    proc = run(
        "train", "--init", *model, *data, "--freeze-boundary", str(boundary), "--epochs", "1",
        "--max-train-samples", "32", "--out", str(tmp_path / "ft.pt"), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tuned = load_model(tmp_path / "ft.pt")
    assert model_meta(tuned).arch == "torchvision:resnet18"
    frozen = layer_keys(tuned, range(boundary))
    original = theirs.state_dict()
    assert all(torch.equal(tuned.state_dict()[k], original[k]) for k in frozen)
    proc = run(
        "import", *model, *data, "--out", str(tmp_path / "m.pt"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    imported = load_model(tmp_path / "m.pt")  # no flags: weights_only
    assert model_meta(imported).class_names == ["0", "1", "2", "3", "4"]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(imported(x), theirs.eval()(x))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "torchvision:resnet18", "--data", "mnist5k", "--out", "o", "--weights",
          "missing.pt"], "weights file missing.pt does not exist"),
        (["layers", "resnet18"], "now 'resnet18_cifar'"),
        (["layers", "x/none.pt"], "model file x/none.pt does not exist"),
        (["import", "torchvision:resnet18", "--classes", "3", "--out", "m.pt"],
         "give the model's input: --input-size S and --channels C"),
        (["profile", "torchvision:resnet18", "--data", "mnist5k", "--out", "o",
          "--model-kwargs", "[1]"], "expected a JSON object"),
    ],
)  # fmt: skip
def test_model_spec_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    proc = run(*args)
    assert_one_line_error(proc, 2 if "JSON" in message else 1, message)
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.pt").exists()


def test_distill_plgmi_and_lomma_through_the_cli(finetuned, tmp_path):
    """``distill`` then ``attack --attack lomma-gmi``; ``train-gan --kind plgmi`` then ``plgmi``."""
    surrogate = tmp_path / "s.pt"
    proc = run(
        "distill", str(finetuned), "--public", "mnist5k:5-9", "--arch", "mlp", "lenet5",
        "--epochs", "1", "--quiet", "--out", str(surrogate),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    made = [tmp_path / "s.mlp.pt", tmp_path / "s.lenet5.pt"]
    assert all(p.is_file() for p in made) and "agreement" in proc.stdout
    gmi_gan, plgmi_gan = tmp_path / "g.pt", tmp_path / "p.pt"
    for kind, out in (("gmi", gmi_gan), ("plgmi", plgmi_gan)):
        proc = run(
            "train-gan", "--data", "mnist5k:5-9", "--kind", kind, "--target", str(finetuned),
            "--epochs", "1", "--max-train-samples", "256", "--top-n", "30", "--quiet",
            "--out", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    common = ["--classes", "0-1", "--per-class", "2", "--iterations", "2", "--restarts", "1"]
    common += ["--fisher-every", "1", "--quiet"]
    proc = run(
        "attack", str(finetuned), "--attack", "lomma-gmi", "--generator", str(gmi_gan),
        "--surrogates", *map(str, made), *common, "--out", str(tmp_path / "lomma"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "lomma" / "summary.json").read_text())
    assert summary["identity_loss"] == "lomma" and len(summary["surrogates"]) == 2
    assert summary["config"]["feature_weight"] == 1.0 and "views" not in summary["config"]
    proc = run(
        "attack", str(finetuned), "--attack", "plgmi", "--generator", str(plgmi_gan), *common,
        "--out", str(tmp_path / "plgmi"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fisher = pd.read_csv(tmp_path / "plgmi" / "fisher.csv")
    assert set(fisher["identity_loss"]) == {"max-margin"} and set(fisher["n_samples"]) == {8}
    # wrong pairings: one line each, nothing written
    wrong = [
        (["--attack", "plgmi", "--generator", str(gmi_gan)], "class-conditional plgmi GAN"),
        (["--attack", "gmi", "--generator", str(plgmi_gan)], "unconditional gmi GAN"),
        (["--attack", "lomma-gmi", "--generator", str(gmi_gan)], "give --surrogates"),
        (
            ["--attack", "lomma-gmi", "--generator", str(gmi_gan), "--surrogates", "nope.pt"],
            "surrogate nope.pt does not exist",
        ),
    ]
    for args, message in wrong:
        proc = run("attack", str(finetuned), *args, *common, "--out", str(tmp_path / "bad"))
        assert_one_line_error(proc, 1, message)
        assert not (tmp_path / "bad").exists()
    proc = run(
        "train-gan", "--data", "mnist5k:5-9", "--kind", "plgmi", "--out", str(tmp_path / "x.pt")
    )
    assert_one_line_error(proc, 1, "give --target")

"""The ``fisherlab`` command line: a thin shell over the Python API.

Each sub-command maps to one public function; its help text is that function's
docstring summary. Errors print one line, ``fisherlab: error: ...``, and exit
with status 1 (2 for usage errors), without a traceback or partial output.
Set ``FISHERLAB_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from fisherlab import data as data_module
from fisherlab import models as models_module
from fisherlab.errors import FisherlabError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _summary(func: Callable) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


# --------------------------------------------------------------------------- commands
def _cmd_train(args: argparse.Namespace) -> None:
    from fisherlab.layers import parse_layer_selection
    from fisherlab.train import TrainConfig, train

    config = TrainConfig(
        data=args.data,
        arch=args.arch,
        init=args.init,
        freeze_boundary=args.freeze_boundary,
        train_layers=parse_layer_selection(args.train_layers) if args.train_layers else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed,
        split_seed=args.split_seed,
        max_train_samples=args.max_train_samples,
        save_every=args.save_every,
        image_size=args.image_size,
        defense=args.defense,
        beta=args.beta,
        hsic_a1=args.hsic_a1,
        hsic_a2=args.hsic_a2,
        smoothing=args.smoothing,
    )
    result = train(config, out=args.out, progress=not args.quiet)
    last = result.history.iloc[-1]
    frozen = result.frozen_layers
    strengths = ", ".join(f"{k} {v:g}" for k, v in config.strengths().items())
    defense = f", defense {config.defense} ({strengths})" if strengths else ""
    print(
        f"{args.out}: natural accuracy {last['natural_accuracy']:.4f} on {args.data} "
        f"(test split), epochs {config.epochs}, frozen layers "
        f"{frozen if frozen else 'none'}, trainable parameters "
        f"{result.n_trainable_params:,}{defense}"
    )


def _cmd_layers(args: argparse.Namespace) -> None:
    from fisherlab.checkpoint import load_model
    from fisherlab.layers import layer_map

    if (args.checkpoint is None) == (args.arch is None):
        raise FisherlabError("give a checkpoint path or --arch NAME (not both)")
    if args.checkpoint is not None:
        model = load_model(args.checkpoint, trust_pickle=args.trust_pickle)
    else:
        model = models_module.build_model(
            args.arch, args.num_classes, in_channels=args.in_channels, image_size=args.image_size
        )
    frame = layer_map(model)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with __import__("pandas").option_context("display.max_colwidth", 80):
            print(frame.to_string(index=False))


def _cmd_data(args: argparse.Namespace) -> None:
    splits = data_module.load_dataset(args.data, split_seed=args.split_seed)
    spec = splits.input_spec
    print(
        f"{splits.spec}: {len(splits.train)} train / {len(splits.test)} test images, "
        f"{spec.channels}x{spec.size}x{spec.size}, {splits.num_classes} classes "
        f"{splits.class_names}, normalisation mean={spec.mean} std={spec.std}"
    )


def _distributed_setup(device: str) -> tuple[int, int, str]:
    """Join the process group that torchrun describes; returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world, device


def _cmd_profile(args: argparse.Namespace) -> None:
    import time

    import torch

    from fisherlab._io import write_atomic, write_json
    from fisherlab._version import __version__
    from fisherlab.checkpoint import fingerprint, load_model, model_meta
    from fisherlab.fisher import profile
    from fisherlab.plots import plot_profile

    rank, world, device = _distributed_setup(args.device)
    model = load_model(args.checkpoint, trust_pickle=args.trust_pickle)
    start = time.perf_counter()
    result = profile(
        model,
        args.data,
        args.objective,
        args.fisher,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        device=device,
        mc_samples=args.mc_samples,
        seed=args.seed,
        diagonal=args.diagonal,
        engine=args.engine,
        split=args.split,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    frame, diag = result if args.diagonal else (result, None)
    if rank != 0:
        return
    out = Path(args.out)
    meta = model_meta(model)
    run = {
        "command": "profile",
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "model": {
            "path": str(args.checkpoint),
            "fingerprint": fingerprint(model),
            "arch": meta.arch,
            "class_names": meta.class_names,
            "input_spec": meta.input_spec.to_dict() if meta.input_spec else None,
        },
        "world_size": world,
        "seconds": seconds,
        "samples_per_second": float(frame["n_samples"].iloc[0]) / seconds if seconds else None,
        "engines": sorted(frame["engine"].unique().tolist()),
        "versions": {
            "fisherlab": __version__,
            "torch": str(torch.__version__),
            "backpack": _package_version("backpack-for-pytorch"),
        },
    }
    write_atomic(out / "profile.csv", lambda p: frame.to_csv(p, index=False))
    if diag is not None:
        write_atomic(out / "diagonal.pt", lambda p: torch.save(diag, p))
    write_json(out / "run.json", run)
    plot_profile(frame, out / "profile.png")
    shown = frame[["index", "name", "kind", "n_params", "trace", "mean", "share", "engine"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        f"wrote {out}/profile.csv, run.json, profile.png ({frame['objective'].iloc[0]}, "
        f"{frame['fisher'].iloc[0]} Fisher, {int(frame['n_samples'].iloc[0])} samples, "
        f"{seconds:.1f} s)"
    )


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cmd_train_gan(args: argparse.Namespace) -> None:
    from fisherlab.train_gan import GANConfig, train_gan

    config = GANConfig(
        data=args.data,
        kind=args.kind,
        loss=args.loss,
        target=args.target,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        n_critic=args.n_critic,
        seed=args.seed,
        max_train_samples=args.max_train_samples,
    )
    prior = train_gan(config, args.out, progress=not args.quiet)
    print(
        f"{args.out}: {config.kind if config.kind == 'kedmi' else 'gmi/' + config.loss} GAN "
        f"after {prior.epoch} epochs on "
        f"{args.data}; samples in {Path(args.out).with_suffix('')}.samples.png"
    )


def _private_data(args: argparse.Namespace, target_path: str) -> str | None:
    if args.private_data:
        return args.private_data
    from fisherlab.checkpoint import load_model, model_meta

    config = model_meta(load_model(target_path)).train_config or {}
    return config.get("data")


def _print_summary(summary: dict) -> None:
    from fisherlab.attacks import SUMMARY_METRICS

    print(", ".join(f"{k} {summary[k]:.4g}" for k in SUMMARY_METRICS if k in summary))


def _cmd_attack(args: argparse.Namespace) -> None:
    from fisherlab.attacks import AttackConfig, attack, write_outputs
    from fisherlab.data import DataSpec

    classes = DataSpec.parse(f"mnist5k:{args.classes}").classes
    config = AttackConfig(
        attack=args.attack,
        classes=tuple(classes or ()),
        per_class=args.per_class,
        iterations=args.iterations,
        restarts=args.restarts,
        seed=args.seed,
        lr=args.lr,
        lam=args.lam,
        fisher_every=args.fisher_every,
        fisher_samples=args.fisher_samples,
    )
    outcome = attack(
        args.target,
        args.generator,
        args.eval_model,
        config,
        private_data=_private_data(args, args.target) if args.eval_model else None,
        progress=not args.quiet,
    )
    write_outputs(outcome, args.out)
    _print_summary(outcome.summary)
    print(f"wrote {args.out}/attack.csv, summary.json, fisher.csv, reconstructions.png")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import torch

    from fisherlab.attacks import AttackConfig, evaluate_attack, write_outputs
    from fisherlab.attacks.base import AttackResult
    from fisherlab.checkpoint import load_model

    source = Path(args.reconstructions)
    file = source / "reconstructions.pt" if source.is_dir() else source
    if not file.is_file():
        raise FisherlabError(f"{file} does not exist: give the --out directory of fisherlab attack")
    saved = torch.load(file, weights_only=True)
    config = AttackConfig(**{**saved["config"], "classes": tuple(saved["config"]["classes"])})
    result = AttackResult(
        saved["images"], saved["labels"], saved["restart"], saved["confidence"], None
    )
    outcome = evaluate_attack(
        result,
        load_model(args.target),
        load_model(args.eval_model),
        _private_data(args, args.target),
        config,
    )
    write_outputs(outcome, args.out or file.parent)
    _print_summary(outcome.summary)


def _cmd_recommend_freeze(args: argparse.Namespace) -> None:
    import json

    import pandas as pd

    from fisherlab._io import write_atomic, write_json
    from fisherlab.planner import check_rule, recommend_freeze
    from fisherlab.plots import plot_recommendation

    check_rule(args.lam, args.budget)
    given = args.classification is not None and args.inversion is not None
    if args.checkpoint is None and not given:
        raise FisherlabError(
            "give --classification and --inversion profiles, or a checkpoint with --data and "
            "--generator to compute them"
        )
    if args.checkpoint is not None and (args.classification or args.inversion):
        raise FisherlabError("give a checkpoint or --classification/--inversion profiles, not both")
    if given:
        cls, inv = args.classification, args.inversion
    else:
        cls, inv = _profiles_for_planner(args)
    rec = recommend_freeze(cls, inv, lam=args.lam, budget=args.budget)
    if args.out:
        out = Path(args.out)
        table = rec.table.assign(lam=rec.lam, budget=rec.budget)
        write_atomic(out / "recommendation.csv", lambda p: table.to_csv(p, index=False))
        write_json(out / "recommendation.json", rec.to_dict())
        plot_recommendation(table, out / "recommendation.png")
        if isinstance(cls, pd.DataFrame):
            write_atomic(out / "classification.csv", lambda p: cls.to_csv(p, index=False))
            write_atomic(out / "inversion.csv", lambda p: inv.to_csv(p, index=False))
    if args.json:
        print(json.dumps(rec.to_dict(), indent=2))
        return
    shown = rec.table.rename(
        columns={
            "inversion_share": "I(b)",
            "classification_share": "C(b)",
            "n_trainable_params": "|theta_C|",
        }
    ).drop(columns=["frozen_layers"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(rec.explanation)
    if args.out:
        print(f"wrote {args.out}/recommendation.csv, recommendation.json, recommendation.png")


def _profiles_for_planner(args: argparse.Namespace):
    from fisherlab.attacks import AttackConfig, attack
    from fisherlab.checkpoint import load_model, model_meta
    from fisherlab.fisher import profile

    if args.data is None or args.generator is None:
        raise FisherlabError(
            "computing the profiles needs --data (private data) and --generator (GAN prior)"
        )
    model = load_model(args.checkpoint, trust_pickle=args.trust_pickle)
    cls = profile(model, args.data, max_samples=args.max_samples, progress=not args.quiet)
    meta = model_meta(model)
    n_classes = len(meta.class_names) if meta.class_names else None
    classes = tuple(range(n_classes)) if n_classes else AttackConfig.classes
    config = AttackConfig(
        attack=args.attack,
        classes=classes,
        per_class=args.per_class,
        iterations=args.iterations,
        restarts=1,
        fisher_every=args.fisher_every,
    )
    outcome = attack(model, args.generator, None, config, progress=not args.quiet)
    return cls, outcome.result.fisher


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from fisherlab.reproduce import reproduce

    tables = reproduce(args.preset, args.out, seeds=args.seeds, progress=not args.quiet)
    claims = tables["claims"]
    for row in claims.itertuples():
        print(f"{row.claim} [{row.verdict}] {row.paper}: {row.ours}")
    steps = tables["steps"]
    print(
        f"wrote {args.out}/ (runs.csv, claims.csv, ...; figures in {args.out}/figures): "
        f"{len(steps)} steps, {int(steps['cached'].sum())} cached, "
        f"{steps.loc[~steps['cached'].astype(bool), 'seconds'].sum():.0f} s computed"
    )


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fisherlab`` command."""
    from fisherlab._version import __version__
    from fisherlab.attacks import AttackConfig, attack, evaluate_attack
    from fisherlab.checkpoint import load_model
    from fisherlab.defenses import DEFENSES, flag
    from fisherlab.fisher import ENGINES, profile
    from fisherlab.layers import layer_map
    from fisherlab.objectives import OBJECTIVES
    from fisherlab.planner import recommend_freeze
    from fisherlab.reproduce import PRESETS, reproduce
    from fisherlab.train import TrainConfig, train
    from fisherlab.train_gan import GANConfig, train_gan

    parser = _Parser(
        prog="fisherlab",
        description="Fisher-information layer analysis and transfer-learning "
        "defenses against model inversion.",
    )
    parser.add_argument("--version", action="version", version=f"fisherlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="pretrain, or TL-DMI fine-tune with a freeze boundary",
        description=_summary(train) + " " + _summary(TrainConfig),
        epilog="examples: fisherlab train --arch target_cnn --data fashion --epochs 1 "
        "--out runs/pre.pt; fisherlab train --init runs/pre.pt --data mnist5k:0-4 "
        "--freeze-boundary 2 --epochs 5 --out runs/ft.pt; add --defense mid|bido|ls for a "
        "training-time defense, e.g. --defense ls --smoothing -0.05",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", choices=models_module.available(), help="pretrain this architecture")
    src.add_argument("--init", metavar="CKPT", help="fine-tune this checkpoint (new head)")
    p.add_argument("--data", required=True, help="dataset, e.g. fashion or mnist5k:0-4")
    p.add_argument("--out", required=True, metavar="CKPT", help="final checkpoint path")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--freeze-boundary", type=int, metavar="B", help="freeze layers < B")
    p.add_argument("--train-layers", metavar="LIST", help="train only these layers, e.g. 0,1")
    p.add_argument("--save-every", type=int, metavar="K", help="also save every K epochs")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--momentum", type=float, default=TrainConfig.momentum)
    p.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--split-seed", type=int, default=TrainConfig.split_seed)
    p.add_argument("--max-train-samples", type=int, metavar="N")
    p.add_argument("--image-size", type=int, metavar="S", help="pretraining input side")
    p.add_argument(
        "--defense",
        default="none",
        choices=list(DEFENSES),
        help="training-time defense: mid (VIB head), bido (HSIC), ls (label smoothing)",
    )
    for name, defense in DEFENSES.items():
        for field, strength in defense.strengths.items():
            p.add_argument(
                flag(field),
                type=float,
                help=f"{name}: {strength.meaning}, {strength.allowed} "
                f"(default {strength.default:g})",
            )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "layers",
        help="print the layer map of a checkpoint or architecture",
        description=_summary(layer_map) + " " + _summary(load_model),
        epilog="examples: fisherlab layers runs/ft.pt; fisherlab layers --arch resnet18",
    )
    p.add_argument("checkpoint", nargs="?", help="a checkpoint file")
    p.add_argument("--arch", choices=models_module.available(), help="a fresh architecture")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickled modules")
    p.set_defaults(func=_cmd_layers)

    p = sub.add_parser(
        "profile",
        help="per-layer Fisher information of a checkpoint on data",
        description=_summary(profile),
        epilog="example: fisherlab profile runs/ft.pt --data mnist5k:0-4 --out runs/profile; "
        "scale out with torchrun --nproc_per_node=2 -m fisherlab profile ...",
    )
    p.add_argument("checkpoint", help="a fisherlab checkpoint (or --trust-pickle module)")
    p.add_argument("--data", required=True, help="dataset, e.g. mnist5k:0-4 or npz:FILE")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--objective", default="classification", choices=list(OBJECTIVES))
    p.add_argument("--fisher", default="empirical", choices=["empirical", "true"])
    p.add_argument("--mc-samples", type=int, default=1, help="label draws (true Fisher)")
    p.add_argument("--seed", type=int, default=0, help="seed of the label draws")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-samples", type=int, metavar="N")
    p.add_argument("--split", choices=["train", "test", "all"], help="default: train (npz: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--engine", default="auto", choices=list(ENGINES))
    p.add_argument("--diagonal", action="store_true", help="also save DIR/diagonal.pt")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickled modules")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser(
        "train-gan",
        help="train a GMI or KEDMI GAN prior on public data",
        description=_summary(train_gan) + " " + _summary(GANConfig),
        epilog="example: fisherlab train-gan --data mnist5k:5-9 --kind gmi --epochs 120 "
        "--target runs/target.pt --out runs/gmi_gan.pt",
    )
    p.add_argument("--data", required=True, help="public dataset, e.g. mnist5k:5-9")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.add_argument("--kind", default="gmi", choices=["gmi", "kedmi"])
    p.add_argument("--loss", default="dcgan", choices=["dcgan", "wgan-gp"])
    p.add_argument("--target", metavar="CKPT", help="target (needed by kedmi; fixes image size)")
    p.add_argument("--epochs", type=int, default=GANConfig.epochs)
    p.add_argument("--batch-size", type=int, default=GANConfig.batch_size)
    p.add_argument("--lr", type=float, default=GANConfig.lr)
    p.add_argument("--n-critic", type=int, help="critic steps per generator step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-samples", type=int, metavar="N")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train_gan)

    p = sub.add_parser(
        "attack",
        help="invert a target with GMI, KEDMI or a white-box baseline, then evaluate",
        description=_summary(attack),
        epilog="example: fisherlab attack runs/target.pt --attack gmi --generator runs/gmi_gan.pt "
        "--eval-model runs/eval.pt --classes 0-4 --per-class 5 --iterations 600 --restarts 5 "
        "--fisher-every 10 --out runs/gmi",
    )
    p.add_argument("target", help="the attacked classifier checkpoint")
    p.add_argument("--attack", default="gmi", choices=["gmi", "kedmi", "whitebox"])
    p.add_argument("--generator", metavar="CKPT", help="GAN prior from fisherlab train-gan")
    p.add_argument("--eval-model", metavar="CKPT", help="evaluation classifier")
    p.add_argument("--private-data", help="default: the data the target was trained on")
    p.add_argument("--classes", default="0-4", help="classes to invert, e.g. 0-4")
    p.add_argument("--per-class", type=int, default=AttackConfig.per_class)
    p.add_argument("--iterations", type=int, default=AttackConfig.iterations)
    p.add_argument("--restarts", type=int, default=AttackConfig.restarts)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, help="default: gmi 0.01, kedmi 0.02, whitebox 0.05")
    p.add_argument("--lam", type=float, default=AttackConfig.lam, help="identity-loss weight")
    p.add_argument("--fisher-every", type=int, default=0, metavar="K", help="record Fisher")
    p.add_argument("--fisher-samples", type=int, metavar="N", help="latents per class recorded")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_attack)

    p = sub.add_parser(
        "evaluate",
        help="judge saved reconstructions with an evaluation model",
        description=_summary(evaluate_attack),
    )
    p.add_argument("target", help="the attacked classifier checkpoint")
    p.add_argument("--reconstructions", required=True, metavar="DIR", help="an attack's --out")
    p.add_argument("--eval-model", required=True, metavar="CKPT")
    p.add_argument("--private-data", help="default: the data the target was trained on")
    p.add_argument("--out", metavar="DIR", help="default: the reconstructions' directory")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "recommend-freeze",
        help="recommend a TL-DMI freeze boundary from Fisher profiles",
        description=_summary(recommend_freeze)
        + " Rule: b* = argmax_b I(b) - lam*C(b) subject to C(b) <= budget, where I(b) and C(b)"
        " are the shares of inversion and classification Fisher in the frozen layers [0, b).",
        epilog="examples: fisherlab recommend-freeze --classification runs/profile "
        "--inversion runs/gmi --out runs/plan; fisherlab recommend-freeze runs/ft.pt "
        "--data mnist5k:0-4 --generator runs/gmi_gan.pt --out runs/plan",
    )
    p.add_argument("checkpoint", nargs="?", help="compute both profiles for this model")
    p.add_argument("--classification", metavar="PATH", help="profile.csv or its directory")
    p.add_argument("--inversion", metavar="PATH", help="an attack's fisher.csv or its directory")
    p.add_argument("--lam", type=float, default=1.0, help="price of classification Fisher")
    p.add_argument("--budget", type=float, default=1.0, help="cap on C(b), in [0, 1]")
    p.add_argument("--out", metavar="DIR", help="write recommendation.csv/.json/.png here")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--data", help="private data for the classification profile")
    p.add_argument("--generator", metavar="CKPT", help="GAN prior for the inversion profile")
    p.add_argument("--attack", default="gmi", choices=["gmi", "kedmi"])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--per-class", type=int, default=5)
    p.add_argument("--fisher-every", type=int, default=10, metavar="K")
    p.add_argument("--max-samples", type=int, default=1000, metavar="N")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickled modules")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_recommend_freeze)

    p = sub.add_parser(
        "reproduce",
        help="run the paper's experiments (Figs. 1-II to 5) at small scale, cached",
        description=_summary(reproduce),
        epilog="example: fisherlab reproduce --preset quick --out results/quick",
    )
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--seeds", type=int, metavar="N", help="run seeds 0..N-1")
    p.add_argument("--out", default="results", metavar="DIR")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser(
        "data",
        help="describe a dataset: split sizes, classes, input spec",
        description=_summary(data_module.load_dataset) + " Forms: " + ", ".join(data_module.FORMS),
    )
    p.add_argument("data", help="dataset, e.g. mnist5k:0-4")
    p.add_argument("--split-seed", type=int, default=0)
    p.set_defaults(func=_cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("FISHERLAB_DEBUG"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            args.func(args)
    except FisherlabError as exc:
        if debug:
            raise
        sys.stderr.write(f"fisherlab: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("fisherlab: interrupted\n")
        return 130
    except Exception as exc:
        if debug:
            raise
        first = " ".join(str(exc).split())[:300]
        sys.stderr.write(
            f"fisherlab: internal error: {type(exc).__name__}: {first} "
            "(rerun with FISHERLAB_DEBUG=1 for the traceback and report it)\n"
        )
        return 1
    return 0

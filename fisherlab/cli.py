"""The ``fisherlab`` command line: a thin shell over the Python API.

Each sub-command parses its arguments, calls the public function it is named
after, and prints a short report; its help text is that function's docstring
summary. Errors print one line, ``fisherlab: error: ...``, and exit with
status 1 (2 for usage errors), without a traceback or partial output. Set
``FISHERLAB_DEBUG=1`` to see tracebacks, and ``FISHERLAB_TINY=1`` to run every
command at a token size (:data:`TINY_CAPS`; how the README's walkthrough is
tested).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import torch
import torch.distributed as dist

from fisherlab._device import AMP_DTYPES, check_amp, resolve_device
from fisherlab._io import (
    check_output_file,
    check_output_folder,
    removed_on_error,
    write_atomic,
)
from fisherlab._version import __version__
from fisherlab.attacks import (
    SUMMARY_METRICS,
    AttackConfig,
    attack,
    attack_files,
    attack_names,
    default_private_data,
    evaluate_attack,
    evaluate_saved,
    write_evaluation,
    write_outputs,
)
from fisherlab.attacks.surrogates import DEFAULT_SURROGATES, DistillConfig, distill
from fisherlab.attacks.train_gan import KINDS as GAN_KINDS
from fisherlab.attacks.train_gan import LOSSES as GAN_LOSSES
from fisherlab.attacks.train_gan import GANConfig, train_gan
from fisherlab.data import FORMS, DataSpec, load_dataset
from fisherlab.data.chance import natural_accuracy_warning
from fisherlab.data.limits import MAX_CLASSES
from fisherlab.errors import FisherlabError
from fisherlab.experiments import PRESETS, compare_runs, reproduce
from fisherlab.experiments.executors import EXECUTORS, Executor, make_executor
from fisherlab.fisher import ENGINES, OBJECTIVES, profile, profile_to
from fisherlab.loop import DEFEND_ATTACKS, DefendConfig, defend
from fisherlab.models import available as available_architectures
from fisherlab.models import layer_map, load_model, parse_layer_selection, save_model
from fisherlab.models.meta import ModelMeta
from fisherlab.models.source import (
    InputOverrides,
    assumed_input_spec,
    looks_like_a_path,
    open_model,
)
from fisherlab.models.spec import FORMS as MODEL_FORMS
from fisherlab.models.spec import build_from_spec, guess_spec, parse_model_spec
from fisherlab.planner import (
    AGGREGATIONS,
    check_rule,
    profiles_for,
    recommend_freeze,
    recommended_boundary,
    write_recommendation,
)
from fisherlab.plots import draw_all, plot_profile, plot_recommendation
from fisherlab.training import DEFENSES, TrainConfig, flag, train

_MARKUP = [
    (re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([\w]+)`"), r"\1"),  # :func:`~a.b.c` -> c
    (re.compile(r"``([^`]+)``"), r"\1"),
    (re.compile(r"\s*\((?:see )?the module docs\)"), ""),
    (re.compile(r"\s*\(module docs\)"), ""),
    (re.compile(r"[,;]?\s*see the module docs"), ""),
]
"""Docstring markup and pointers that mean nothing on a terminal, and what replaces them."""


def plain(text: str) -> str:
    """``text`` without reStructuredText markup (for help texts made from docstrings).

    Example:
        >>> plain("Run :func:`~fisherlab.loop.defend` on ``model`` (see the module docs).")
        'Run defend on model.'
    """
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows every set default and no docstring markup."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = (
            action.option_strings
            and "default" not in text
            and not any(default is v for v in (None, False, argparse.SUPPRESS))
            and not isinstance(action, argparse._VersionAction)
        )
        return f"{text} (default: %(default)s)" if shown else text

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and whose help shows defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _summary(func: Callable) -> str:
    doc = inspect.getdoc(func) or ""
    return plain(doc.split("\n\n")[0].replace("\n", " "))


# --------------------------------------------------------------------------- commands
_NOTES: list[str] = []
"""Notes of the running command (what it assumed), printed on stderr once it succeeds:
a failed command prints its one-line error alone."""


def _note(text: str) -> None:
    _NOTES.append(f"fisherlab: note: {text}\n")


def _warn(texts: Sequence[str]) -> None:
    """Warnings that a result means little (:mod:`fisherlab.data.chance`), after the output."""
    _NOTES.extend(f"fisherlab: warning: {text}\n" for text in texts)


def _overrides(args: argparse.Namespace) -> InputOverrides:
    return InputOverrides(
        getattr(args, "input_size", None),
        getattr(args, "channels", None),
        getattr(args, "mean", None),
        getattr(args, "std", None),
    )


def _open(args: argparse.Namespace, source: str, data: str | None) -> torch.nn.Module:
    """The model ``source`` names (a file or a spec, with the model options), ready for ``data``.

    A model that records no preprocessing gets the data's (with the user's
    overrides), and a note on stderr says which.
    """
    overrides = _overrides(args)
    weights, kwargs = getattr(args, "weights", None), getattr(args, "model_kwargs", None)
    is_file = Path(source).is_file()
    model = None
    if is_file:  # a checkpoint that records its input needs nothing of the data
        model = open_model(
            source, weights=weights, model_kwargs=kwargs, trust_pickle=args.trust_pickle
        )
        if not isinstance(getattr(model, "fisherlab_meta", None), ModelMeta):
            model.fisherlab_meta = ModelMeta(source="foreign")
        if model.fisherlab_meta.input_spec is not None:
            assumed_input_spec(model, None, overrides)  # refuses contradicting overrides
            return model
    splits = load_dataset(data) if data is not None else None
    data_spec = splits.input_spec if splits is not None else None
    if model is None:
        model = open_model(
            source,
            weights=weights,
            model_kwargs=kwargs,
            num_classes=splits.num_classes if splits is not None else None,
            input_spec=overrides.apply(data_spec),
            trust_pickle=args.trust_pickle,
        )
    meta = model.fisherlab_meta
    meta.input_spec = None  # what the data and the user say, with a note
    spec, note = assumed_input_spec(model, data_spec, overrides)
    meta.input_spec = spec
    if note:
        _note(note)
    return model


def _warn_recorded_accuracy(model: torch.nn.Module, source: str) -> list[str]:
    """Warn when a checkpoint records a natural accuracy near chance (profile, planner).

    Returns:
        The warnings printed (for the command's JSON output).
    """
    meta = getattr(model, "fisherlab_meta", None)
    metrics = getattr(meta, "metrics", None) or {}
    acc, names = metrics.get("natural_accuracy"), getattr(meta, "class_names", None)
    found = None
    if isinstance(acc, int | float) and names:
        found = natural_accuracy_warning(float(acc), len(names), source)
    _warn([found] if found else [])
    return [found] if found else []


def _rebuild_spec(model: torch.nn.Module, source: str) -> tuple[str, dict]:
    """The spec that rebuilds a pickled module, or a one-line error saying how to give one."""
    found = guess_spec(model)
    if found is None:
        cls = type(model)
        raise FisherlabError(
            f"{source} holds a {cls.__module__}.{cls.__qualname__} that fisherlab cannot rebuild "
            "by itself: `fisherlab import` it with --spec package.module:factory (and "
            "--model-kwargs) naming the code that builds it"
        )
    return found


def _as_checkpoint(args: argparse.Namespace, source: str, data: str | None, out: Path) -> str:
    """``source`` if it is a fisherlab checkpoint; else the model imported into ``out``.

    A spec (with ``--weights``) and a trusted pickle or foreign file are
    imported with the input spec assumed from ``data`` (and said so).
    """
    model = _open(args, source, data)
    meta = model.fisherlab_meta
    if meta.source == "fisherlab" and meta.input_spec is not None:
        return source  # a fisherlab checkpoint as it is
    spec, kwargs = (None, None) if meta.arch is not None else _rebuild_spec(model, source)
    save_model(model, out, spec=spec, model_kwargs=kwargs)
    _note(f"imported {source} as {out}")
    return str(out)


def _cmd_train(args: argparse.Namespace) -> None:
    init, boundary = args.init, args.freeze_boundary
    if args.freeze_boundary_from is not None:
        if boundary is not None or args.train_layers is not None:
            raise FisherlabError(
                "give one of --freeze-boundary, --freeze-boundary-from and --train-layers"
            )
        if init is None:
            raise FisherlabError(
                "--freeze-boundary-from freezes pretrained layers: give the model to fine-tune "
                "with --init"
            )
    if init is not None:
        stem = Path(args.out).with_suffix("")
        check_output_file(args.out)
        check_amp(args.amp, resolve_device(args.device))
        init = _as_checkpoint(args, init, args.data, Path(f"{stem}.init.pt"))
        if args.freeze_boundary_from is not None:
            model = load_model(init, trust_pickle=args.trust_pickle)
            boundary = recommended_boundary(args.freeze_boundary_from, model)
            _note(f"freeze boundary {boundary} from {args.freeze_boundary_from}")
    config = TrainConfig(
        data=args.data,
        arch=args.arch,
        init=init,
        freeze_boundary=boundary,
        train_layers=(
            parse_layer_selection(args.train_layers) if args.train_layers is not None else None
        ),
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
        device=args.device,
        amp=args.amp,
    )
    check_output_file(args.out)
    result = train(
        config,
        out=args.out,
        progress=not args.quiet,
        trust_pickle=args.trust_pickle,
        workers=args.workers,
    )
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
    _warn(result.warnings)


def _cmd_layers(args: argparse.Namespace) -> None:
    if (args.checkpoint is None) == (args.arch is None):
        raise FisherlabError("give a checkpoint path or --arch NAME (not both)")
    source = args.checkpoint or args.arch
    if Path(source).is_file() or args.weights is not None or looks_like_a_path(source):
        model = open_model(
            source,
            weights=args.weights,
            model_kwargs=args.model_kwargs,
            num_classes=None if args.weights else args.num_classes,
            input_spec=InputOverrides(args.image_size, args.in_channels).apply(None),
            trust_pickle=args.trust_pickle,
        )
    else:
        with torch.device("meta"):  # the map needs shapes only: no memory for the weights
            model = build_from_spec(
                source,
                args.num_classes,
                in_channels=args.in_channels,
                image_size=args.image_size,
                model_kwargs=args.model_kwargs,
            )
    frame = layer_map(model)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        with pd.option_context("display.max_colwidth", 80):
            print(frame.to_string(index=False))


def _cmd_data(args: argparse.Namespace) -> None:
    splits = load_dataset(args.data, split_seed=args.split_seed)
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
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world, device


def _cmd_profile(args: argparse.Namespace) -> None:
    check_output_folder(args.out)
    args.device = str(resolve_device(args.device))  # run.json records the device used
    rank, _, device = _distributed_setup(args.device)
    model = _open(args, args.checkpoint, args.data)
    _warn_recorded_accuracy(model, str(args.checkpoint))
    frame, _, record = profile_to(
        args.out,
        model,
        args.data,
        source=str(args.checkpoint),
        config={k: v for k, v in vars(args).items() if k not in ("func", "explain")},
        objective=args.objective,
        fisher=args.fisher,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
        device=device,
        mc_samples=args.mc_samples,
        seed=args.seed,
        diagonal=args.diagonal,
        engine=args.engine,
        split=args.split,
        progress=not args.quiet,
        workers=args.workers,
    )
    if rank != 0:
        return
    out = Path(args.out)
    plot_profile(frame, out / "profile.png", about=f"{args.checkpoint} on {args.data}")
    shown = frame[["index", "name", "kind", "n_params", "trace", "mean", "share", "engine"]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.explain:
        with pd.option_context("display.max_colwidth", 100):
            print(pd.DataFrame(frame.attrs["engines"]).to_string(index=False))
    print(
        f"wrote {out}/profile.csv, run.json, profile.png ({frame['objective'].iloc[0]}, "
        f"{frame['fisher'].iloc[0]} Fisher, {int(frame['n_samples'].iloc[0])} samples, "
        f"{record['seconds']:.1f} s)"
    )


def _cmd_distill(args: argparse.Namespace) -> None:
    check_output_file(args.out)
    resolve_device(args.device)  # a bad device is named before any model loads
    configs = [
        DistillConfig(
            public=args.public,
            arch=arch,
            epochs=args.epochs,
            lr=args.lr,
            temperature=args.temperature,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        for arch in args.arch
    ]
    stem = Path(args.out).with_suffix("")
    target = _as_checkpoint(args, args.target, args.public, Path(f"{stem}.target.pt"))
    outs = [Path(args.out)] if len(configs) == 1 else [Path(f"{stem}.{c.arch}.pt") for c in configs]
    for config, out in zip(configs, outs, strict=True):
        model = distill(
            target,
            config,
            out,
            progress=not args.quiet,
            trust_pickle=args.trust_pickle,
            device=args.device,
        )
        agreement = model.fisherlab_meta.metrics.get("agreement")
        shown = "n/a" if agreement is None else f"{agreement:.3f}"
        print(f"{out}: {config.arch} distilled from {args.target}, agreement {shown}")


def _cmd_train_gan(args: argparse.Namespace) -> None:
    config = GANConfig(
        data=args.data,
        kind=args.kind,
        loss=args.loss,
        target=args.target,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        n_critic=args.n_critic,
        top_n=args.top_n,
        inversion_weight=args.inversion_weight,
        seed=args.seed,
        max_train_samples=args.max_train_samples,
        device=args.device,
        amp=args.amp,
    )
    check_output_file(args.out)
    check_amp(config.amp, resolve_device(args.device))  # before a target is imported
    if config.target is not None:
        stem = Path(args.out).with_suffix("")
        target = _as_checkpoint(args, config.target, args.data, Path(f"{stem}.target.pt"))
        config = dataclasses.replace(config, target=target)
    prior = train_gan(
        config,
        args.out,
        progress=not args.quiet,
        trust_pickle=args.trust_pickle,
        workers=args.workers,
    )
    kind = config.kind if config.kind != "gmi" else "gmi/" + config.loss
    print(
        f"{args.out}: {kind} GAN after {prior.epoch} epochs on "
        f"{args.data}; samples in {Path(args.out).with_suffix('')}.samples.png"
    )


def _print_summary(summary: dict) -> None:
    shown = [k for k in SUMMARY_METRICS if summary.get(k) is not None]
    line = ", ".join(f"{k} {summary[k]:.4g}" for k in shown)
    if "fd_eval" in shown:
        line += f" (fd_eval: Fréchet distance in evaluator features, n={summary['fd_eval_n']})"
    print(line)
    _warn(summary.get("warnings", []))


def _cmd_attack(args: argparse.Namespace) -> None:
    check_output_folder(args.out)
    if args.lam_deprecated is not None:
        _note("attack --lam is now --id-weight (--lam keeps working for now)")
        args.lam = args.lam_deprecated
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
        feature_weight=args.feature_weight,
        views=args.views,
        amp=args.amp,
    )
    check_amp(config.amp, resolve_device(args.device))  # before the models load
    for path in args.surrogates or ():
        if not Path(path).is_file():
            raise FisherlabError(f"surrogate {path} does not exist; make it with fisherlab distill")
    private = args.private_data
    if private is None and Path(args.target).is_file():
        private = default_private_data(args.target, trust_pickle=args.trust_pickle)
    target = _open(args, args.target, private)  # loaded (and run) once
    private = private if args.eval_model else args.private_data
    outcome = attack(
        target,
        args.generator,
        args.eval_model,
        config,
        private_data=private,
        progress=not args.quiet,
        trust_pickle=args.trust_pickle,
        device=args.device,
        workers=args.workers,
        surrogates=args.surrogates or (),
        public_data=args.public_data,
    )
    write_outputs(outcome, args.out)
    _print_summary(outcome.summary)
    print(f"wrote {args.out}/" + ", ".join(attack_files(outcome)))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    source = Path(args.reconstructions)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent)
    check_output_folder(out)
    resolve_device(args.device)  # a bad device is named before any model loads
    private = args.private_data
    if private is None and Path(args.target).is_file():
        private = default_private_data(args.target, trust_pickle=args.trust_pickle)
    outcome = evaluate_saved(
        args.reconstructions,
        _open(args, args.target, private),
        args.eval_model,
        args.private_data,
        trust_pickle=args.trust_pickle,
        device=args.device,
        workers=args.workers,
    )
    write_evaluation(outcome, out)
    _print_summary(outcome.summary)
    print(f"wrote {out}/evaluation.csv, evaluation.json")


def _cmd_recommend_freeze(args: argparse.Namespace) -> None:
    check_rule(args.lam, args.budget)
    resolve_device(args.device)
    if args.out:
        check_output_folder(args.out)
    given = args.classification is not None and args.inversion is not None
    if args.checkpoint is None and not given:
        raise FisherlabError(
            "give --classification and --inversion profiles, or a checkpoint with --data and "
            "--generator to compute them"
        )
    if args.checkpoint is not None and (args.classification or args.inversion):
        raise FisherlabError("give a checkpoint or --classification/--inversion profiles, not both")
    computed, found = None, []
    if given:
        cls, inv = args.classification, args.inversion
    else:
        if args.data is None or args.generator is None:
            raise FisherlabError(
                "computing the profiles needs --data (private data) and --generator (GAN prior)"
            )
        model = _open(args, args.checkpoint, args.data)
        found = _warn_recorded_accuracy(model, str(args.checkpoint))
        computed = profiles_for(
            model,
            args.data,
            args.generator,
            attack_name=args.attack,
            iterations=args.iterations,
            per_class=args.per_class,
            fisher_every=args.fisher_every,
            max_samples=args.max_samples,
            progress=not args.quiet,
            device=args.device,
            workers=args.workers,
        )
        cls, inv = computed
    rec = recommend_freeze(cls, inv, lam=args.lam, budget=args.budget, aggregate=args.aggregate)
    rec.warnings = found
    if args.out:
        write_recommendation(rec, args.out, computed)
        table = rec.table.assign(lam=rec.lam, budget=rec.budget)
        about = f"{args.checkpoint} on {args.data}" if args.checkpoint else None
        plot_recommendation(table, Path(args.out) / "recommendation.png", about=about)
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


def _classes(text: str | None) -> list[str] | None:
    """``--classes``: a count (``10``) or comma-separated names (``cat,dog``)."""
    if text is None:
        return None
    if text.strip().isdigit():
        count = int(text)
        if not 1 <= count <= MAX_CLASSES:
            raise FisherlabError(f"--classes {text}: give a count in 1..{MAX_CLASSES}")
        return [str(i) for i in range(count)]
    names = [n.strip() for n in text.split(",")]
    if len(names) < 2 or any(not n for n in names) or len(set(names)) != len(names):
        raise FisherlabError(
            f"--classes {text!r}: give a count (e.g. 10) or 2 or more distinct names (cat,dog)"
        )
    return names


def _cmd_import(args: argparse.Namespace) -> None:
    check_output_file(args.out)
    names = _classes(args.classes)
    splits = load_dataset(args.data) if args.data is not None else None
    if names is None and splits is not None:
        names = list(splits.class_names)
    spec = _overrides(args).apply(splits.input_spec if splits is not None else None)
    if spec is None:
        raise FisherlabError(
            "give the model's input: --input-size S and --channels C (and --mean/--std), or "
            "--data DATA to take its preprocessing"
        )
    source = args.model
    pickled = Path(source).is_file()
    model = open_model(
        source,
        weights=args.weights,
        model_kwargs=None if pickled else args.model_kwargs,
        num_classes=len(names) if names else None,
        input_spec=spec,
        trust_pickle=args.trust_pickle,
    )
    meta = model.fisherlab_meta
    rebuild, rebuild_kwargs = args.spec, args.model_kwargs
    if pickled and meta.arch is None and rebuild is None:
        rebuild, rebuild_kwargs = _rebuild_spec(model, source)
    with torch.no_grad():
        out = model(spec.normalize(torch.rand(2, spec.channels, spec.size, spec.size)))
    if out.dim() != 2:
        raise FisherlabError(
            f"the model maps a {spec.channels}x{spec.size}x{spec.size} input to outputs of shape "
            f"{tuple(out.shape[1:])}; fisherlab needs one logit per class, shape (N, K)"
        )
    if names is not None and len(names) != out.shape[1]:
        raise FisherlabError(
            f"--classes names {len(names)} classes but the model has {out.shape[1]} outputs"
        )
    names = names or [str(i) for i in range(out.shape[1])]
    save_model(
        model,
        args.out,
        class_names=names,
        input_spec=spec,
        spec=rebuild,
        model_kwargs=rebuild_kwargs if rebuild else None,
    )
    arch = rebuild or meta.arch
    code = (
        " (user code: loading it needs --trust-pickle)"
        if parse_model_spec(arch).runs_user_code
        else ""
    )
    print(
        f"wrote {args.out}: {arch}, {out.shape[1]} classes, input {spec.channels}x{spec.size}x"
        f"{spec.size} mean={spec.mean} std={spec.std}{code}"
    )


def _cmd_reproduce(args: argparse.Namespace) -> None:
    check_output_folder(args.out)
    with _executor(args) as executor:
        tables = reproduce(args.preset, args.out, seeds=args.seeds, **_run_options(args, executor))
    draw_all(args.out, Path(args.out) / "figures")
    claims = tables["claims"]
    for row in claims.itertuples():
        print(f"{row.claim} [{row.verdict}] {row.paper}: {row.ours}")
    steps = tables["steps"]
    print(
        f"wrote {args.out}/ (runs.csv, claims.csv, ...; figures in {args.out}/figures): "
        f"{len(steps)} steps, {int(steps['cached'].sum())} cached, "
        f"{steps.loc[~steps['cached'].astype(bool), 'seconds'].sum():.0f} s computed"
    )


def _cmd_defend(args: argparse.Namespace) -> None:
    out = check_output_folder(args.out)
    resolve_device(args.device)
    with _executor(args) as executor:  # before any work: a missing Ray is said at once
        _defend_with(args, out, executor)


def _defend_with(args: argparse.Namespace, out: Path, executor: Executor | None) -> None:
    pretrained = args.pretrained
    if not (Path(pretrained).is_file() and _is_fisherlab_checkpoint(pretrained)):
        with removed_on_error(out / "steps"):  # a failed import leaves no empty folders
            pretrained = _as_checkpoint(
                args, pretrained, args.private, out / "steps" / "imported-pretrained.pt"
            )
    settings = {
        k: v
        for k, v in {
            "attack": args.attack,
            "seeds": tuple(range(args.seeds)) if args.seeds is not None else None,
            "finetune_epochs": args.epochs,
            "finetune_samples": args.max_train_samples,
            "eval_arch": args.eval_arch,
            "eval_epochs": args.eval_epochs,
            "gan_epochs": args.gan_epochs,
            "gan_samples": args.gan_samples,
            "iterations": args.iterations,
            "per_class": args.per_class,
            "fisher_every": args.fisher_every,
            "profile_samples": args.max_samples,
            "lam": args.lam,
            "budget": args.budget,
            "aggregate": args.aggregate,
            "compare_boundaries": args.compare_boundaries,
        }.items()
        if v is not None
    }
    report = defend(
        pretrained,
        private=args.private,
        public=args.public,
        out=out,
        generator=args.generator,
        eval_model=args.eval_model,
        quick=args.quick,
        **_run_options(args, executor),
        **settings,
    )
    shown = report.table[
        [
            "model",
            "boundary",
            "n_trainable_params",
            "natural_accuracy",
            "attack_accuracy",
            "attack_low",
            "attack_high",
            "knn_distance",
        ]
    ]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print()
    print(report.verdict)
    print(f"wrote {args.out}/ (report.csv, report.md, defend.png, defended.pt, recommendation/)")
    _warn(report.warnings)


def _cmd_compare(args: argparse.Namespace) -> None:
    if args.out:
        check_output_file(args.out)
    table = compare_runs(args.runs)
    shown = table.drop(columns=["warnings", "metric"]).copy()
    shown["within_noise"] = shown["within_noise"].map({True: "yes", False: "NO"}).fillna("")
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    differ = table[table["within_noise"].eq(False)]
    noise = table[table["within_noise"].eq(True)]
    print(
        f"{len(noise)} of {len(noise) + len(differ)} differences from the first run of their kind "
        "are within noise (95 % interval covers 0)"
    )
    if args.out:
        write_atomic(args.out, lambda p: table.to_csv(p, index=False))
        print(f"wrote {args.out}")
    _warn([f"{r.run}: {r.warnings}" for r in table.itertuples() if r.warnings])


def _is_fisherlab_checkpoint(path: str) -> bool:
    """Whether ``path`` loads as a fisherlab checkpoint (safely; no code runs)."""
    try:
        load_model(path)
    except FisherlabError:
        return False
    return True


def _boundaries(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected boundaries separated by commas, e.g. 2,4: {text!r}"
        ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"boundaries are >= 0: {text!r}")
    return values


# --------------------------------------------------------------------------- parser
TRUST_HELP = (
    "allow a pickled nn.Module, a TorchScript archive or a checkpoint naming user code: "
    "all run code while loading, so only for files you trust"
)


MODEL_HELP = f"a checkpoint file or a model spec: {MODEL_FORMS}"


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object like '{\"width\": 8}'")
    return value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"give 1 or 3 values, got {len(values)}")
    return values


def _model_options(p: argparse.ArgumentParser, role: str, input_spec: bool = True) -> None:
    """The options that say how to build and feed a model given by spec or foreign file."""
    g = p.add_argument_group(
        f"{role} (a fisherlab checkpoint; or a spec such as torchvision:resnet18 or "
        "package.module:factory with these options)"
    )
    g.add_argument(
        "--weights",
        metavar="FILE",
        help="state dict of a spec, loaded with weights_only (default: the spec's own weights)",
    )
    g.add_argument(
        "--model-kwargs",
        type=_json_object,
        metavar="JSON",
        help="arguments of the spec's builder, e.g. '{\"width\": 8}' (default: none)",
    )
    if input_spec:
        g.add_argument(
            "--input-size",
            type=int,
            metavar="S",
            help="input side of a model that records none (default: the data's)",
        )
        g.add_argument(
            "--channels", type=int, choices=[1, 3], help="input channels (default: the data's)"
        )
        g.add_argument(
            "--mean",
            type=_floats,
            metavar="M[,M,M]",
            help="normalisation mean (default: the data's)",
        )
        g.add_argument(
            "--std", type=_floats, metavar="S[,S,S]", help="normalisation std (default: the data's)"
        )
    g.add_argument("--trust-pickle", action="store_true", help=TRUST_HELP)


def _add_device_args(p: argparse.ArgumentParser, amp: str | None = None) -> None:
    """``--device`` and ``--workers``, and ``--amp`` when ``amp`` says what it covers."""
    p.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N or auto (default: cuda when available, else cpu)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="processes that read image files (default 0: this one; in-memory data ignores it)",
    )
    if amp is not None:
        p.add_argument(
            "--amp",
            choices=list(AMP_DTYPES),
            help=f"mixed precision on CUDA for {amp} (default: float32)",
        )


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor`` and Ray's options (``reproduce`` and ``defend``)."""
    p.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        default="local",
        help="who runs the steps: local (default: one after another in this process) or ray "
        "(each step a Ray task once its inputs exist; pip install 'fisherlab[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --executor ray: auto joins this machine's cluster, or a cluster address "
        "(default: start a local Ray instance)",
    )
    p.add_argument(
        "--ray-cpus",
        type=int,
        metavar="N",
        help="CPUs of the local Ray instance, each step taking one (default: all)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads of each step (default: torch's, all cores, here; a Ray step's CPUs "
        "on Ray); CPU numbers depend on it, and --threads 1 here equals a Ray run bitwise",
    )
    p.add_argument(
        "--ray-resources",
        type=_json_object,
        metavar="JSON",
        help='Ray resources per kind of step, e.g. \'{"attack": {"num_gpus": 0.5}}\' '
        "(default: 1 CPU each, and 1 GPU each with --device cuda)",
    )


def _run_options(args: argparse.Namespace, executor: Executor | None) -> dict[str, Any]:
    """How ``reproduce`` and ``defend`` run their steps, from the shared options."""
    return {
        "progress": not args.quiet,
        "device": args.device,
        "workers": args.workers,
        "executor": executor,
        "threads": args.threads,
    }


@contextlib.contextmanager
def _executor(args: argparse.Namespace) -> Iterator[Executor | None]:
    """The executor the options ask for, closed (a local Ray instance stopped) at the end."""
    executor = make_executor(
        args.executor,
        address=args.ray_address,
        num_cpus=args.ray_cpus,
        resources=args.ray_resources,
    )
    try:
        yield executor
    finally:
        if executor is not None:
            executor.close()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fisherlab`` command."""
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
    src.add_argument(
        "--arch",
        metavar="SPEC",
        help=f"pretrain this architecture: {', '.join(available_architectures())}, "
        "torchvision:NAME, timm:NAME or package.module:factory",
    )
    src.add_argument(
        "--init", metavar="MODEL", help="fine-tune this model (new head): " + MODEL_HELP
    )
    p.add_argument("--data", required=True, help="dataset, e.g. fashion or mnist5k:0-4")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.pt",
        help="the final checkpoint, a file (history and run.json are written beside it)",
    )
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="passes over the data")
    p.add_argument(
        "--freeze-boundary",
        type=int,
        metavar="B",
        help="freeze layers 0..B-1 and train the rest (default: train every layer)",
    )
    p.add_argument(
        "--freeze-boundary-from",
        metavar="PLAN",
        help="freeze the layers a recommendation chose (a recommend-freeze or defend folder, or "
        "its recommendation.json; checked against the --init model's layers; default: none)",
    )
    p.add_argument(
        "--train-layers",
        metavar="LIST",
        help="train only these layers, e.g. 0,1 (default: all, or those after the boundary)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        metavar="K",
        help="also save a checkpoint every K epochs (default: the final one only)",
    )
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="mini-batch size")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=TrainConfig.momentum, help="SGD momentum")
    p.add_argument(
        "--weight-decay", type=float, default=TrainConfig.weight_decay, help="L2 weight decay"
    )
    p.add_argument(
        "--seed", type=int, default=TrainConfig.seed, help="seed of initialisation and shuffling"
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=TrainConfig.split_seed,
        help="seed of the train/test split of sources that have none",
    )
    p.add_argument(
        "--max-train-samples",
        type=int,
        metavar="N",
        help="train on a class-balanced seeded subset of N images (default: all)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        metavar="S",
        help="input side when pretraining (default: the dataset's)",
    )
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
    _model_options(p, "--init model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p, amp="the forward pass (fp16 with a gradient scaler)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "layers",
        help="print the layer map of a checkpoint or architecture",
        description=_summary(layer_map) + " " + _summary(load_model),
        epilog="examples: fisherlab layers runs/ft.pt; fisherlab layers --arch resnet18_cifar",
    )
    p.add_argument("checkpoint", nargs="?", metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--arch", metavar="SPEC", help="a fresh model of this spec instead of MODEL (default: none)"
    )
    p.add_argument("--num-classes", type=int, default=10, help="classes of the --arch model")
    p.add_argument("--in-channels", type=int, default=1, help="input channels of the --arch model")
    p.add_argument("--image-size", type=int, default=28, help="input side of the --arch model")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    _model_options(p, "model", input_spec=False)
    p.set_defaults(func=_cmd_layers)

    p = sub.add_parser(
        "profile",
        help="per-layer Fisher information of a checkpoint on data",
        description=_summary(profile),
        epilog="example: fisherlab profile runs/ft.pt --data mnist5k:0-4 --out runs/profile; "
        "scale out with torchrun --nproc_per_node=2 -m fisherlab profile ...",
    )
    p.add_argument("checkpoint", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--data", required=True, help="dataset, e.g. mnist5k:0-4 or npz:FILE")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (profile.csv, run.json, ...)"
    )
    p.add_argument(
        "--objective",
        default="classification",
        choices=list(OBJECTIVES),
        help="the per-sample loss whose Fisher is taken",
    )
    p.add_argument(
        "--fisher",
        default="empirical",
        choices=["empirical", "true"],
        help="empirical (the data's labels) or true (labels drawn from the model)",
    )
    p.add_argument("--mc-samples", type=int, default=1, help="label draws per sample (true Fisher)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the label draws and the --max-samples subset"
    )
    p.add_argument("--batch-size", type=int, default=64, help="samples per backward pass")
    p.add_argument(
        "--max-samples",
        type=int,
        metavar="N",
        help="profile N samples: a class-balanced subset, seeded by --seed; data whose labels "
        "are not known in advance (a DataLoader, in the Python API) keeps its first N "
        "(default: all)",
    )
    p.add_argument(
        "--split", choices=["train", "test", "all"], help="which split (default: train; npz: all)"
    )
    p.add_argument(
        "--engine",
        default="auto",
        choices=list(ENGINES),
        help="auto: BackPACK fast paths, checked, with a per-module fallback",
    )
    p.add_argument("--diagonal", action="store_true", help="also save DIR/diagonal.pt")
    p.add_argument(
        "--explain",
        action="store_true",
        help="print which engine computed each parameter and why (always in DIR/engines.csv)",
    )
    _model_options(p, "model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p)
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser(
        "train-gan",
        help="train a GMI, KEDMI or PLG-MI GAN prior on public data",
        description=_summary(train_gan) + " " + _summary(GANConfig),
        epilog="example: fisherlab train-gan --data mnist5k:5-9 --kind gmi --epochs 120 "
        "--target runs/target.pt --out runs/gmi_gan.pt",
    )
    p.add_argument("--data", required=True, help="public dataset, e.g. mnist5k:5-9")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.pt",
        help="the prior's checkpoint, a file (train-gan resumes from it)",
    )
    p.add_argument("--kind", default="gmi", choices=list(GAN_KINDS), help="which attack's prior")
    p.add_argument(
        "--loss", default="dcgan", choices=list(GAN_LOSSES), help="GMI's adversarial loss"
    )
    p.add_argument(
        "--target",
        metavar="MODEL",
        help="target (needed by kedmi and plgmi; fixes the image size; default: none): "
        + MODEL_HELP,
    )
    p.add_argument("--epochs", type=int, default=GANConfig.epochs, help="passes over the data")
    p.add_argument("--batch-size", type=int, default=GANConfig.batch_size, help="mini-batch size")
    p.add_argument("--lr", type=float, default=GANConfig.lr, help="Adam learning rate")
    p.add_argument(
        "--n-critic",
        type=int,
        help="critic steps per generator step (default: 5 for wgan-gp and plgmi, else 1)",
    )
    p.add_argument(
        "--top-n",
        type=int,
        default=GANConfig.top_n,
        metavar="N",
        help="plgmi: public images pseudo-labelled per target class",
    )
    p.add_argument(
        "--inversion-weight",
        type=float,
        default=GANConfig.inversion_weight,
        metavar="ALPHA",
        help="plgmi: weight of the target's max-margin loss in the generator's loss",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and latents")
    p.add_argument(
        "--max-train-samples",
        type=int,
        metavar="N",
        help="train on a class-balanced seeded subset of N images (default: all)",
    )
    _model_options(p, "--target model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p, amp="both networks (fp16 with a gradient scaler)")
    p.set_defaults(func=_cmd_train_gan)

    p = sub.add_parser(
        "distill",
        help="distil surrogates of other architectures from a target (LOMMA)",
        description=_summary(distill) + " " + _summary(DistillConfig),
        epilog="example: fisherlab distill runs/target.pt --public mnist5k:5-9 --arch lenet5 mlp "
        "vit_small --out runs/surrogate.pt (writes runs/surrogate.lenet5.pt, ...)",
    )
    p.add_argument("target", metavar="MODEL", help="the target: " + MODEL_HELP)
    p.add_argument("--public", required=True, help="public dataset, e.g. mnist5k:5-9")
    p.add_argument(
        "--arch",
        nargs="+",
        default=list(DEFAULT_SURROGATES),
        choices=available_architectures(),
        metavar="ARCH",
        help="surrogate architectures (one file each): " + ", ".join(available_architectures()),
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.pt",
        help="the surrogate (with several --arch: FILE.ARCH.pt each); a finished one is reused",
    )
    p.add_argument("--epochs", type=int, default=DistillConfig.epochs, help="passes over the data")
    p.add_argument("--lr", type=float, default=DistillConfig.lr, help="SGD learning rate")
    p.add_argument(
        "--temperature", type=float, default=DistillConfig.temperature, help="softmax temperature"
    )
    p.add_argument(
        "--batch-size", type=int, default=DistillConfig.batch_size, help="mini-batch size"
    )
    p.add_argument("--seed", type=int, default=DistillConfig.seed, help="seed of init and order")
    _model_options(p, "target model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p)
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser(
        "attack",
        help="invert a target with GMI, KEDMI, LOMMA, PLG-MI or a white-box baseline, then "
        "evaluate",
        description=_summary(attack),
        epilog="example: fisherlab attack runs/target.pt --attack gmi --generator runs/gmi_gan.pt "
        "--eval-model runs/eval.pt --classes 0-4 --per-class 5 --iterations 600 --restarts 5 "
        "--fisher-every 10 --out runs/gmi",
    )
    p.add_argument("target", metavar="MODEL", help="the attacked classifier: " + MODEL_HELP)
    p.add_argument("--attack", default="gmi", choices=attack_names(), help="the attack")
    p.add_argument(
        "--generator",
        metavar="FILE.pt",
        help="GAN prior from fisherlab train-gan (gmi and lomma-gmi: a gmi prior; kedmi and "
        "lomma-kedmi: kedmi; plgmi: plgmi; default: none)",
    )
    p.add_argument(
        "--surrogates",
        nargs="+",
        metavar="FILE.pt",
        help="lomma-*: surrogates distilled from the target (fisherlab distill; default: none)",
    )
    p.add_argument(
        "--public-data",
        help="lomma-*: public data of the feature mean (default: the GAN prior's data)",
    )
    p.add_argument(
        "--feature-weight",
        type=float,
        default=AttackConfig.feature_weight,
        metavar="W",
        help="lomma-*: weight of the feature regulariser",
    )
    p.add_argument(
        "--views",
        type=int,
        default=AttackConfig.views,
        metavar="V",
        help="plgmi: augmented views per latent and step",
    )
    p.add_argument(
        "--eval-model",
        metavar="FILE.pt",
        help="evaluation classifier (default: none, no attack accuracy)",
    )
    p.add_argument(
        "--private-data", help="private data (default: the data the target was trained on)"
    )
    p.add_argument("--classes", default="0-4", help="classes to invert, e.g. 0-4")
    p.add_argument(
        "--per-class", type=int, default=AttackConfig.per_class, help="reconstructions per class"
    )
    p.add_argument(
        "--iterations", type=int, default=AttackConfig.iterations, help="optimisation steps"
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=AttackConfig.restarts,
        help="independent starts; the target's most confident is kept",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the latents")
    p.add_argument(
        "--lr",
        type=float,
        help="step size (default: gmi and lomma-gmi 0.01, kedmi and lomma-kedmi 0.02, "
        "plgmi 0.1, whitebox 0.05)",
    )
    p.add_argument(
        "--id-weight",
        dest="lam",
        metavar="W",
        type=float,
        default=AttackConfig.lam,
        help="weight of the identity loss against the prior's (lambda of GMI)",
    )
    p.add_argument("--lam", dest="lam_deprecated", type=float, help=argparse.SUPPRESS)
    p.add_argument(
        "--fisher-every",
        type=int,
        default=0,
        metavar="K",
        help="record the identity loss's per-layer Fisher every K iterations (0: never)",
    )
    p.add_argument(
        "--fisher-samples",
        type=int,
        metavar="N",
        help="record the first N rows per class of the batch (KEDMI: of its draws; default: all)",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (attack.csv, summary.json, ...)"
    )
    _model_options(p, "target model (--trust-pickle covers --eval-model too)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p, amp="the GAN prior (the target, and its Fisher, stay float32)")
    p.set_defaults(func=_cmd_attack)

    p = sub.add_parser(
        "evaluate",
        help="judge saved reconstructions with an evaluation model (writes evaluation.csv/.json)",
        description=_summary(evaluate_attack),
        epilog="example: fisherlab evaluate runs/target.pt --reconstructions runs/gmi "
        "--eval-model runs/eval.pt",
    )
    p.add_argument("target", metavar="MODEL", help="the attacked classifier: " + MODEL_HELP)
    p.add_argument(
        "--reconstructions", required=True, metavar="DIR", help="an attack's --out folder"
    )
    p.add_argument(
        "--eval-model", required=True, metavar="FILE.pt", help="the evaluation classifier"
    )
    p.add_argument(
        "--private-data", help="private data (default: the data the target was trained on)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where evaluation.csv and evaluation.json go (default: the reconstructions' "
        "directory; the attack's own files are never changed)",
    )
    _model_options(p, "target model (--trust-pickle covers --eval-model too)")
    _add_device_args(p)
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
    p.add_argument(
        "checkpoint", nargs="?", metavar="MODEL", help="compute both profiles for: " + MODEL_HELP
    )
    p.add_argument(
        "--classification",
        metavar="PATH",
        help="profile.csv or its folder (default: computed for MODEL)",
    )
    p.add_argument(
        "--inversion",
        metavar="PATH",
        help="an attack's fisher.csv or its folder (default: computed for MODEL)",
    )
    p.add_argument("--lam", type=float, default=1.0, help="price lambda of classification Fisher")
    p.add_argument("--budget", type=float, default=1.0, help="cap on C(b), in [0, 1]")
    p.add_argument(
        "--aggregate",
        choices=AGGREGATIONS,
        default=AGGREGATIONS[0],
        help="how the attack's recorded steps combine: shares (mean of each step's layer "
        "shares), traces (shares of the mean trace: the largest step decides) or "
        "late (shares without the first tenth of the iterations)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder for recommendation.csv/.json/.png (default: print only)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument(
        "--data", help="private data for the classification profile (with MODEL; default: none)"
    )
    p.add_argument(
        "--generator",
        metavar="FILE.pt",
        help="GAN prior for the inversion profile (with MODEL; default: none)",
    )
    p.add_argument(
        "--attack",
        default="gmi",
        choices=attack_names(needs_prior=True),
        help="the attack along which the inversion Fisher is recorded",
    )
    p.add_argument("--iterations", type=int, default=300, help="attack iterations")
    p.add_argument("--per-class", type=int, default=5, help="reconstructions per class")
    p.add_argument(
        "--fisher-every", type=int, default=10, metavar="K", help="record every K iterations"
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=1000,
        metavar="N",
        help="classification profile on a class-balanced subset of N samples",
    )
    _model_options(p, "model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_args(p)
    p.set_defaults(func=_cmd_recommend_freeze)

    p = sub.add_parser(
        "import",
        help="wrap your model (a spec with weights, or a trusted pickle) into a checkpoint",
        description="Wrap a model into a fisherlab checkpoint that records its architecture "
        "spec, class names and input spec, so that every command then takes it without flags. "
        + _summary(open_model),
        epilog="examples: fisherlab import torchvision:resnet18 --weights resnet18_sd.pt "
        "--input-size 64 --channels 3 --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --classes 10 --out "
        "model.pt; fisherlab import mypackage.nets:make_cnn --model-kwargs '{\"width\": 32}' "
        "--weights sd.pt --data mnist5k:0-4 --out model.pt",
    )
    p.add_argument("model", metavar="MODEL", help="a spec, or a pickled nn.Module (--trust-pickle)")
    p.add_argument(
        "--out", required=True, metavar="FILE.pt", help="the checkpoint to write, a file"
    )
    p.add_argument(
        "--classes", metavar="N|NAMES", help="class count or names (default: from --data)"
    )
    p.add_argument(
        "--data",
        help="take class names and preprocessing from this dataset (default: give --classes "
        "and --input-size/--channels)",
    )
    p.add_argument(
        "--spec",
        metavar="SPEC",
        help="for a pickle: the package.module:factory that rebuilds it (default: its class)",
    )
    _model_options(p, "model")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser(
        "defend",
        help="the whole TL-DMI loop: reference, profiles, plan, defended model, attacks, report",
        description=_summary(defend),
        epilog="example: fisherlab defend runs/pretrained.pt --private mnist5k:0-4 "
        "--public mnist5k:5-9 --out runs/defend --quick",
    )
    p.add_argument(
        "pretrained", metavar="PRETRAINED", help="model pretrained on public data: " + MODEL_HELP
    )
    p.add_argument("--private", required=True, help="private data, e.g. mnist5k:0-4")
    p.add_argument(
        "--public", required=True, help="public data for the GAN prior, e.g. mnist5k:5-9"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (report.csv, report.md, ...; steps cached in DIR/steps)",
    )
    p.add_argument(
        "--quick", action="store_true", help="quick settings: minutes on a CPU, wide intervals"
    )
    p.add_argument(
        "--attack",
        choices=list(DEFEND_ATTACKS),
        help=f"the attack (default: {DefendConfig.attack})",
    )
    p.add_argument(
        "--generator",
        metavar="FILE.pt",
        help="reuse this GAN prior from fisherlab train-gan (default: train one)",
    )
    p.add_argument(
        "--eval-model", metavar="FILE.pt", help="judge with this model (default: train one)"
    )
    p.add_argument(
        "--eval-arch", help="architecture of the trained evaluation model (default: eval_cnn)"
    )
    p.add_argument(
        "--seeds", type=int, metavar="N", help="attack seeds 0..N-1 (default 3; quick 1)"
    )
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (default 5; quick 2)")
    p.add_argument(
        "--max-train-samples",
        type=int,
        metavar="N",
        help="cap on private training images (default: all)",
    )
    p.add_argument("--eval-epochs", type=int, help="evaluation model epochs (default 40; quick 6)")
    p.add_argument(
        "--gan-epochs", type=int, help="GAN prior epochs (default: gmi 100, kedmi 30; quick 20)"
    )
    p.add_argument(
        "--gan-samples",
        type=int,
        metavar="N",
        help="cap on public images for the prior (default: all; quick 1500)",
    )
    p.add_argument("--iterations", type=int, help="attack iterations (default 100; quick 40)")
    p.add_argument(
        "--per-class", type=int, help="reconstructions per class and seed (default 20; quick 10)"
    )
    p.add_argument(
        "--fisher-every",
        type=int,
        metavar="K",
        help="record the Fisher every K iterations (default 10; quick 5)",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        metavar="N",
        help="images of the classification profile (default 500; quick 200)",
    )
    p.add_argument("--lam", type=float, help="planner: price of classification Fisher (default 1)")
    p.add_argument(
        "--budget", type=float, help="planner: cap on frozen classification share (default 1)"
    )
    p.add_argument(
        "--aggregate",
        choices=list(AGGREGATIONS),
        help="planner: how attack steps combine (default: shares)",
    )
    p.add_argument(
        "--compare-boundaries",
        type=_boundaries,
        metavar="B,B",
        help="also fine-tune and attack these boundaries (default: none)",
    )
    _model_options(p, "PRETRAINED model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device_args(p)
    _add_executor_args(p)
    p.set_defaults(func=_cmd_defend)

    p = sub.add_parser(
        "compare",
        help="one table of attack and training runs, flagging differences within noise",
        description=_summary(compare_runs),
        epilog="example: fisherlab compare runs/defend/steps/attack-* --out runs/compare.csv",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="an attack folder or summary.json, a training run.json or its checkpoint",
    )
    p.add_argument(
        "--out", metavar="FILE.csv", help="also write the table to this file (default: print only)"
    )
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "reproduce",
        help="run the paper's experiments (Figs. 1-II to 5) at small scale, cached",
        description=_summary(reproduce),
        epilog="example: fisherlab reproduce --preset quick --out results/quick",
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=sorted(PRESETS),
        help="smoke (tests), quick (minutes), default (the results table, about two hours), "
        "checks, full",
    )
    p.add_argument(
        "--seeds", type=int, metavar="N", help="run seeds 0..N-1 (default: the preset's)"
    )
    p.add_argument(
        "--out", default="results", metavar="DIR", help="output folder (tables, figures, steps/)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_device_args(p)
    _add_executor_args(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser(
        "data",
        help="describe a dataset: split sizes, classes, input spec",
        description=_summary(load_dataset) + " Forms: " + ", ".join(FORMS),
        epilog="examples: fisherlab data mnist5k:0-4; fisherlab data fashion",
    )
    p.add_argument("data", help="dataset, e.g. mnist5k:0-4")
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the split of sources that have none"
    )
    p.set_defaults(func=_cmd_data)
    return parser


TINY_ENV = "FISHERLAB_TINY"
"""Set to 1, every command runs at a token size (:data:`TINY_CAPS`): for testing walkthroughs."""

TINY_CAPS = {
    "epochs": 1,
    "eval_epochs": 1,
    "gan_epochs": 1,
    "iterations": 6,
    "per_class": 2,
    "fisher_every": 3,
    "max_train_samples": 512,
    "gan_samples": 256,
    "max_samples": 64,
    "seeds": 1,
}
"""``FISHERLAB_TINY=1``: the cap on each option (an unset option gets the cap)."""


def _shrink(args: argparse.Namespace) -> None:
    """Cap ``args`` by :data:`TINY_CAPS` when ``FISHERLAB_TINY=1`` (numbers mean nothing then)."""
    if os.environ.get(TINY_ENV, "") in ("", "0"):
        return
    changed = []
    for name, cap in TINY_CAPS.items():
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        if name == "fisher_every" and value == 0:
            continue  # 0 means "do not record"
        if value is None or value > cap:
            setattr(args, name, cap)
            changed.append(f"{name}={cap}")
    if changed:
        _note(f"{TINY_ENV}=1: token sizes ({', '.join(changed)}); the numbers mean nothing")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    matplotlib.use("Agg")  # files, not windows; only the command line chooses a backend
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get("FISHERLAB_DEBUG"))
    _NOTES.clear()
    _shrink(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            args.func(args)
        sys.stderr.write("".join(_NOTES))
    except FisherlabError as exc:
        if debug:
            raise
        sys.stderr.write(f"fisherlab: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("fisherlab: interrupted\n")
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except Exception as exc:
        if debug:
            raise
        first = " ".join(str(exc).split())[:300]
        sys.stderr.write(
            f"fisherlab: internal error: {type(exc).__name__}: {first} "
            "(rerun with FISHERLAB_DEBUG=1 for the traceback and report it)\n"
        )
        return 1
    try:
        sys.stdout.flush()  # what is still buffered may meet a closed pipe too
    except BrokenPipeError:
        return _reader_gone()
    return 0


def _reader_gone() -> int:
    """The reader of stdout went away (``fisherlab layers ckpt | head -1``): end quietly.

    Python would report the failed flush of stdout at exit, so stdout is
    pointed at ``/dev/null`` first; the status is the shell's for SIGPIPE.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + signal.SIGPIPE

"""The stronger attacks against GMI on one target, over several seeds (issue 17).

Each attack inverts the same target with the same evaluator, seeds,
iterations, restarts and reconstructions; each LOMMA attack is compared with
GMI, and LOMMA-KEDMI with KEDMI too, by
:func:`fisherlab.experiments.statistics.paired_difference` on the
reconstructions (two-level bootstrap over seeds and reconstructions).

Writes OUT/<attack>_seed<k>/ (the attack's outputs; a finished one is reused),
OUT/summary.csv (one row per attack and seed), OUT/reconstructions.csv,
OUT/comparison.csv (one row per compared pair) and OUT/config.json (the
inputs, the PLG-MI GAN's settings, the surrogates' agreement with the
target), and prints the comparison.

Usage: python scripts/strong_attacks.py --target T.pt --eval-model E.pt \
    --gmi-gan G.pt --plgmi-gan P.pt --surrogates S1.pt S2.pt S3.pt \
    [--kedmi-gan K.pt] --out results/strong_attacks [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from fisherlab._io import write_atomic, write_json
from fisherlab.attacks import SUMMARY_METRICS as METRICS
from fisherlab.attacks import attack, load_gan, write_outputs
from fisherlab.experiments.statistics import paired_difference
from fisherlab.models import load_model, model_meta

PAIRS = [
    ("lomma-gmi", "gmi"),
    ("plgmi", "gmi"),
    ("lomma-kedmi", "gmi"),
    ("kedmi", "gmi"),
    ("lomma-kedmi", "kedmi"),
]
"""The compared pairs: every attack against GMI, and LOMMA-KEDMI against its base."""


def _run(args, kind: str, gan: str, seed: int, out: Path) -> dict:
    folder = out / f"{kind}_seed{seed}"
    inputs = {
        "target": args.target,
        "eval_model": args.eval_model,
        "gan": gan,
        "surrogates": list(args.surrogates) if kind.startswith("lomma") else [],
        "iterations": args.iterations,
        "restarts": args.restarts,
        "per_class": args.per_class,
        "fisher_every": args.fisher_every,
        "private_data": args.private_data,
    }
    done = folder / "summary.json"
    if done.is_file():
        saved = folder / "inputs.json"
        if not saved.is_file() or json.loads(saved.read_text()) != inputs:
            raise SystemExit(f"{folder} holds a run of other inputs: choose another --out")
    else:
        outcome = attack(
            args.target,
            gan,
            args.eval_model,
            attack=kind,
            classes=(0, 1, 2, 3, 4),
            per_class=args.per_class,
            iterations=args.iterations,
            restarts=args.restarts,
            seed=seed,
            fisher_every=args.fisher_every,
            private_data=args.private_data,
            surrogates=args.surrogates if kind.startswith("lomma") else (),
            progress=True,
        )
        write_outputs(outcome, folder)
        write_json(folder / "inputs.json", inputs)
    summary = json.loads((folder / "summary.json").read_text())
    rows = pd.read_csv(folder / "attack.csv").assign(attack=kind, seed=seed)
    return {
        "summary": {"attack": kind, "seed": seed, **{m: summary[m] for m in METRICS}},
        "rows": rows,
    }


def main() -> None:
    """Run every attack and seed, then compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--eval-model", required=True)
    parser.add_argument("--gmi-gan", required=True)
    parser.add_argument("--plgmi-gan", required=True)
    parser.add_argument("--kedmi-gan")
    parser.add_argument("--surrogates", nargs="+", required=True)
    parser.add_argument("--private-data", default="mnist5k:0-4")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--fisher-every", type=int, default=10)
    args = parser.parse_args()
    out = Path(args.out)
    gans = {"gmi": args.gmi_gan, "lomma-gmi": args.gmi_gan, "plgmi": args.plgmi_gan}
    if args.kedmi_gan:
        gans |= {"kedmi": args.kedmi_gan, "lomma-kedmi": args.kedmi_gan}
    summaries, rows = [], []
    for seed in args.seeds:
        for kind, gan in gans.items():
            done = _run(args, kind, gan, seed, out)
            summaries.append(done["summary"])
            rows.append(done["rows"])
            print(kind, seed, {m: done["summary"][m] for m in METRICS[:3]}, flush=True)
    summary, recon = pd.DataFrame(summaries), pd.concat(rows, ignore_index=True)
    comparison = []
    for kind, base in PAIRS:
        if kind not in gans or base not in gans:
            continue
        est = paired_difference(recon, "attack", (kind, base))
        comparison.append(
            {
                "attack": kind,
                "baseline": base,
                "top1": summary.loc[summary["attack"] == kind, "attack_accuracy_top1"].mean(),
                "baseline_top1": summary.loc[
                    summary["attack"] == base, "attack_accuracy_top1"
                ].mean(),
                "effect": est.effect,
                "ci_low": est.low,
                "ci_high": est.high,
                "p_value": est.p_value,
                "n_seeds": est.n_seeds,
                "outside_noise": est.low > 0 or est.high < 0,
                "estimate": est.describe(),
            }
        )
    comparison = pd.DataFrame(comparison)
    inputs = {k: v for k, v in vars(args).items()}
    prior = load_gan(args.plgmi_gan)
    inputs["plgmi_gan_config"] = {k: prior.config.get(k) for k in ("epochs", "n_critic", "top_n")}
    inputs["plgmi_gan_config"]["epochs_trained"] = prior.epoch
    inputs["surrogate_agreement"] = {
        path: model_meta(load_model(path)).metrics.get("agreement") for path in args.surrogates
    }
    write_json(out / "config.json", inputs)
    write_atomic(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
    write_atomic(out / "reconstructions.csv", lambda p: recon.to_csv(p, index=False))
    write_atomic(out / "comparison.csv", lambda p: comparison.to_csv(p, index=False))
    print(summary.groupby("attack")[METRICS[:3]].agg(["mean", "std"]).to_string())
    print(comparison[["attack", "baseline", "top1", "baseline_top1", "estimate"]].to_string())


if __name__ == "__main__":
    main()

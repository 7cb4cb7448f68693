"""Speed and memory of fisherlab's Fisher engine against stock alternatives.

For each model and batch, every method computes per-layer squared per-sample
gradients for the whole batch; times are medians over repeats, interleaved
round-robin in one process, and reported relative to one plain
forward+backward of the same batch. Peak memory is measured per method in a
fresh subprocess (peak resident-memory growth over the resident set just
before the method's calls, sampled every millisecond).

Methods:
  plain             loss.backward() of the batch-mean loss (the 1.00 anchor)
  fisherlab trace   FisherEngine.add_batch, per-layer trace only
  fisherlab diag    FisherEngine.add_batch with the full diagonal
  backpack l2       stock BackPACK BatchL2Grad (extend with converter)
  backpack sgs      stock BackPACK SumGradSquared
  vmap(grad)        torch.func per-sample gradients of all parameters
  loop              one autograd.grad call per sample

On a GPU (``--device cuda``) every call is synchronised before its time is
taken, and memory is the peak growth of CUDA's allocator.

Usage: python benchmarks/fisher_speed.py [--repeats 5] [--only target_cnn] [--device cuda]
       [--no-memory] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
import warnings

import torch
from torch import nn

CASES = {
    "target_cnn": dict(image_size=28, batch=128),
    "vgg16_bn": dict(image_size=64, batch=32),
    "resnet18": dict(image_size=64, batch=32),
}
METHODS = [
    "plain",
    "fisherlab trace",
    "fisherlab diag",
    "backpack l2",
    "backpack sgs",
    "vmap(grad)",
    "loop",
]


def make_case(arch: str, device: str = "cpu"):
    from fisherlab.models import build_model

    spec = CASES[arch]
    torch.manual_seed(0)
    model = build_model(arch, 10, image_size=spec["image_size"]).eval()
    x = torch.randn(spec["batch"], 1, spec["image_size"], spec["image_size"])
    y = torch.randint(0, 10, (spec["batch"],))
    return model.to(device), x.to(device), y.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_method(name: str, model: nn.Module, x, y):
    """Return a zero-argument callable doing the method's work on (x, y)."""
    ce = nn.functional.cross_entropy
    if name == "plain":
        m = copy.deepcopy(model)

        def run():
            m.zero_grad(set_to_none=True)
            ce(m(x), y).backward()

        return run
    if name.startswith("fisherlab"):
        from fisherlab.fisher import FisherEngine

        engine = FisherEngine(model, diagonal=name.endswith("diag"), device=x.device)

        def run():
            engine.add_batch(x, y)

        return run
    if name.startswith("backpack"):
        from backpack import backpack, extend
        from backpack.extensions import BatchL2Grad, SumGradSquared

        m = copy.deepcopy(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = extend(m, use_converter=True).eval()
        ext = BatchL2Grad() if name.endswith("l2") else SumGradSquared()

        def run():
            m.zero_grad(set_to_none=True)
            with backpack(ext):
                ce(m(x), y, reduction="sum").backward()

        return run
    if name == "vmap(grad)":
        from torch.func import functional_call, grad, vmap

        m = copy.deepcopy(model)
        params = {k: v.detach() for k, v in m.named_parameters()}
        buffers = dict(m.named_buffers())

        def one(p, xi, yi):
            return ce(functional_call(m, {**p, **buffers}, (xi[None],)), yi[None])

        def run():
            g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
            return {k: v.square().flatten(1).sum(1) for k, v in g.items()}

        return run
    if name == "loop":
        m = copy.deepcopy(model)
        params = list(m.parameters())

        def run():
            for i in range(len(y)):
                gs = torch.autograd.grad(ce(m(x[i : i + 1]), y[i : i + 1]), params)
                [g.square().sum() for g in gs]

        return run
    raise ValueError(name)


def peak_memory(arch: str, method: str, device: str = "cpu") -> float:
    """Peak memory growth (MiB) during two calls of a method.

    The baseline is the memory just before the calls (model, data and
    engine already built, one warm-up call done): the resident set on the
    CPU, CUDA's allocator on a GPU.
    """
    from _memory import peak_growth_mib

    model, x, y = make_case(arch, device)
    run = make_method(method, model, x, y)
    run()  # lazy preparation (e.g. the BackPACK copy) is not part of a batch's work
    return peak_growth_mib(lambda: (run(), run()), device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=list(CASES))
    parser.add_argument("--skip-loop", action="store_true", help="skip the slow per-sample loop")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = args.device
    if args.memory_child:
        print(json.dumps(peak_memory(*args.memory_child, device)))
        return
    methods = [m for m in METHODS if not (args.skip_loop and m == "loop")]
    where = (
        torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else f"{torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, {device}: {where}, {time.strftime('%Y-%m-%d')}")
    record: dict = {"torch": torch.__version__, "device": device, "where": where, "cases": {}}
    for arch in [args.only] if args.only else CASES:
        model, x, y = make_case(arch, device)
        runs = {m: make_method(m, model, x, y) for m in methods}
        for run in runs.values():  # warm-up (and lazy preparation)
            run()
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for m, run in runs.items():
                sync(device)
                t = time.perf_counter()
                run()
                sync(device)
                times[m].append(time.perf_counter() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        mem = {m: float("nan") for m in methods}
        for m in [] if args.no_memory else methods:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", arch, m, "--device", device],
                capture_output=True,
                text=True,
                check=True,
            )
            mem[m] = json.loads(out.stdout.strip().splitlines()[-1])
        spec = CASES[arch]
        print(f"\n{arch}, {spec['image_size']}x{spec['image_size']}, batch {spec['batch']}")
        print(f"{'method':<16} {'median':>9} {'ratio':>6} {'peak MiB':>9} {'mem ratio':>9}")
        for m in methods:
            print(
                f"{m:<16} {med[m] * 1e3:>7.1f}ms {med[m] / med['plain']:>6.2f} "
                f"{mem[m]:>9.0f} {mem[m] / max(mem['plain'], 1):>9.2f}"
            )
        record["cases"][arch] = {
            "image_size": spec["image_size"],
            "batch": spec["batch"],
            "seconds": med,
            "ratio": {m: med[m] / med["plain"] for m in methods},
            "peak_mib": mem,
        }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()

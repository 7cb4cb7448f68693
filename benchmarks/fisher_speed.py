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

Usage: python benchmarks/fisher_speed.py [--repeats 5] [--only target_cnn]
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
    "target_cnn": dict(image_size=28, batch=128, channels=1),
    "vgg16_bn": dict(image_size=64, batch=32, channels=1),
    "resnet18": dict(image_size=64, batch=32, channels=1),
    "mobilenet_v3_small": dict(image_size=64, batch=32, channels=3),
    "efficientnet_b0": dict(image_size=64, batch=32, channels=3),
    "vit_tv": dict(image_size=64, batch=32, channels=3),
}
"""The first three are fisherlab's registry models (1 channel); the others are torchvision's
(3 channels, 10 classes): mobilenet_v3_small, efficientnet_b0 and a VisionTransformer with
patch 8, 4 layers, 4 heads, hidden 192, MLP 768."""
METHODS = [
    "plain",
    "fisherlab trace",
    "fisherlab diag",
    "backpack l2",
    "backpack sgs",
    "vmap(grad)",
    "loop",
]


def build(arch: str, image_size: int) -> nn.Module:
    """The benchmark's model (10 classes, eval mode)."""
    import torchvision

    if arch == "mobilenet_v3_small":
        return torchvision.models.mobilenet_v3_small(num_classes=10)
    if arch == "efficientnet_b0":
        return torchvision.models.efficientnet_b0(num_classes=10)
    if arch == "vit_tv":
        return torchvision.models.VisionTransformer(
            image_size=image_size,
            patch_size=8,
            num_layers=4,
            num_heads=4,
            hidden_dim=192,
            mlp_dim=768,
            num_classes=10,
        )
    from fisherlab.models import build_model

    return build_model(arch, 10, image_size=image_size)


def make_case(arch: str):
    spec = CASES[arch]
    torch.manual_seed(0)
    model = build(arch, spec["image_size"]).eval()
    x = torch.randn(spec["batch"], spec["channels"], spec["image_size"], spec["image_size"])
    y = torch.randint(0, 10, (spec["batch"],))
    return model, x, y


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

        engine = FisherEngine(model, diagonal=name.endswith("diag"))

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


def peak_memory(arch: str, method: str) -> float:
    """Peak resident-memory growth (MiB) during two calls of a method.

    The baseline is the resident set just before the calls (model, data and
    engine already built, one warm-up call done).
    """
    from _memory import peak_growth_mib

    model, x, y = make_case(arch)
    run = make_method(method, model, x, y)
    run()  # lazy preparation (e.g. the BackPACK copy) is not part of a batch's work
    return peak_growth_mib(lambda: (run(), run()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=list(CASES), nargs="+")
    parser.add_argument("--methods", choices=METHODS, nargs="+", help="default: all")
    parser.add_argument("--skip-loop", action="store_true", help="skip the slow per-sample loop")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(peak_memory(*args.memory_child)))
        return
    chosen = args.methods or METHODS
    methods = [m for m in METHODS if m in chosen and not (args.skip_loop and m == "loop")]
    if "plain" not in methods:
        methods.insert(0, "plain")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}"
    )
    for arch in args.only or CASES:
        model, x, y = make_case(arch)
        runs = {m: make_method(m, model, x, y) for m in methods}
        for run in runs.values():  # warm-up (and lazy preparation)
            run()
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for m, run in runs.items():
                t = time.perf_counter()
                run()
                times[m].append(time.perf_counter() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        mem = {}
        for m in methods:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", arch, m],
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


if __name__ == "__main__":
    main()

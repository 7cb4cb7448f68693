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
  opacus plain      plain forward+backward of the model as Opacus takes it
                    (``ModuleValidator.fix``: BatchNorm -> GroupNorm, attention ->
                    DPMultiheadAttention), the anchor of the two rows below
  opacus gsm        Opacus GradSampleModule: per-sample gradients (grad_sample),
                    then their squared norms per parameter
  opacus ghost      Opacus GradSampleModuleFastGradientClipping (ghost clipping):
                    per-sample gradient norms per parameter without per-sample
                    gradients where it can (one backward, get_norm_sample())

Opacus refuses BatchNorm (it mixes samples in training), so its rows run on the
fixed model and their ratio is to "opacus plain", measured in the same rounds.
The Opacus rows need ``pip install opacus`` (``pip install -e .[bench]``); without
it they are left out and the script says so. A model Opacus cannot run gets a
"failed" row with its message.

Setup overhead (``--setup``, also run after the cases by default):
``fisherlab.profile`` end to end on 4 batches of 32 of vgg16_bn at 64x64
(engine setup included: model copies, run-time checks, the probe) against the
same 4 plain forward+backward passes, and the setup's share of the profile's
time.

Clocks: ``--clock wall`` (default) times wall-clock seconds; ``--clock cpu``
times the CPU seconds of this process (``time.process_time``), which other
processes on a shared machine barely change: use it, with ``--threads 1``,
when the load is high (``uptime``).

On a GPU (``--device cuda``) models and inputs live on the device, every call
is synchronised (``torch.cuda.synchronize``) before its time is taken, and
memory is the peak growth of CUDA's allocator (``torch.cuda.max_memory_allocated``
over what was allocated just before the calls) instead of the resident set.

``--json FILE`` also writes the numbers (written atomically): ``cases`` maps
each model to its ``image_size``, ``batch``, ``seconds`` and ``ratio`` (method ->
float; an Opacus row's ratio is to "opacus plain"), ``peak_mib`` (method -> MiB,
null when not measured) and ``failed`` (method -> message). Failed methods, and
Opacus rows without their "opacus plain", are left out of the first three maps;
``setup`` holds the setup run's medians.

Usage: python benchmarks/fisher_speed.py [--repeats 5] [--only target_cnn ...]
           [--methods plain "fisherlab trace" ...] [--no-setup | --setup]
           [--clock wall|cpu] [--threads N] [--no-memory] [--device cpu|cuda[:N]]
           [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
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
    "opacus plain",
    "opacus gsm",
    "opacus ghost",
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
    from fisherlab.models import RENAMED, build_model

    return build_model(RENAMED.get(arch, arch), 10, image_size=image_size)


CLOCK = time.perf_counter
"""The clock of every timing (``--clock cpu`` sets ``time.process_time``)."""


def make_case(arch: str, device: str = "cpu"):
    """The case's model (eval mode), inputs and labels, on ``device``."""
    spec = CASES[arch]
    torch.manual_seed(0)
    model = build(arch, spec["image_size"]).eval()
    x = torch.randn(spec["batch"], spec["channels"], spec["image_size"], spec["image_size"])
    y = torch.randint(0, 10, (spec["batch"],))
    return model.to(device), x.to(device), y.to(device)


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing on the CPU."""
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
    if name.startswith("opacus"):
        return make_opacus(name, model, x, y)
    raise ValueError(name)


def make_opacus(name: str, model: nn.Module, x, y):
    """Opacus' per-sample gradient norms (per parameter) on (x, y); imported lazily."""
    from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
    from opacus.validators import ModuleValidator

    ce = nn.functional.cross_entropy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        m = ModuleValidator.fix(copy.deepcopy(model))
    m.to(x.device)  # the GroupNorm/attention replacements are built on the CPU
    m.train()  # Opacus records activations in training mode only; dropout is switched off
    for module in m.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    if name == "opacus plain":

        def run_plain():
            m.zero_grad(set_to_none=True)
            ce(m(x), y).backward()

        return run_plain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "opacus gsm":
            wrapped = GradSampleModule(m, loss_reduction="sum", strict=False)
        else:
            wrapped = GradSampleModuleFastGradientClipping(
                m, loss_reduction="sum", strict=False, use_ghost_clipping=True
            )
    params = [p for p in wrapped.parameters() if p.requires_grad]

    def run():
        wrapped.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hooks firing on an input without grad
            ce(wrapped(x), y, reduction="sum").backward()
        if name == "opacus gsm":
            norms = [p.grad_sample.flatten(1).square().sum(1) for p in params]
            for p in params:
                p.grad_sample = None
        else:
            norms = [p._norm_sample.square() for p in params]
            wrapped.get_norm_sample()
        return norms

    return run


def have_opacus() -> bool:
    try:
        import opacus  # noqa: F401
    except ImportError:
        return False
    return True


def setup_overhead(repeats: int, device: str = "cpu") -> dict[str, float]:
    """fisherlab.profile end to end (setup included) vs the same plain passes: vgg16_bn.

    Returns the median seconds of "plain x4", "profile" and "setup". On a GPU the
    plain passes take inputs already on the device; ``profile`` moves each batch.
    """
    from torch.utils.data import TensorDataset

    import fisherlab
    from fisherlab.fisher import FisherEngine

    torch.manual_seed(0)
    model = build("vgg16_bn", 64).eval()
    x = torch.randn(128, 1, 64, 64)
    y = torch.randint(0, 10, (128,))
    data = TensorDataset(x, y)
    plain = copy.deepcopy(model).to(device)
    xd, yd = x.to(device), y.to(device)
    ce = nn.functional.cross_entropy

    def run_plain():
        for s in range(0, 128, 32):
            plain.zero_grad(set_to_none=True)
            ce(plain(xd[s : s + 32]), yd[s : s + 32]).backward()

    def run_profile():
        fisherlab.profile(model, data, batch_size=32, device=device)

    def run_setup():  # what profile() does before its first batch's own pass
        engine = FisherEngine(model, device=device)
        engine.fast_model(xd[:32])

    runs = {"plain x4": run_plain, "profile": run_profile, "setup": run_setup}
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, run in runs.items():
            sync(device)
            t = CLOCK()
            run()
            sync(device)
            times[k].append(CLOCK() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\nsetup overhead: vgg16_bn 64x64, 4 batches of 32, fisherlab.profile end to end")
    print(
        f"plain x4 {med['plain x4']:.2f}s  profile {med['profile']:.2f}s  "
        f"ratio {med['profile'] / med['plain x4']:.2f}  setup {med['setup']:.2f}s  "
        f"setup share {med['setup'] / med['profile']:.1%}"
    )
    return med


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


def write_json(path: str, record: dict) -> None:
    """Write ``record`` to ``path`` atomically (a temporary file in its folder, then a rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fisher_speed.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=list(CASES), nargs="+")
    parser.add_argument("--methods", choices=METHODS, nargs="+", help="default: all")
    parser.add_argument("--skip-loop", action="store_true", help="skip the slow per-sample loop")
    parser.add_argument("--setup", action="store_true", help="only the setup-overhead run")
    parser.add_argument("--no-setup", action="store_true", help="skip the setup-overhead run")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if args.memory_child:
        print(json.dumps(peak_memory(*args.memory_child, device)))
        return
    chosen = args.methods or METHODS
    methods = [m for m in METHODS if m in chosen and not (args.skip_loop and m == "loop")]
    if "plain" not in methods:
        methods.insert(0, "plain")
    where = (
        torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else f"{torch.get_num_threads()} threads"
    )
    print(
        f"torch {torch.__version__}, {device}: {where}, "
        f"{args.clock} clock, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    record: dict = {
        "torch": torch.__version__,
        "device": device,
        "where": where,
        "clock": args.clock,
        "cases": {},
    }
    if any(m.startswith("opacus") for m in methods) and not have_opacus():
        methods = [m for m in methods if not m.startswith("opacus")]
        print("opacus is not installed: its rows are absent (pip install -e .[bench])")
    if args.setup:
        record["setup"] = setup_overhead(args.repeats, device)
        if args.json:
            write_json(args.json, record)
        return
    for arch in args.only or CASES:
        model, x, y = make_case(arch, device)
        runs, failed = {}, {}
        for m in methods:
            try:
                runs[m] = make_method(m, model, x, y)
                runs[m]()  # warm-up (and lazy preparation)
                sync(device)  # a failure of queued GPU work belongs to this method
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run this model
                runs.pop(m, None)
                failed[m] = " ".join(str(exc).split())[:70]
        times: dict[str, list[float]] = {m: [] for m in runs}
        for _ in range(args.repeats):
            for m, run in runs.items():
                sync(device)
                t = CLOCK()
                run()
                sync(device)
                times[m].append(CLOCK() - t)
        med = {m: statistics.median(v) for m, v in times.items()}
        mem = {m: float("nan") for m in runs}
        for m in [] if args.no_memory else runs:
            threads = ["--threads", str(args.threads)] if args.threads else []
            out = subprocess.run(
                [sys.executable, __file__, *threads, "--device", device, "--memory-child", arch, m],
                capture_output=True,
                text=True,
                check=True,
            )
            mem[m] = json.loads(out.stdout.strip().splitlines()[-1])
        spec = CASES[arch]
        ratio = {}
        print(f"\n{arch}, {spec['image_size']}x{spec['image_size']}, batch {spec['batch']}")
        print(f"{'method':<16} {'median':>9} {'ratio':>6} {'peak MiB':>9} {'mem ratio':>9}")
        for m in methods:
            if m in failed:
                print(f"{m:<16} failed: {failed[m]}")
                continue
            anchor = med.get("opacus plain", 0.0) if m.startswith("opacus") else med["plain"]
            if anchor:
                ratio[m] = med[m] / anchor
            print(
                f"{m:<16} {med[m] * 1e3:>7.1f}ms {med[m] / anchor if anchor else 0.0:>6.2f} "
                f"{mem[m]:>9.0f} {mem[m] / max(mem['plain'], 1):>9.2f}"
            )
        record["cases"][arch] = {
            "image_size": spec["image_size"],
            "batch": spec["batch"],
            "seconds": {m: med[m] for m in ratio},
            "ratio": ratio,
            "peak_mib": {m: None if math.isnan(mem[m]) else mem[m] for m in ratio},
            "failed": failed,
        }
    if not args.no_setup:
        record["setup"] = setup_overhead(args.repeats, device)
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()

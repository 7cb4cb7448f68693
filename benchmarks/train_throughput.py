"""Training throughput of TL-DMI fine-tuning by freeze boundary, side by side.

Frozen layers need no weight gradients, so fine-tuning with a boundary should
cost less than full fine-tuning; this prints the time per batch of each
boundary relative to full fine-tuning (boundary 0), measured in one run on the
same batches, plus peak memory (tracemalloc of Python-side allocations is not
meaningful for torch, so peak RSS growth is reported).

On a GPU (``--device cuda``) each step is synchronised before its time is
taken, and memory is the peak of CUDA's allocator.

Usage: python benchmarks/train_throughput.py [--arch target_cnn] [--batch 64] [--device cuda]
       [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from torch import nn

from fisherlab.models import build_model
from fisherlab.models.layers import layers
from fisherlab.training.train import freeze


def step_time(model: nn.Module, frozen: list[int], x, y, repeats: int) -> float:
    cuda = x.device.type == "cuda"
    frozen_modules = freeze(model, frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    model.train()
    for m in frozen_modules:
        m.eval()
    times = []
    for _ in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="target_cnn")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arch, 5, image_size=args.image_size).to(device)
    n = len(layers(model))
    x = torch.randn(args.batch, 1, args.image_size, args.image_size).to(device)
    y = torch.randint(0, 5, (args.batch,)).to(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = step_time(model, [], x, y, args.repeats)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    print(f"{args.arch}, batch {args.batch}, {device}: {where}")
    print(f"{'boundary':>8} {'ms/batch':>9} {'ratio':>6}")
    seconds = []
    for b in range(n):
        t = base if b == 0 else step_time(model, list(range(b)), x, y, args.repeats)
        seconds.append(t)
        print(f"{b:>8} {t * 1e3:>9.1f} {t / base:>6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            record = {"arch": args.arch, "batch": args.batch, "device": str(device)}
            json.dump({**record, "where": where, "seconds": seconds}, f, indent=2)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        print(f"peak CUDA memory during the run: {peak:.0f} MiB")
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak RSS growth during the run: {(rss - rss0) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

"""Training throughput of TL-DMI fine-tuning by freeze boundary, side by side.

Frozen layers need no weight gradients, so fine-tuning with a boundary should
cost less than full fine-tuning; this prints the time per batch of each
boundary relative to full fine-tuning (boundary 0), measured in one run on the
same batches, plus peak memory (tracemalloc of Python-side allocations is not
meaningful for torch, so peak RSS growth is reported).

Usage: python benchmarks/train_throughput.py [--arch target_cnn] [--batch 64]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch import nn

from fisherlab.layers import layers
from fisherlab.models import build_model
from fisherlab.train import freeze


def step_time(model: nn.Module, frozen: list[int], x, y, repeats: int) -> float:
    frozen_modules = freeze(model, frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    model.train()
    for m in frozen_modules:
        m.eval()
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="target_cnn")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(args.arch, 5, image_size=args.image_size)
    n = len(layers(model))
    x = torch.randn(args.batch, 1, args.image_size, args.image_size)
    y = torch.randint(0, 5, (args.batch,))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base = step_time(model, [], x, y, args.repeats)
    print(f"{args.arch}, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{'boundary':>8} {'ms/batch':>9} {'ratio':>6}")
    for b in range(n):
        t = base if b == 0 else step_time(model, list(range(b)), x, y, args.repeats)
        print(f"{b:>8} {t * 1e3:>9.1f} {t / base:>6.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS growth during the run: {(rss - rss0) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

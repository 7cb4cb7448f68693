"""Peak memory growth of a call: resident memory sampled every millisecond, or CUDA's allocator."""

from __future__ import annotations

import gc
import resource
import threading
import time
from collections.abc import Callable


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_growth_mib(run: Callable[[], object], device: str = "cpu") -> float:
    """Peak resident set during ``run()`` minus the resident set just before it, in MiB.

    On a CUDA device: the peak of CUDA's allocator during ``run()`` minus
    what was allocated just before it.
    """
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = rss_bytes()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return (peak - base) / 2**20

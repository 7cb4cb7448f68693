"""Peak resident-memory growth of a call, sampled every millisecond by a thread."""

from __future__ import annotations

import gc
import resource
import threading
import time
from collections.abc import Callable


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_growth_mib(run: Callable[[], object]) -> float:
    """Peak resident set during ``run()`` minus the resident set just before it, in MiB."""
    gc.collect()
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

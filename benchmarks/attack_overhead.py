"""Overhead of recording the Fisher at every attack iteration, side by side.

Runs the same attack (same target, GAN prior, seed; GMI by default) with and
without ``fisher_every=1``, alternating, and prints the median wall time of
each and their ratio, plus peak resident-memory growth of each in a
subprocess. Target on the 2-core CPU: ratio <= 1.5 (GMI's bound; the other
attacks are held to the same).

Usage: python benchmarks/attack_overhead.py TARGET.pt GAN.pt [--iterations 50] [--device cuda]
    [--attack lomma-gmi --surrogates S1.pt S2.pt ...] [--attack plgmi] (GAN.pt of the attack's kind)
(on a GPU, memory is the peak of CUDA's allocator; --amp bf16|fp16 runs the prior in it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from fisherlab.attacks import attack


def one_run(
    target: str,
    gan: str,
    iterations: int,
    every: int,
    per_class: int,
    device: str = "cpu",
    amp: str | None = None,
    kind: str = "gmi",
    surrogates: tuple[str, ...] = (),
) -> float:
    start = time.perf_counter()
    attack(
        target,
        gan,
        attack=kind,
        surrogates=surrogates,
        classes=(0, 1, 2, 3, 4),
        per_class=per_class,
        iterations=iterations,
        restarts=1,
        seed=0,
        fisher_every=every,
        device=device,
        amp=amp,
    )  # its result is read back to the CPU: the time includes the device's work
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("gan")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--attack", default="gmi", help="the attack (GAN.pt of its kind)")
    parser.add_argument("--surrogates", nargs="*", default=[], help="LOMMA's surrogates")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision (CUDA)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    where = {
        "device": args.device,
        "amp": args.amp,
        "kind": args.attack,
        "surrogates": tuple(args.surrogates),
    }
    if args.memory_child is not None:
        from _memory import peak_growth_mib

        one_run(args.target, args.gan, 2, args.memory_child, args.per_class, **where)
        print(
            json.dumps(
                peak_growth_mib(
                    lambda: one_run(
                        args.target,
                        args.gan,
                        args.iterations,
                        args.memory_child,
                        args.per_class,
                        **where,
                    ),
                    args.device,
                )
            )
        )
        return
    times: dict[int, list[float]] = {0: [], 1: []}
    one_run(args.target, args.gan, 2, 1, args.per_class, **where)  # warm-up
    for _ in range(args.repeats):
        for every in (0, 1):
            times[every].append(
                one_run(args.target, args.gan, args.iterations, every, args.per_class, **where)
            )
    mem = {0: float("nan"), 1: float("nan")}
    for every in [] if args.no_memory else (0, 1):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                args.target,
                args.gan,
                "--iterations",
                str(args.iterations),
                "--per-class",
                str(args.per_class),
                "--memory-child",
                str(every),
                "--device",
                args.device,
                "--attack",
                args.attack,
                *(["--surrogates", *args.surrogates] if args.surrogates else []),
                *(["--amp", args.amp] if args.amp else []),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        mem[every] = json.loads(out.stdout.strip().splitlines()[-1])
    plain, recorded = statistics.median(times[0]), statistics.median(times[1])
    n = 5 * args.per_class
    memory = "peak CUDA memory" if args.device.startswith("cuda") else "peak RSS growth"
    amp = f", amp {args.amp}" if args.amp else ""
    print(
        f"{args.attack}, {n} latents, {args.iterations} iterations, median of {args.repeats}, "
        f"{args.device}{amp}"
    )
    print(f"without Fisher      {plain:7.2f} s   {memory} {mem[0]:6.0f} MiB")
    print(f"Fisher every step   {recorded:7.2f} s   {memory} {mem[1]:6.0f} MiB")
    print(f"ratio               {recorded / plain:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "attack": args.attack,
                    "latents": n,
                    "iterations": args.iterations,
                    "device": args.device,
                    "amp": args.amp,
                    "seconds": {"plain": plain, "recorded": recorded},
                    "ratio": recorded / plain,
                    "peak_mib": {"plain": mem[0], "recorded": mem[1]},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()

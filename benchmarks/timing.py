"""Timing shared by the benchmarks: the best wall time of a few runs (the least disturbed by other load)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def best_of(run: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def best_interleaved(runs: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Best wall time of each run over `rounds` rounds in which every run takes one turn, after one untimed
    warm-up turn each: a slow phase of the machine, or a cold cache, then costs all of them alike."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = min(best[name], best_of(run, 1))
    return best


def pin_to_one_core() -> str:
    """Pins this process (and the threads and subprocesses it starts) to its first allowed core: per-core figures
    stay per core even where a library spreads work over threads (sentencepiece's encode(list) does)."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"

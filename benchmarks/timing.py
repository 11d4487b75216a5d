"""What every benchmark here measures with: the median of repeated runs after a warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(work: Callable[[], object], rounds: int) -> float:
    """Median seconds of ``rounds`` runs (after one warm-up, so caches and plans are hot for both sides)."""
    work()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)

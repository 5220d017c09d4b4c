"""Shared timing helper of the benchmark scripts (imported from their folder)."""

import time


def best(fn, repeat, warmup=True):
    """The shortest of ``repeat`` timed calls of ``fn`` (after one untimed call when ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)

"""Shared timing and memory helpers of the benchmark scripts (imported from their folder)."""

import resource
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


def peak_rss_bytes():
    """This process's peak resident set size in bytes: ``VmHWM`` (Linux), else ``ru_maxrss``. A process's
    ``ru_maxrss`` keeps the peak of the process it was started from (a benchmark launched by a large Python process
    would report that one's), ``VmHWM`` only its own."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

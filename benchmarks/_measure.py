"""Shared measurement helpers of the benchmark scripts: a clock per device and the process's memory."""
from __future__ import annotations

import os
import time

import torch


def clock(device: str) -> float:
    """CPU seconds of this process on the CPU (on one thread its compute time, robust to other jobs);
    on a GPU, wall-clock seconds after a synchronisation."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def rss_mb() -> float:
    """The current resident set of this process (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The peak resident set of this process (VmHWM, MB; unlike ru_maxrss not inherited from the parent at fork)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2**10

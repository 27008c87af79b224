"""Data loaders for tests/test_study_executors.py, importable by worker processes (a test module's own
functions are not: workers do not import test modules)."""
import os
import signal
from pathlib import Path

from losstools import data

KILL_FLAG = "LOSSTOOLS_TEST_KILL_FLAG"  # environment variable: a file whose existence arms moons_killing_once


def moons_killing_once(seed: int) -> data.Dataset:
    """``data.moons(seed=seed)``; but the first process to load seed 1 while the file named by $KILL_FLAG
    exists deletes it and SIGKILLs itself (a worker dying in the middle of the grid)."""
    flag = os.environ.get(KILL_FLAG)
    if seed == 1 and flag:
        try:
            Path(flag).unlink()
        except FileNotFoundError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return data.moons(seed=seed)


def moons_without_seed1(seed: int) -> data.Dataset:
    """``data.moons(seed=seed)``, except that seed 1 raises (a run failing on a worker)."""
    if seed == 1:
        raise ValueError("no data for seed 1 (a failure injected by the test)")
    return data.moons(seed=seed)


moons_killing_once.name = moons_without_seed1.name = "moons"  # the data name in settings.json: resumes a "moons" study

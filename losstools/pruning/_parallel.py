"""The pruning study on an executor: a local process pool or a Dask cluster, the driver alone writing.

Each seed's base network is trained once on a worker (seeds in parallel); its runs are submitted as soon as
it is saved, longest first. The tasks receive what they need (settings, the data's name or importable
loader, the base network's weights) and return a record; only the driver touches the study's folder, appending
each record under the existing lock as its run completes. Workers run on one torch thread; with
``device="cuda"`` and several GPUs, worker i uses ``cuda:i % n``.
"""
from __future__ import annotations

import multiprocessing
import pickle
import signal
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.std import tqdm as tqdm_std

from ..data import Dataset
from ._study import (
    RECORDS,
    _append_record,
    _write_atomic,
    loader,
    make_model,
    metrics,
    run_one,
    train_base,
    training_message,
)

_WORKER: dict = {"data": (None, None)}  # the data set this worker process loaded last


class StudyIncomplete(RuntimeError):
    """Some runs of a study on an executor did not finish; the finished ones are recorded and a rerun
    of the same study does only the others. ``failures`` maps each failed run's (or seed's) key to its error."""

    def __init__(self, message: str, failures: dict):
        super().__init__(message)
        self.failures = failures


def check_shippable(data) -> None:
    """Refuse data that worker processes cannot receive: a function they could not import (a lambda, a local
    function), before anything is written."""
    if isinstance(data, (str, Dataset)):
        return
    name = getattr(data, "__qualname__", "")
    kind = "a lambda" if "<lambda>" in name else "a local function" if "<locals>" in name else None
    if kind is None:
        try:
            pickle.dumps(data)
        except Exception as err:  # noqa: BLE001 - any pickling failure means the same thing here
            kind = f"not importable ({err})"
    if kind:
        raise ValueError(f"data is {kind}, which worker processes cannot import; with an executor, pass a data set "
                         "name, a Dataset, or a function defined at the top level of an importable module")


def init_worker() -> None:
    """ProcessPoolExecutor initializer: Ctrl-C is the driver's to handle; one torch thread; tqdm's lock a thread
    lock (its default, a multiprocessing lock, is reported leaked when a worker is stopped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    tqdm_std.set_lock(threading.RLock())


def local_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` fresh (spawned) worker processes, each on one torch thread."""
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker)


def stop(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers now, failing its pending tasks (a run in progress is lost, and redone on resuming)."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((pool._processes or {}).values()):  # before 3.14 only the private table reaches them
        process.terminate()
    pool.shutdown()  # returns once the pool has seen its workers die and failed what was pending


@contextmanager
def executor_for(jobs: int, scheduler: str | None) -> Iterator[Executor | None]:
    """The command line's executor: a Dask cluster's at ``scheduler``, ``jobs`` local processes, or None
    (``jobs == 1``: the study runs in this process)."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--scheduler needs Dask's distributed: pip install 'losstools[cluster]'") from None
        with Client(scheduler, timeout="30s") as client:
            yield client.get_executor()
    elif jobs > 1:
        pool = local_pool(jobs)
        try:
            yield pool
        except BaseException:
            stop(pool)
            raise
        pool.shutdown()
    else:
        yield None


def worker_device(device: str) -> torch.device:
    """``device``, or for ``"cuda"`` on a worker that sees several GPUs, ``cuda:<worker index> % <GPUs>``."""
    device = torch.device(device)
    count = torch.cuda.device_count() if device.type == "cuda" and device.index is None else 0
    return torch.device("cuda", _worker_index() % count) if count > 1 else device


def _worker_index() -> int:
    """This worker's number: a Dask worker's name if it is one (a LocalCluster's: 0, 1, ...), else the
    number multiprocessing gave this process (1, 2, ... for a pool's workers), else 0."""
    try:
        from distributed import get_worker

        name = str(get_worker().name)
        return int(name) if name.isdigit() else zlib.crc32(name.encode())
    except (ImportError, ValueError):
        identity = multiprocessing.current_process()._identity  # (n,) in the n-th child of the driver
        return identity[-1] - 1 if identity else 0


def _dataset(data, model: str, seed: int, device: torch.device) -> Dataset:
    """``data`` for ``seed`` on ``device``, loaded once per worker (the last one is kept)."""
    if isinstance(data, Dataset):
        return data.to(device)
    key = (pickle.dumps(data), model, seed, str(device))
    if _WORKER["data"][0] != key:
        _WORKER["data"] = (key, loader(data, model)(seed).to(device))
    return _WORKER["data"][1]


def base_task(settings: dict, data, seed: int, device: str) -> dict:
    """On a worker: train seed's base network; its weights (on the CPU)."""
    torch.set_num_threads(1)
    device = worker_device(device)
    net = train_base(settings, _dataset(data, settings["model"], seed, device), seed, nn.CrossEntropyLoss(), device)
    return {k: v.cpu() for k, v in net.state_dict().items()}


def run_task(settings: dict, data, key: tuple, state: dict, device: str) -> dict:
    """On a worker: one run of the grid from the base network's weights ``state``; its record."""
    torch.set_num_threads(1)
    device = worker_device(device)
    ds = _dataset(data, settings["model"], key[0], device)
    net = make_model(settings, ds, key[0]).to(device)
    net.load_state_dict(state)
    loss_fn = nn.CrossEntropyLoss()
    return run_one(settings, ds, net.eval(), metrics(net, loss_fn, ds), key, loss_fn)


def describe(key) -> str:
    if isinstance(key, int):
        return f"the base network of seed {key}"
    seed, criterion, steps, reg = key
    return f"run seed={seed} {criterion} steps={steps} reg={reg:g}"


def run_grid(executor: Executor, out: Path, settings: dict, data, todo: list[tuple], device: torch.device,
             log: Callable[[str], None]) -> list[dict]:
    """The runs ``todo`` on ``executor``; each record is appended to ``out`` as its run completes.

    Raises :class:`StudyIncomplete` after recording every run that finished if some raised, or if the
    executor broke (a killed process in a ``ProcessPoolExecutor`` ends the whole pool). Ctrl-C cancels
    the pending runs (and stops a ``ProcessPoolExecutor``'s workers at once: their runs are lost). Either way
    the study resumes from what is recorded.
    """
    progress, settings = settings["progress"], {**settings, "progress": False}
    runs = defaultdict(list)
    for key in sorted(todo, key=lambda k: -k[2]):  # longest (most steps) first: a shorter makespan
        runs[key[0]].append(key)
    pending: dict[Future, tuple | int] = {}
    failures: dict = {}
    records: list[dict] = []
    name = settings["data"]

    def submit(task, *args, key) -> None:
        try:
            pending[executor.submit(task, settings, data, *args, str(device))] = key
        except BrokenExecutor as err:
            failures.setdefault("executor", err)

    for seed in runs:
        path = out / f"base_seed{seed}.pt"
        if not path.exists():
            log(training_message(settings, name, seed))
            submit(base_task, seed, key=seed)
    for seed in runs:
        path = out / f"base_seed{seed}.pt"
        if path.exists():
            state = torch.load(path, map_location="cpu")
            for key in runs[seed]:
                submit(run_task, key, state, key=key)

    bar = tqdm(total=len(todo), desc="pruning study", disable=not progress)
    try:
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    result = future.result()
                except BrokenExecutor as err:
                    failures.setdefault("executor", err)
                    continue
                except Exception as err:  # noqa: BLE001 - a run's error is reported, the others go on
                    failures[key] = err
                    log(f"{describe(key)} failed on a worker: {type(err).__name__}: {err}")
                    continue
                if isinstance(key, int):  # a base network: save it, then its runs fan out
                    _write_atomic(out / f"base_seed{key}.pt", partial(torch.save, result))
                    for run in runs[key]:
                        submit(run_task, run, result, key=run)
                else:
                    _append_record(out / RECORDS, result)
                    records.append(result)
                    bar.update()
                    bar.set_postfix_str(describe(key)[4:])
    except KeyboardInterrupt:
        if isinstance(executor, ProcessPoolExecutor):
            stop(executor)  # cancelling its futures, then stopping it, trips Python 3.11's pool (InvalidStateError)
        for future in pending:
            future.cancel()
        raise
    finally:
        bar.close()
    if failures:
        raise StudyIncomplete(_incomplete(failures, len(records), len(todo), out), failures)
    return records


def _incomplete(failures: dict, recorded: int, total: int, out: Path) -> str:
    missing = f"{recorded} of {total} runs recorded in {out / RECORDS}"
    if "executor" in failures:
        err = failures["executor"]
        return (f"a worker process died ({type(err).__name__}: killed, or out of memory?); {missing}; "
                "run the same study again to do the rest")
    first, err = next(iter(failures.items()))
    return (f"{len(failures)} task(s) failed, first {describe(first)}: {type(err).__name__}: {err}; {missing}; "
            "fix the cause and run the same study again to do only the missing runs")

"""The pruning study on executors (issue 20) and the prune command's answers to bad options (issue 19).

A local process pool and a Dask LocalCluster give the serial study's records; a killed worker loses only what
was running, and the rerun completes the grid; a run failing on a worker is reported with its key while the
others are recorded; a lambda as data is refused before anything is written. Tiny grids on moons (seconds).
"""
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from losstools import pruning
from losstools.__main__ import main
from losstools.pruning import StudyIncomplete
from losstools.pruning._parallel import local_pool

from . import study_workers

STUDY = {"data": "moons", "criteria": ("mp", "lm", "qm"), "steps": (1, 3), "regs": (0.0, 1e-2), "seeds": (0, 1),
         "sparsity": 0.6, "hidden": (8,), "train_epochs": 5, "finetune_epochs": 2, "samples": 64, "progress": False,
         "log": lambda _: None}
RUNS = 2 * (1 + 2 * 2 * 2)


def comparable(records: list[dict]) -> list[str]:
    """Each record without its timings, as JSON (NaN compares equal to NaN there), in grid order."""
    return [json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in records]


def recorded_once(out: Path) -> list[dict]:
    """The records on disk, checked to hold each run exactly once."""
    records = pruning.load_records(out)
    keys = [pruning._study.run_key(r) for r in records]
    assert len(keys) == len(set(keys)), "a run recorded twice"
    return records


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> list[dict]:
    return pruning.study(tmp_path_factory.mktemp("serial"), **STUDY)


def test_two_local_processes_give_the_serial_records(tmp_path, serial):
    with local_pool(2) as pool:
        records = pruning.study(tmp_path, **STUDY, executor=pool)
    assert len(serial) == RUNS and comparable(records) == comparable(serial)
    on_disk = {pruning._study.run_key(r): r for r in recorded_once(tmp_path)}
    assert comparable([on_disk[pruning._study.run_key(r)] for r in serial]) == comparable(serial)
    assert {r["seed"] for r in records} == {0, 1} and (tmp_path / "base_seed1.pt").exists()


def test_a_two_worker_dask_cluster_gives_the_serial_records(tmp_path, serial, capsys):
    distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed (the 'cluster' extra)")
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            records = pruning.study(tmp_path / "api", **STUDY, executor=client.get_executor())
        assert main([*TINY, "--out", str(tmp_path / "cli"), "--scheduler", cluster.scheduler_address]) == 0
    assert comparable(records) == comparable(serial)
    assert len(recorded_once(tmp_path / "api")) == RUNS
    assert len(recorded_once(tmp_path / "cli")) == 1 + 2 and "3 runs in" in capsys.readouterr().out


def test_cuda_workers_are_spread_over_the_gpus(monkeypatch):
    """--device cuda with several GPUs: worker i on cuda:i % n (checked without a GPU: a device is only a name)."""
    from losstools.pruning import _parallel

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    placed = []
    for index in range(5):
        monkeypatch.setattr(_parallel, "_worker_index", lambda index=index: index)
        placed.append(str(_parallel.worker_device("cuda")))
    assert placed == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert str(_parallel.worker_device("cuda:2")) == "cuda:2" and str(_parallel.worker_device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert str(_parallel.worker_device("cuda")) == "cuda"


def test_a_killed_worker_loses_only_unfinished_runs_and_the_rerun_completes_the_grid(tmp_path, serial, monkeypatch):
    study = {**STUDY, "data": study_workers.moons_killing_once}
    pruning.study(tmp_path, **{**study, "criteria": ("mp",)})  # both base networks, trained here
    flag = tmp_path / "kill-flag"
    flag.touch()
    monkeypatch.setenv(study_workers.KILL_FLAG, str(flag))  # the first worker to load seed 1 is SIGKILLed
    messages = []
    with local_pool(2) as pool, pytest.raises(StudyIncomplete, match="worker process died.*run the same study again"):
        pruning.study(tmp_path, **{**study, "log": messages.append}, executor=pool)
    assert not flag.exists()  # a worker did die
    assert 2 <= len(recorded_once(tmp_path)) < RUNS  # the MPs kept, the killed run (at least) lost
    with local_pool(2) as pool:
        records = pruning.study(tmp_path, **study, executor=pool)
    assert comparable(records) == comparable(serial)
    assert len(recorded_once(tmp_path)) == RUNS  # nothing lost, nothing twice


def test_a_run_failing_on_a_worker_is_reported_with_its_key_and_the_others_are_recorded(tmp_path, serial):
    pruning.study(tmp_path, **{**STUDY, "criteria": ("mp",)})  # both base networks: seed 1 fails in its runs
    messages = []
    study = {**STUDY, "data": study_workers.moons_without_seed1, "log": messages.append}
    with local_pool(2) as pool, pytest.raises(StudyIncomplete, match="8 task.s. failed.*seed=1.*no data for seed 1"):
        pruning.study(tmp_path, **study, executor=pool)
    failed = [m for m in messages if "failed on a worker" in m]
    assert len(failed) == 8 and all(m.startswith("run seed=1 ") and "ValueError" in m for m in failed)
    assert "run seed=1 qm steps=3 reg=0.01 failed" in " ".join(failed)
    records = recorded_once(tmp_path)
    assert sorted(pruning._study.run_key(r) for r in records) == sorted(
        [pruning._study.run_key(r) for r in serial if r["seed"] == 0] + [(1, "mp", 1, 0.0)])
    by_key = {pruning._study.run_key(r): r for r in records}
    assert comparable([by_key[pruning._study.run_key(r)] for r in serial if r["seed"] == 0]) == \
        comparable([r for r in serial if r["seed"] == 0])


def local_loader(seed):
    def load(seed):
        return study_workers.moons_without_seed1(seed)
    return load


@pytest.mark.parametrize("data, what", [(lambda seed: study_workers.data.moons(seed=seed), "a lambda"),
                                        (local_loader(0), "a local function")])
def test_data_workers_cannot_import_is_refused_before_any_side_effect(tmp_path, data, what):
    out, trained = tmp_path / "study", []
    with ThreadPoolExecutor(1) as executor, pytest.raises(ValueError, match=f"data is {what}.*top level"):
        pruning.study(out, **{**STUDY, "data": data, "log": trained.append}, executor=executor)
    assert not out.exists() and not trained


# ----------------------------------------------------------------------------- the prune command's answers

TINY = ["prune", "--data", "moons", "--criteria", "mp", "qm", "--steps", "1", "2", "--regs", "0", "--hidden", "8",
        "--epochs", "2", "--finetune-epochs", "1", "--samples", "64", "--no-progress"]


def one_usage_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("usage:") and "Traceback" not in err[1], err
    return err[1]


@pytest.mark.parametrize("options, message", [
    (["--sparsity", "1.5"], "sparsity (fraction of weights removed) must be a fraction in [0, 1), got 1.5"),
    (["--jobs", "0"], "argument --jobs: expected an integer >= 1, got '0'"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"], "give one of them"),
    (["--lr", "-1"], "lr (learning rate) must be > 0"),
    *[pytest.param([*jobs, "--device", "cuda"], "device 'cuda' cannot be used here", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="CUDA is available: --device cuda is not an error here"))
      for jobs in ([], ["--jobs", "2"])],
])
def test_bad_options_get_one_line_and_exit_status_2_before_any_side_effect(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit:
        main([*TINY, "--out", str(tmp_path / "out"), *options])
    assert exit.value.code == 2 and message in one_usage_error(capsys)
    assert not (tmp_path / "out").exists()


def test_other_settings_on_an_existing_out_name_the_setting_that_differs(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path), "--sparsity", "0.5"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main([*TINY, "--out", str(tmp_path), "--sparsity", "0.6", "--epochs", "3"])
    line = one_usage_error(capsys)
    assert exit.value.code == 2 and "sparsity 0.5 there, 0.6 now" in line and "train_epochs 2 there, 3 now" in line


def test_a_study_that_could_not_finish_exits_1_with_one_line(tmp_path, capsys, monkeypatch):
    from losstools.pruning import cli

    def incomplete(*args, **kwargs):
        raise StudyIncomplete("a worker process died (BrokenProcessPool); 3 of 9 runs recorded; run again", {})

    monkeypatch.setattr(cli, "study", incomplete)
    assert main([*TINY, "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: a worker process died (BrokenProcessPool); 3 of 9 runs recorded; run again"]


def test_ctrl_c_on_two_jobs_cancels_and_hints_to_rerun_and_the_rerun_resumes(tmp_path):
    """A real SIGINT to the command (not to its workers, which ignore it anyway) while its pool runs the grid."""
    command = [sys.executable, "-m", "losstools", *TINY, "--out", str(tmp_path), "--jobs", "2",
               "--criteria", "mp", "lm", "qm", "--steps", "1", "3", "8", "--regs", "0", "0.01", "0.1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(1200):  # until the first run is recorded (at most 60 s)
        if pruning.load_records(tmp_path) or process.poll() is not None:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted: what finished is saved; run the same command again to resume"
    assert "Traceback" not in err
    interrupted = len(recorded_once(tmp_path))
    assert 1 <= interrupted < 1 + 2 * 3 * 3
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {interrupted} of 19 runs already" in rerun.stdout
    assert len(recorded_once(tmp_path)) == 19

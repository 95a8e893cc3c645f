"""Worker processes killed from outside: recorded as ``worker_lost``, run again on --resume,
replaced when they die while starting, and never outliving the main process."""

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.processes import alive as _alive
from support.processes import wait_for

from proxmf_bench.cli import EXIT_INCOMPLETE, main
from proxmf_bench.results.analysis import failed_cells
from proxmf_bench.results.table import read_frame
from proxmf_bench.run.isolation import STARTUP_ATTEMPTS, classify_exit

LOST = str(Path(__file__).parent / "plugins" / "lost_workers.py")
DATASET = ["--datasets", "synthetic[m=24,n=18,rank=3]"]
HANG_GUARD = 120.0  # seconds: a process still there after this is stuck (what these tests catch)
_wait_for = functools.partial(wait_for, timeout=HANG_GUARD)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def _start(args, tmp_path, **env) -> subprocess.Popen:
    pids = tmp_path / "pids"
    pids.mkdir(exist_ok=True)
    environ = {**os.environ, "LOST_PIDS": str(pids), **env}
    environ.pop("PROXMF_BENCH_PLUGINS", None)
    return subprocess.Popen([sys.executable, "-m", "proxmf_bench.cli", "run", "--plugin", LOST, *args], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _pids(tmp_path, kind: str) -> list[int]:
    return [int(p.name.split("-")[1]) for p in (tmp_path / "pids").glob(f"{kind}-*")]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_worker_killed_from_outside_is_lost_and_runs_again_on_resume(sig, tmp_path):
    out = tmp_path / "run"
    proc = _start(["--solvers", "mu,waiting[seconds=0.02]", *DATASET, "--max-iter", "150", "--jobs", "1",
                   "--out", str(out)], tmp_path)
    pid = _wait_for(lambda: _pids(tmp_path, "cell"), "the cell to start")[0]
    os.kill(pid, sig)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == EXIT_INCOMPLETE, stderr
    assert "Traceback" not in stderr and f"run --resume {out}" in stderr
    last = pd.read_parquet(out / "results.parquet").groupby("solver").tail(1).set_index("solver")
    assert last.loc["mu", "stop_reason"] == "max_iter"
    lost = last.loc["waiting[seconds=0.02]"]
    assert lost.stop_reason == "worker_lost"
    assert f"killed by {sig.name} from outside" in lost.error
    assert (out / "meta.json").is_file()
    failed = failed_cells(pd.read_parquet(out / "results.parquet").assign(run="run"))  # the report's list
    assert list(failed.stop_reason) == ["worker_lost"]
    mu_file = next(p for p in (out / "cells").glob("*.parquet") if set(read_frame(p).solver) == {"mu"})
    kept = mu_file.read_bytes()

    assert main(["run", "--resume", str(out), "--plugin", LOST]) == 0
    last = pd.read_parquet(out / "results.parquet").groupby("solver").tail(1).set_index("solver")
    assert set(last.stop_reason) == {"max_iter"}
    assert last.loc["waiting[seconds=0.02]", "iteration"] == 150
    assert mu_file.read_bytes() == kept  # the finished cell was not run again


@pytest.mark.parametrize("backend", [["--jobs", "1"], ["--backend", "dask", "--jobs", "1"]], ids=["jobs", "dask"])
def test_worker_killed_while_starting_is_replaced(backend, tmp_path):
    if "dask" in backend:
        pytest.importorskip("distributed")
    hold = tmp_path / "hold"  # workers wait at start while this file exists
    hold.touch()
    out = tmp_path / "run"
    proc = _start(["--solvers", "mu", *DATASET, "--max-iter", "20", *backend, "--out", str(out)], tmp_path,
                  LOST_HOLD=str(hold))
    starting = _wait_for(lambda: [p for p in _pids(tmp_path, "import") if p != proc.pid], "a worker to start")
    os.kill(starting[0], signal.SIGKILL)
    hold.unlink()
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, stderr
    frame = pd.read_parquet(out / "results.parquet")
    assert list(frame.stop_reason.unique()) == ["max_iter"] and frame.iteration.max() == 20
    assert len([p for p in _pids(tmp_path, "import") if p != proc.pid]) == 2  # the killed one and its successor


@pytest.mark.parametrize("backend", [["--jobs", "1"], ["--backend", "dask", "--jobs", "1"]], ids=["jobs", "dask"])
def test_workers_that_keep_dying_while_starting_stop_the_run(backend, tmp_path):
    if "dask" in backend:
        pytest.importorskip("distributed")
    out = tmp_path / "run"
    proc = _start(["--solvers", "mu", *DATASET, "--max-iter", "20", *backend, "--out", str(out)], tmp_path,
                  LOST_DIE_AT_START="1")
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == EXIT_INCOMPLETE, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("proxmf-bench: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr
    assert f"{STARTUP_ATTEMPTS} worker processes in a row died while starting" in errors[0]
    assert "exited with status 7" in errors[0] and f"--resume {out}" in errors[0]
    assert (out / "results.parquet").is_file() and (out / "meta.json").is_file()
    assert len([p for p in _pids(tmp_path, "import") if p != proc.pid]) == STARTUP_ATTEMPTS


@linux_only
@pytest.mark.parametrize("backend", [["--jobs", "1"], ["--backend", "dask", "--jobs", "1"]], ids=["jobs", "dask"])
def test_workers_die_with_the_main_process_even_inside_a_gil_holding_call(backend, tmp_path):
    if "dask" in backend:
        pytest.importorskip("distributed")
    proc = _start(["--solvers", "gil_holder", *DATASET, "--max-iter", "3", *backend, "--out", str(tmp_path / "run")],
                  tmp_path)
    worker = _wait_for(lambda: _pids(tmp_path, "cell"), "the cell to start")[0]
    assert _alive(worker)
    proc.kill()
    proc.wait()
    _wait_for(lambda: not _alive(worker), "the worker process to end with the main process")
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize(("returncode", "stop_reason", "words"), [
    (-signal.SIGKILL, "worker_lost", "killed by SIGKILL from outside"),
    (-signal.SIGTERM, "worker_lost", "killed by SIGTERM from outside"),
    (-signal.SIGHUP, "worker_lost", "killed by SIGHUP"),
    (-signal.SIGSEGV, "error", "killed by SIGSEGV (segmentation fault)"),
    (-signal.SIGBUS, "error", "killed by SIGBUS (bus error)"),
    (-signal.SIGABRT, "error", "killed by SIGABRT (aborted)"),
    (-signal.SIGFPE, "error", "killed by SIGFPE"),
    (3, "error", "exited with status 3"),
    (None, "error", "stopped answering"),
])
def test_how_a_worker_ended_decides_the_stop_reason(returncode, stop_reason, words):
    reason, why = classify_exit(returncode)
    assert reason == stop_reason and words in why

"""Ctrl-C during a run keeps the finished cells and records the current one as interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from proxmf_bench.results.table import read_frame

BAD = str(Path(__file__).parent / "plugins" / "bad_things.py")


def test_sigint_keeps_finished_cells_and_exits_130(tmp_path):
    marker = tmp_path / "sleepy-started"
    out = tmp_path / "run"
    env = {**os.environ, "SLEEPY_MARKER": str(marker)}
    env.pop("PROXMF_BENCH_PLUGINS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxmf_bench.cli", "run", "--plugin", BAD, "--solvers", "mu,sleepy",
         "--datasets", "synthetic[m=30,n=20,rank=3]", "--max-iter", "20000", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    frame = pd.read_parquet(out / "results.parquet")
    last = frame.groupby("solver").tail(1).set_index("solver")
    assert last.loc["mu", "stop_reason"] == "max_iter" and last.loc["mu", "iteration"] == 20000
    assert last.loc["sleepy", "stop_reason"] == "interrupted"
    assert (out / "meta.json").is_file()


FAULTY = str(Path(__file__).parent / "plugins" / "faulty.py")


def _start(args, marker_env, marker, tmp_path):
    env = {**os.environ, marker_env: str(marker)}
    env.pop("PROXMF_BENCH_PLUGINS", None)
    proc = subprocess.Popen([sys.executable, "-m", "proxmf_bench.cli", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    return proc


def test_sigint_with_jobs_then_resume_completes_the_grid(tmp_path):
    from proxmf_bench.cli import main

    out = tmp_path / "run"
    proc = _start(["--plugin", BAD, "--solvers", "mu,sleepy", "--datasets", "synthetic[m=30,n=20,rank=3]",
                   "--seeds", "2", "--max-time", "0.5", "--jobs", "2", "--out", str(out)],
                  "SLEEPY_MARKER", tmp_path / "sleepy-started", tmp_path)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and f"--resume {out}" in stderr
    frame = pd.read_parquet(out / "results.parquet")
    stops = frame.groupby(["solver", "seed"]).stop_reason.last()
    assert "interrupted" in set(stops)
    kept = {p: p.read_bytes() for p in (out / "cells").glob("*.parquet")
            if "interrupted" not in set(read_frame(p).stop_reason)}
    finished_before = set(stops[stops != "interrupted"].index)
    assert len(kept) == len(finished_before)

    assert main(["run", "--resume", str(out), "--plugin", BAD]) == 0  # the grid comes from grid.json
    final = pd.read_parquet(out / "results.parquet")
    stops = final.groupby(["solver", "seed"]).stop_reason.last()
    assert len(stops) == 4 and "interrupted" not in set(stops)
    assert set(stops.loc["sleepy"]) == {"max_time"}
    assert finished_before <= set(stops.index)
    for path, data in kept.items():  # cells finished before the interrupt were not run again
        assert path.read_bytes() == data


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    proc = _start(["--plugin", BAD, "--solvers", "mu,sleepy", "--datasets", "synthetic[m=30,n=20,rank=3]",
                   "--max-iter", "20000", "--out", str(out)], "SLEEPY_MARKER", tmp_path / "marker", tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    last = pd.read_parquet(out / "results.parquet").groupby("solver").tail(1).set_index("solver")
    assert last.loc["mu", "stop_reason"] == "max_iter"
    assert last.loc["sleepy", "stop_reason"] == "interrupted"


def test_second_ctrl_c_exits_at_once(tmp_path):
    out = tmp_path / "run"
    # ``stubborn`` swallows the first Ctrl-C and keeps going: only the second one stops it.
    proc = _start(["--plugin", FAULTY, "--solvers", "mu,stubborn", "--datasets", "synthetic[m=30,n=20,rank=3]",
                   "--max-iter", "50", "--out", str(out)], "FAULTY_MARKER", tmp_path / "marker", tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # still held by the stubborn solver
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "second SIGINT: exiting now" in stderr and f"--resume {out}" in stderr
    assert "Traceback" not in stderr
    assert len(list((out / "cells").glob("*.parquet"))) == 1  # mu finished before and is kept

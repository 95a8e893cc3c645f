"""Ctrl-C during a run keeps the finished cells and records the current one as interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

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

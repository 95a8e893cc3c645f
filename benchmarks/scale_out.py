"""Acceptance figures for scale-out and resuming: cells lost, content identity, throughput.

Run ``python benchmarks/scale_out.py`` (``--quick`` for a 48-cell smoke). It runs one grid
of small problems (default 240 cells: 4 MU variants x 3 noise levels x 2 dtypes x 10 seeds,
30 iterations each on 40 x 30 rank 3; ``--shape 500x400x10 --max-iter 200`` for cells that
take a while) through the ``proxmf-bench`` command line, 1 torch thread per cell:

1. serially in one process (the reference table);
2. with ``--jobs 2`` and through a dask ``LocalCluster`` (2 single-threaded worker processes
   on TCP loopback, reached with ``--scheduler``), uninterrupted: cells per minute;
3. with ``--jobs 2`` and with dask again, each stopped midway by SIGINT (and ``--jobs 2``
   once by SIGKILL, which leaves no chance to write anything), then ``--resume``d.

For each interrupted run it reports the cells lost (a cell finished before the stop whose
file changed or vanished, or a grid cell missing at the end: target 0) and whether the final
table equals the serial one apart from timings and run id. Throughput is wall time of the
whole command, start-up included, on this machine: compare the modes side by side only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOLVERS = "mu[eps=[1e-12,1e-10,1e-8,1e-6]]"


def grid_args(shape: str, seeds: int, max_iter: int) -> list[str]:
    m, n, rank = shape.split("x")
    datasets = f"synthetic[m={m},n={n},rank={rank},noise=[0.0,0.01,0.05]]"
    return ["--solvers", SOLVERS, "--datasets", datasets, "--dtypes", "float32,float64",
            "--seeds", str(seeds), "--max-iter", str(max_iter), "--threads", "1"]


def cli(args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PROXMF_BENCH_PLUGINS"}
    return subprocess.Popen([sys.executable, "-m", "proxmf_bench.cli", "run", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed_run(args: list[str]) -> float:
    start = time.perf_counter()
    proc = cli(args)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"proxmf-bench {' '.join(args)} failed: {err}")
    return time.perf_counter() - start


def cell_files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run_dir / "cells").glob("*.parquet")}


def interrupted_then_resumed(args: list[str], run_dir: Path, n_cells: int, stop_at: float, sig: int) -> dict:
    """Stop a run with ``sig`` once ``stop_at`` of its cells are on disk, then resume it."""
    from proxmf_bench.results.table import read_frame

    proc = cli([*args, "--out", str(run_dir)])
    while len(list((run_dir / "cells").glob("*.parquet"))) < stop_at * n_cells and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate()
    before = {name: data for name, data in cell_files(run_dir).items()
              if "interrupted" not in set(read_frame(run_dir / "cells" / name).stop_reason)}
    resumed = time.perf_counter()
    timed_run([*args, "--resume", str(run_dir)])
    resumed = time.perf_counter() - resumed
    after = cell_files(run_dir)
    lost = sum(1 for name, data in before.items() if after.get(name) != data)
    return {"signal": signal.Signals(sig).name, "exit_status": proc.returncode, "finished_before_stop": len(before),
            "cells_lost": lost, "cells_at_end": len(after), "resume_s": resumed,
            "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else []}


def same_content(run_dir: Path, reference: Path) -> bool:
    import pandas as pd

    from proxmf_bench.results.table import comparable, load_results

    try:
        pd.testing.assert_frame_equal(comparable(load_results(run_dir)), comparable(load_results(reference)))
    except AssertionError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 cells instead of 240")
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--shape", default="40x30x3", help="m x n x rank of the synthetic problems")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    from dask.distributed import LocalCluster

    seeds = 2 if args.quick else 10
    n_cells = 4 * 3 * 2 * seeds
    base = grid_args(args.shape, seeds, args.max_iter)
    work = Path(tempfile.mkdtemp(prefix="proxmf-scale-out-"))
    figures: dict = {"cells": n_cells, "shape": args.shape, "max_iter": args.max_iter, "cpus": os.cpu_count(),
                     "modes": {}}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        modes = {
            "serial": [],
            "jobs2": ["--jobs", "2"],
            "dask2": ["--backend", "dask", "--scheduler", cluster.scheduler_address],
        }
        for name, extra in modes.items():
            wall = timed_run([*base, *extra, "--out", str(work / name)])
            figures["modes"][name] = {"wall_s": wall, "cells_per_min": 60 * n_cells / wall,
                                      "same_as_serial": same_content(work / name, work / "serial")}
            print(f"{name:>7}: {n_cells} cells in {wall:6.1f} s = {60 * n_cells / wall:7.1f} cells/min, "
                  f"same content as serial: {figures['modes'][name]['same_as_serial']}", flush=True)
        figures["interrupted"] = {}
        for name, extra, sig in (("jobs2", modes["jobs2"], signal.SIGINT), ("dask2", modes["dask2"], signal.SIGINT),
                                 ("jobs2-kill", modes["jobs2"], signal.SIGKILL)):
            run_dir = work / f"stopped-{name}"
            outcome = interrupted_then_resumed([*base, *extra], run_dir, n_cells, 0.4, sig)
            outcome["same_as_serial"] = same_content(run_dir, work / "serial")
            figures["interrupted"][name] = outcome
            print(f"{name:>10} stopped by {outcome['signal']} (exit {outcome['exit_status']}) after "
                  f"{outcome['finished_before_stop']} cells, resumed in {outcome['resume_s']:.1f} s: "
                  f"{outcome['cells_lost']} cells lost, {outcome['cells_at_end']}/{n_cells} at the end, "
                  f"same content as serial: {outcome['same_as_serial']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"run directories kept in {work}")


if __name__ == "__main__":
    main()

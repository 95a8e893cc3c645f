"""The Python API behind ``proxmf-bench run``: select, run the grid, write the run directory.

>>> from proxmf_bench import run_benchmark
>>> out = run_benchmark(solvers="mu", datasets="synthetic[m=50,n=40,rank=3]", max_iter=20,
...                     out="/tmp/proxmf-doctest")  # doctest: +SKIP
>>> out.frame.groupby("solver").loss.min()  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from proxmf_bench import environment
from proxmf_bench.data import check_root, use_data_dir
from proxmf_bench.data import data_dir as resolve_data_dir
from proxmf_bench.errors import UserError
from proxmf_bench.harness import (
    CellObserver,
    Limits,
    build_cells,
    parse_devices,
    parse_dtypes,
    preflight,
    run_grid,
)
from proxmf_bench.plugins import Registry, load_registry
from proxmf_bench.results import to_frame, write_meta, write_results
from proxmf_bench.selection import select

DEFAULT_DATASETS = "synthetic"
DEFAULT_OUT = Path("results")


@dataclass
class RunOutput:
    """What a run produced: its directory, the results table and the metadata."""

    run_dir: Path
    frame: pd.DataFrame
    meta: dict[str, Any]
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


def _prepare_output_dir(run_dir: Path) -> None:
    """Create the run directory before any solver runs, so an unusable ``--out`` fails early."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {run_dir}: {exc.strerror or exc}") from None


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_benchmark(
    solvers: str = "all",
    datasets: str = DEFAULT_DATASETS,
    devices: str = "cpu",
    dtypes: str = "float64",
    seeds: int = 1,
    max_iter: int = 200,
    max_time: float | None = None,
    tol: float | None = None,
    threads: int = 1,
    out: str | os.PathLike | None = None,
    registry: Registry | None = None,
    plugin_files: Sequence[str] = (),
    strict_plugins: bool = False,
    observer_factory=None,
    command: Sequence[str] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> RunOutput:
    """Run every selected solver on every selected dataset and write ``results/<run-id>/``.

    Parameters mirror the ``run`` command's flags. Selections use the ``name[key=value]``
    syntax. ``out`` is the run directory (default ``results/<run-id>``). All input is checked,
    and every dataset loaded once, before the first solver starts. ``observer_factory``, if
    given, is called with ``(n_cells, max_iter)`` and returns a
    :class:`~proxmf_bench.harness.CellObserver` (the CLI passes a progress display).
    ``data_dir`` is where datasets read their files (default ``$PROXMF_BENCH_DATA``, then a
    per-user cache directory; see :mod:`proxmf_bench.data`).
    """
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    limits = Limits(max_iter=max_iter, max_time=max_time, tol=tol)
    if registry is None:
        registry = load_registry(plugin_files, strict=strict_plugins)
    solver_variants = select(solvers, registry.solvers, registry, "solver")
    dataset_variants = select(datasets, registry.datasets, registry, "dataset")
    device_list = parse_devices(devices)
    dtype_list = parse_dtypes(dtypes)
    seed_list = list(range(seeds))
    run_id = new_run_id()
    run_dir = Path(out) if out is not None else DEFAULT_OUT / run_id
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"output directory {run_dir} exists and is not empty")

    if data_dir is not None:
        check_root(*resolve_data_dir(data_dir))
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    with use_data_dir(data_dir):
        preflight(registry, dataset_variants, seed_list[0])
        _prepare_output_dir(run_dir)

        cells = build_cells(solver_variants, dataset_variants, device_list, dtype_list, seed_list)
        observer: CellObserver | None = observer_factory(len(cells), max_iter) if observer_factory else None
        started = dt.datetime.now(dt.timezone.utc)
        try:
            grid = run_grid(registry, cells, limits, observer=observer)
        finally:
            if observer is not None and hasattr(observer, "close"):
                observer.close()
        used_data_dir = str(resolve_data_dir()[0])
    finished = dt.datetime.now(dt.timezone.utc)

    frame = to_frame((row for r in grid.results for row in r.rows()), run_id, threads)
    stops = frame.groupby(["solver", "dataset", "device", "dtype", "seed"]).stop_reason.last()
    meta = {
        "run_id": run_id,
        "command": list(command) if command is not None else sys.argv,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "threads": threads,
        "flush_denormal": True,
        "data_dir": used_data_dir,
        "grid": {
            "solvers": [v.label for v in solver_variants],
            "datasets": [v.label for v in dataset_variants],
            "devices": device_list,
            "dtypes": dtype_list,
            "seeds": seed_list,
            "max_iter": max_iter,
            "max_time": max_time,
            "tol": tol,
        },
        "cells": {"total": len(cells), "finished": len(grid.results), "stop_reasons": stops.value_counts().to_dict()},
        "interrupted": grid.interrupted,
        "plugins": [{"name": p.name, "origin": p.origin, "error": p.error} for p in registry.plugins],
        **environment.describe(),
        "peak_memory": environment.peak_memory(),
    }
    write_results(run_dir, frame)
    write_meta(run_dir, meta)
    errors = [f"{r.cell.solver.label} on {r.cell.dataset.label}: {r.error}" for r in grid.results if r.stop_reason == "error"]
    return RunOutput(run_dir, frame, meta, grid.interrupted, errors)

"""The Python API behind ``proxmf-bench run``: select, run the grid, write the run directory.

>>> from proxmf_bench import run_benchmark
>>> out = run_benchmark(solvers="mu", datasets="synthetic[m=50,n=40,rank=3]", max_iter=20,
...                     out="/tmp/proxmf-doctest")  # doctest: +SKIP
>>> out.frame.groupby("solver").loss.min()  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import math
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from proxmf_bench.errors import ExecutionError, UserError
from proxmf_bench.plugin.data_files import check_root, use_data_dir
from proxmf_bench.plugin.data_files import data_dir as resolve_data_dir
from proxmf_bench.plugin.registry import Registry, load_registry
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.problem.problem import YT_POLICIES
from proxmf_bench.results.f_star import REFERENCE_FILE, USER_F_STAR_FILE, read_f_star, write_f_star
from proxmf_bench.results.table import META_FILE, concat_frames, load_meta, write_meta, write_results
from proxmf_bench.run import environment
from proxmf_bench.run.cells import Cell, CellObserver, CellResult, Limits
from proxmf_bench.run.dask_backend import DEFAULT_TIMEOUT as DEFAULT_DASK_TIMEOUT
from proxmf_bench.run.grid import DTYPES, GridSpec, explain_changes, manifest, parse_devices, parse_dtypes, parse_seeds
from proxmf_bench.run.interrupts import InterruptGuard
from proxmf_bench.run.resources import MAX_SIZE, format_bytes, parse_size
from proxmf_bench.run.serial import preflight, run_grid
from proxmf_bench.run.shared import SharedDir, sharing_available
from proxmf_bench.run.store import RunStore, check_new_run_dir, path_error

DEFAULT_OUT = Path("results")
BACKENDS = ("local", "dask")
# Below this a worker process cannot run a cell: it holds about 300 MiB of libraries (torch,
# NumPy, pandas, the plugins) before its first one, and --max-memory limits its whole data segment.
MIN_WORKER_MEMORY = 512 << 20

# The grid options of RunOptions and their defaults. ``None`` means "not given": the default
# for a new run, the saved value when resuming.
GRID_DEFAULTS: dict[str, Any] = {
    "solvers": "all", "datasets": "synthetic", "devices": "cpu", "dtypes": "float64", "seeds": 1,
    "max_iter": 200, "max_time": None, "tol": None, "threads": 1, "repeat": 1,
    "yt": "auto",
}


@dataclass(frozen=True)
class RunOptions:
    """What to run and how: the ``run`` command's flags.

    Grid options (``solvers`` .. ``repeat``) left at ``None`` take their default
    (``solvers="all"``, ``datasets="synthetic"``, ``devices="cpu"``, ``dtypes="float64"``,
    ``seeds=1``, ``max_iter=200``, ``threads=1``, ``repeat=1``), or when resuming the value
    saved with the run; ``max_time`` given without ``max_iter`` means no iteration cap.
    Selections use the ``name[key=value]`` syntax. ``seeds`` is a count ``N`` (seeds
    ``0..N-1``), a sequence of seeds, or the text of ``--seeds`` (``"0,3,7"``, ``"10-19"``).
    ``repeat=K`` times every cell ``K`` times (see :mod:`proxmf_bench.run.harness`).
    ``yt`` (``"auto"``, ``"keep"``, ``"skip"``) decides whether the problems hold a row-major
    copy of ``Y^T`` (faster ``H Y^T`` on the CPU, one more copy of ``Y`` in memory; ``auto``:
    up to 256 MiB of data or as the dataset says); see :mod:`proxmf_bench.problem.problem`.

    - ``reference=True`` computes, once the cells are done, the reference optimum of every
      problem of the grid (:mod:`proxmf_bench.run.reference`, cached in ``cache_dir``) and
      writes them with the run; ``f_star`` is a table of known optima (``problem,f_star``),
      checked and copied into the run directory. Reports use both. ``out`` is the run directory (default
    ``results/<run-id>``); ``data_dir`` is where datasets read their files (default
    ``$PROXMF_BENCH_DATA``, then a per-user cache directory; see
    :mod:`proxmf_bench.plugin.data_files`).

    - ``jobs=None`` (default) runs the cells one after another in this process. ``jobs=N``
      runs them in ``N`` worker processes: a cell that crashes its process, runs past
      ``cell_timeout`` wall seconds (default ``2 * max_time + 60``; none without
      ``max_time``) or exceeds ``max_memory`` (bytes, or a size such as ``"4G"``) is recorded
      as ``error`` and the grid goes on.
    - ``backend="dask"`` sends the cells to the dask scheduler at ``scheduler``, or to a
      local cluster of ``jobs`` workers (default: one per CPU) on 127.0.0.1 when no address
      is given, with its dashboard at ``dashboard`` (an address, e.g. ``"127.0.0.1:8787"``)
      if given. A cluster that cannot be reached, has no workers, or has workers that
      cannot import proxmf-bench for ``dask_timeout`` seconds (default 30) stops the run
      with an :class:`~proxmf_bench.errors.ExecutionError`, after the run directory is
      written.
    - ``resume=RUN_DIR`` continues a run: finished cells are kept, the others run. Grid
      options not given are taken from ``RUN_DIR/grid.json``; given ones must describe the
      same grid, else a ``UserError`` explains what changed.
    - ``plugin_files`` and ``strict_plugins`` build the registry when none is given.
    """

    solvers: str | None = None
    datasets: str | None = None
    devices: str | None = None
    dtypes: str | None = None
    seeds: int | str | Sequence[int] | None = None
    max_iter: int | None = None
    max_time: float | None = None
    tol: float | None = None
    threads: int | None = None
    repeat: int | None = None
    yt: str | None = None
    out: str | os.PathLike | None = None
    resume: str | os.PathLike | None = None
    data_dir: str | os.PathLike | None = None
    jobs: int | None = None
    backend: str = "local"
    scheduler: str | None = None
    cell_timeout: float | None = None
    max_memory: int | str | None = None
    dask_timeout: float | None = None
    dashboard: str | None = None
    plugin_files: Sequence[str | os.PathLike] = ()
    strict_plugins: bool = False
    reference: bool = False
    cache_dir: str | os.PathLike | None = None
    f_star: str | os.PathLike | None = None

    def grid_options(self, saved: dict[str, Any] | None) -> dict[str, Any]:
        """The grid options: given ones over the saved ones (when resuming) over the defaults."""
        base = dict(GRID_DEFAULTS)
        if saved is not None:
            grid = saved["grid"]
            base.update({k: grid[k] for k in GRID_DEFAULTS if k in grid and k not in ("devices", "dtypes")})
            base.update(devices=",".join(grid["devices"]), dtypes=",".join(grid["dtypes"]))
        elif self.max_time is not None:  # --max-time alone: no iteration cap
            base["max_iter"] = None
        given = {k: getattr(self, k) for k in GRID_DEFAULTS}
        return {k: v if v is not None else base[k] for k, v in given.items()}


@dataclass(frozen=True)
class Execution:
    """Checked settings of how cells run (see :class:`RunOptions`); ``max_memory`` in bytes."""

    backend: str
    jobs: int | None
    scheduler: str | None
    cell_timeout: float | None
    max_memory: int | None
    dask_timeout: float = DEFAULT_DASK_TIMEOUT
    dashboard: str | None = None

    @property
    def parallel(self) -> bool:
        return self.jobs is not None or self.backend == "dask"

    @classmethod
    def check(cls, options: RunOptions) -> Execution:
        backend, jobs, scheduler, cell_timeout = options.backend, options.jobs, options.scheduler, options.cell_timeout
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
        if jobs is not None and jobs < 1:
            raise UserError(f"--jobs must be >= 1, got {jobs}")
        if scheduler is not None and backend != "dask":
            raise UserError("--scheduler needs --backend dask")
        if scheduler is not None and jobs is not None:
            raise UserError("--jobs sets the size of a local dask cluster; with --scheduler the cluster's workers decide")
        dask_timeout, dashboard = options.dask_timeout, options.dashboard
        if (dask_timeout is not None or dashboard is not None) and backend != "dask":
            raise UserError("--dask-timeout and --dashboard need --backend dask")
        if dask_timeout is not None and not 0 < dask_timeout < float("inf"):
            raise UserError(f"--dask-timeout must be > 0 seconds and finite, got {dask_timeout}")
        if dashboard is not None and scheduler is not None:
            raise UserError("--dashboard is for the local cluster; a scheduler given with --scheduler serves its own")
        if cell_timeout is not None and not (cell_timeout > 0 and math.isfinite(cell_timeout)):
            raise UserError(f"--cell-timeout must be > 0 seconds and finite, got {cell_timeout}")
        try:
            memory = parse_size(options.max_memory) if isinstance(options.max_memory, str) else options.max_memory
        except UserError as exc:
            raise UserError(f"--max-memory: {exc}") from None
        if memory is not None and not MIN_WORKER_MEMORY <= memory <= MAX_SIZE:
            raise UserError(f"--max-memory {options.max_memory} is {'below' if memory < MIN_WORKER_MEMORY else 'above'} "
                            f"what a worker process can run with: give {format_bytes(MIN_WORKER_MEMORY)} to 8 EiB "
                            f"(a worker holds about 300 MiB of libraries before its first cell)")
        execution = cls(backend, jobs, scheduler, cell_timeout, memory,
                        DEFAULT_DASK_TIMEOUT if dask_timeout is None else dask_timeout, dashboard)
        if not execution.parallel and (cell_timeout is not None or memory is not None):
            raise UserError("--cell-timeout and --max-memory apply to worker processes: add --jobs N (or --backend dask)")
        if backend == "dask":
            from proxmf_bench.run.dask_backend import check_scheduler_address, import_dask

            if scheduler is not None:
                check_scheduler_address(scheduler)
            import_dask()
        return execution


@dataclass
class RunOutput:
    """What a run produced: its directory, the results table and the metadata.

    ``signal`` is the signal that stopped an interrupted run (``SIGINT`` or ``SIGTERM``);
    ``warnings`` are problems found and worked around (a damaged cell file run again).
    ``failed_cells`` names each cell that ended in ``error`` (the CLI then exits with status
    3), and ``errors`` gives each with its message; ``lost`` describes the cells that ended in
    ``worker_lost`` (the CLI then exits with status 75).
    """

    run_dir: Path
    frame: pd.DataFrame
    meta: dict[str, Any]
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    failed_cells: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signal: int | None = None
    lost: list[str] = field(default_factory=list)


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_benchmark(
    options: RunOptions | None = None,
    /,
    *,
    registry: Registry | None = None,
    observer_factory: Callable[[int, Limits], CellObserver] | None = None,
    command: Sequence[str] | None = None,
    **fields: Any,
) -> RunOutput:
    """Run every selected solver on every selected dataset and write ``results/<run-id>/``.

    ``options`` (or the same fields as keywords, which override it: ``run_benchmark(
    solvers="mu", seeds=2)``) mirror the ``run`` command's flags; see :class:`RunOptions`.
    All input is checked, and every dataset loaded once, before the first solver starts.
    ``registry`` defaults to one loaded from ``options.plugin_files``. ``observer_factory``,
    if given, is called with ``(n_cells, limits)`` (a :class:`~proxmf_bench.run.cells.Limits`) and returns a
    :class:`~proxmf_bench.run.cells.CellObserver` (the CLI passes a progress display).
    ``command`` is recorded in ``meta.json`` (default ``sys.argv``). Each cell is written to
    ``RUN_DIR/cells/`` as soon as it finishes.

    The run directory is locked from before it is read (``resume``) or created until the run
    ends: a second run on it is a ``UserError`` naming this process.
    """
    options = replace(options or RunOptions(), **fields)
    with ExitStack() as held:  # the lock on the run directory, once taken
        plan = _plan(options, registry, held)
        torch.set_num_threads(plan.spec.threads)
        torch.set_flush_denormal(True)
        with use_data_dir(options.data_dir):  # also seen by worker processes, through the environment
            with InterruptGuard():  # so that a dataset raising KeyboardInterrupt is not taken for Ctrl-C
                preflight(plan.registry, plan.dataset_variants, 0, _smallest_dtype(plan.spec.dtypes),
                          keep=not plan.execution.parallel)
            with _connect(plan) as cluster:  # before anything is written
                return _execute(plan, observer_factory, command, cluster)


def _smallest_dtype(names: Sequence[str]) -> torch.dtype:
    """The dtype of ``names`` with the fewest bytes per entry (the first of those)."""
    return min((DTYPES[name] for name in names), key=lambda dtype: torch.empty((), dtype=dtype).element_size())


def _connect(plan: _Plan):
    """The dask cluster of a ``--backend dask`` run (a context manager), else a null one."""
    execution = plan.execution
    if execution.backend != "dask":
        return nullcontext()
    from proxmf_bench.run.dask_backend import DaskCluster

    n_workers = execution.jobs or max(1, usable_cpus() // plan.spec.threads)
    return DaskCluster(execution.scheduler, n_workers, execution.dask_timeout, execution.dashboard)


def _plan(options: RunOptions, registry: Registry | None, held: ExitStack) -> _Plan:
    """Check everything about a run and decide where it writes: a new run directory, or the
    one being resumed (the one place that reads a saved grid, locked first; ``held`` releases
    the lock when the run ends)."""
    execution = Execution.check(options)
    store = saved = None
    history: list[dict[str, Any]] = []
    if options.resume is not None:
        store = RunStore(Path(options.resume))
        if options.out is not None and Path(options.out).absolute() != store.run_dir.absolute():
            raise UserError(f"--out {options.out} and --resume {options.resume} name different directories")
        held.callback(store.unlock)
        if _is_dir(store.run_dir):  # else reading the manifest says there is nothing to resume
            store.lock()
        saved = store.read_manifest()
        history = _previous_sessions(store.run_dir)
    grid = options.grid_options(saved)
    seeds = parse_seeds(grid["seeds"])
    if grid["threads"] < 1:
        raise UserError(f"--threads must be >= 1, got {grid['threads']}")
    if grid["repeat"] < 1:
        raise UserError(f"--repeat must be >= 1, got {grid['repeat']}")
    if grid["yt"] not in YT_POLICIES:
        raise UserError(f"--yt must be one of {', '.join(YT_POLICIES)}, got {grid['yt']!r}")
    f_star = read_f_star(options.f_star) if options.f_star is not None else None
    if execution.scheduler is None:  # the cells run on this machine: do not oversubscribe its CPUs
        _check_cpus(execution.jobs, grid["threads"])
    limits = Limits(max_iter=grid["max_iter"], max_time=grid["max_time"], tol=grid["tol"])
    if registry is None:
        registry = load_registry(options.plugin_files, strict=options.strict_plugins)
    if saved is not None:
        _check_saved_plugins(saved, registry, store)
    spec = GridSpec(
        solvers=grid["solvers"], datasets=grid["datasets"],
        devices=tuple(parse_devices(grid["devices"], require_available=execution.scheduler is None)),
        dtypes=tuple(parse_dtypes(grid["dtypes"])), seeds=seeds, max_iter=limits.max_iter,
        max_time=limits.max_time, tol=limits.tol, threads=grid["threads"], repeat=grid["repeat"],
        yt=grid["yt"],
    )
    solver_variants, dataset_variants = spec.variants(registry)
    cells = spec.cells(registry, (solver_variants, dataset_variants))
    if saved is not None:
        change = explain_changes(saved, spec, cells)
        if change:
            raise UserError(f"the grid of {store.run_dir} changed since it started: {change}; resume with the "
                            f"options saved in {store.manifest_path} or start a new run")
        run_id = saved["run_id"]
    else:
        run_id = new_run_id()
        store = RunStore(Path(options.out) if options.out is not None else DEFAULT_OUT / run_id)
        check_new_run_dir(store.run_dir)  # early; again under the lock when it is created
        held.callback(store.unlock)
    if execution.parallel and registry.source is None:
        raise UserError("--jobs and --backend dask need a registry made by load_registry: "
                        "each worker process loads the plugins again")
    data_dir = options.data_dir
    if data_dir is not None:
        check_root(*resolve_data_dir(data_dir))
    return _Plan(spec, cells, solver_variants, dataset_variants, registry, store, run_id, saved is not None, execution,
                 None if data_dir is None else str(Path(data_dir).expanduser().absolute()), history,
                 options.reference, options.cache_dir, f_star)


def _check_saved_plugins(saved: dict[str, Any], registry: Registry, store: RunStore) -> None:
    """A resumed run loads plugin files only when they are named again, never from the run
    directory itself (which is data that people share): those it used must be given."""
    source = registry.source or {}
    given = {*source.get("plugin_files", []), *source.get("env_files", [])}
    missing = [f for f in (*saved["plugin_files"], *saved.get("env_files", [])) if f not in given]
    if missing and registry.source is not None:
        listed = ", ".join(dict.fromkeys(missing))
        raise UserError(f"the run in {store.run_dir} used plugin files {listed}: pass them again with --plugin "
                        f"(plugin code is loaded only from files named on the command line)")


@dataclass
class _Plan:
    """A checked run, ready to start: what it computes, where it writes, how cells run."""

    spec: GridSpec
    cells: list[Cell]
    solver_variants: list[Variant]
    dataset_variants: list[Variant]
    registry: Registry
    store: RunStore
    run_id: str
    resuming: bool
    execution: Execution
    data_dir: str | None  # given explicitly: worker processes (also on dask) read from there
    history: list[dict[str, Any]]  # the sessions recorded in meta.json before this one
    reference: bool = False
    cache_dir: str | os.PathLike | None = None
    f_star: pd.DataFrame | None = None  # given with --f-star, checked


def _execute(plan: _Plan, observer_factory, command: Sequence[str] | None, cluster) -> RunOutput:
    """Run the cells that have no result yet, persisting each as it ends; write the run directory.

    An :class:`ExecutionError` (the workers or the cluster failed) is raised again once the
    run directory is written, with how to continue."""
    store, cells, spec = plan.store, plan.cells, plan.spec
    warnings: list[str] = []
    if plan.resuming:
        store.check_cells_dir()
        store.remove_temporaries()
        frames, warnings = store.load_cells(cells, spec.threads)
    else:
        store.create(manifest(plan.run_id, spec, plan.registry, cells))
        frames: dict[str, pd.DataFrame] = {}
    if store.lock_warning:
        warnings.append(store.lock_warning)
    pending = [i for i, cell in enumerate(cells) if cell.id not in frames]
    observer: CellObserver | None = observer_factory(len(pending), spec.limits) if observer_factory else None

    ran: list[str] = []  # ids of the cells this session ran
    resume_hint = f"finished cells are kept in {store.run_dir}; continue with: proxmf-bench run --resume {store.run_dir}"
    guard = InterruptGuard(note=resume_hint)

    def persist(result: CellResult) -> None:
        with guard.critical():  # Ctrl-C never tears a cell file; it takes effect just after
            frames[result.cell.id] = store.write_cell(result, plan.run_id, spec.threads)
            ran.append(result.cell.id)

    def persist_and_show(result: CellResult) -> None:
        persist(result)
        if observer is not None:
            observer.cell_finished(result)

    started = dt.datetime.now(dt.timezone.utc)
    failure: ExecutionError | None = None
    if cluster is not None and cluster.dashboard_link:
        print(f"proxmf-bench: dask dashboard at {cluster.dashboard_link}", file=sys.stderr)
    with guard:
        try:
            try:
                if not pending:
                    interrupted = False
                elif not plan.execution.parallel:
                    interrupted = run_grid(plan.registry, [cells[i] for i in pending], spec.limits,
                                           observer=observer, on_result=persist, repeat=spec.repeat,
                                           yt=spec.yt).interrupted
                else:
                    payload = {"registry": plan.registry.source, "grid": spec.to_dict(), "data_dir": plan.data_dir}
                    interrupted = _run_parallel(plan.execution, cluster, payload, cells, pending, persist_and_show,
                                                spec.limits)
            finally:
                if observer is not None and hasattr(observer, "close"):
                    observer.close()
            if plan.reference and not interrupted:
                _write_references(plan)
        except KeyboardInterrupt:
            interrupted = True
        except ExecutionError as exc:
            interrupted, failure = False, exc
        with guard.deferred():
            if plan.f_star is not None:
                write_f_star(store.run_dir / USER_F_STAR_FILE, plan.f_star)
            output = _finish(plan, frames, len(ran), command, started, interrupted, failure)
    if failure is not None:
        raise ExecutionError(f"{failure}; {resume_hint}") from None
    output.warnings = warnings
    output.interrupted = output.interrupted or guard.interrupted
    output.signal = guard.signum if output.interrupted else None
    if output.interrupted and output.signal is None:
        output.signal = signal.SIGINT
    return output


def _write_references(plan: _Plan) -> None:
    """The reference optima of the grid's problems, into ``RUN_DIR/reference.csv``."""
    from proxmf_bench.run.reference import grid_references, reference_table

    references = grid_references(plan.registry, plan.cells, cache_dir=plan.cache_dir, progress=sys.stderr.isatty())
    write_f_star(plan.store.run_dir / REFERENCE_FILE, reference_table(references))


def _check_cpus(jobs: int | None, threads: int) -> None:
    cpus = usable_cpus()
    if threads > cpus:
        raise UserError(f"--threads {threads} is more than the {cpus} CPUs of this machine")
    if jobs is not None and jobs * threads > cpus:
        raise UserError(f"--jobs {jobs} x --threads {threads} needs {jobs * threads} CPUs, this machine has "
                        f"{cpus}: timings would be distorted by oversubscription")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError as exc:  # a name too long, a loop of links
        raise path_error(path, exc, "use") from None


def _run_parallel(execution: Execution, cluster, payload: dict[str, Any], cells: list[Cell], pending: list[int],
                  on_result: Callable[[CellResult], None], limits: Limits) -> bool:
    from proxmf_bench.run.isolation import default_cell_timeout, run_local_pool

    timeout = execution.cell_timeout or default_cell_timeout(limits.max_time)
    if cluster is not None:
        return cluster.run(payload, cells, pending, on_result, cell_timeout=timeout, max_memory=execution.max_memory)
    if execution.jobs == 1 or not sharing_available():  # one worker: nobody to share with
        return run_local_pool(payload, cells, pending, execution.jobs, on_result, cell_timeout=timeout,
                              max_memory=execution.max_memory)
    with SharedDir(cells, pending) as shared:  # the workers map one copy of each problem's data

        def finished(result: CellResult) -> None:
            on_result(result)
            shared.finished(result)

        return run_local_pool({**payload, "shared_dir": str(shared.path)}, cells, pending, execution.jobs, finished,
                              cell_timeout=timeout, max_memory=execution.max_memory)


def _finish(plan: _Plan, frames: dict[str, pd.DataFrame], n_ran: int, command, started, interrupted: bool,
            failure: ExecutionError | None = None) -> RunOutput:
    """Consolidate the cells into ``results.parquet`` and write ``meta.json``."""
    store, run_id, spec, cells, execution = plan.store, plan.run_id, plan.spec, plan.cells, plan.execution
    finished = dt.datetime.now(dt.timezone.utc)
    frame = concat_frames([frames[c.id] for c in cells if c.id in frames])
    stops = frame.groupby(["solver", "dataset", "device", "dtype", "seed"]).stop_reason.last()
    session = {
        "command": list(command) if command is not None else sys.argv,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "cells_run": n_ran,
        "interrupted": interrupted,
        "failure": None if failure is None else str(failure),
        "backend": execution.backend,
        "jobs": execution.jobs,
        "scheduler": execution.scheduler,
    }
    history = plan.history
    meta = {
        "run_id": run_id,
        "command": session["command"],
        "started_at": history[0]["started_at"] if history else session["started_at"],
        "finished_at": session["finished_at"],
        "threads": spec.threads,
        "flush_denormal": True,
        "data_dir": str(resolve_data_dir()[0]),
        "grid": {
            "solvers": [v.label for v in plan.solver_variants],
            "datasets": [v.label for v in plan.dataset_variants],
            "devices": list(spec.devices),
            "dtypes": list(spec.dtypes),
            "seeds": list(spec.seeds),
            "max_iter": spec.max_iter,
            "max_time": spec.max_time,
            "tol": spec.tol,
            "repeat": spec.repeat,
            "yt": spec.yt,
        },
        "cells": {"total": len(cells), "finished": len(frames), "stop_reasons": stops.value_counts().to_dict()},
        "interrupted": interrupted,
        "sessions": [*history, session],
        "plugins": [{"name": p.name, "origin": p.origin, "error": p.error} for p in plan.registry.plugins],
        **environment.describe(),
        "peak_memory": environment.peak_memory(),
    }
    try:
        write_results(store.run_dir, frame)
        write_meta(store.run_dir, meta)
    except OSError as exc:
        raise UserError(f"cannot write the results in {store.run_dir}: {exc.strerror or exc}; the finished cells are "
                        f"kept: proxmf-bench run --resume {store.run_dir} writes them again") from None
    last = frame.sort_values("iteration", kind="stable").groupby(
        ["solver", "dataset", "device", "dtype", "seed"], sort=False).tail(1).sort_index()  # grid order
    failed = [(f"{r.solver} on {r.dataset} ({r.device}, {r.dtype}, seed {r.seed})", r.error)
              for r in last.itertuples() if r.stop_reason == "error"]
    lost = [f"{r.solver} on {r.dataset}: {r.error}" for r in last.itertuples() if r.stop_reason == "worker_lost"]
    return RunOutput(store.run_dir, frame, meta, interrupted, [f"{cell}: {error}" for cell, error in failed],
                     [cell for cell, _ in failed], lost=lost)


def _previous_sessions(run_dir: Path) -> list[dict[str, Any]]:
    """The sessions recorded in the ``meta.json`` of a run being resumed: none if there is no
    such file (the run was killed before its end), a ``UserError`` if it is damaged, which would
    otherwise lose the record of the earlier sessions."""
    path = run_dir / META_FILE
    if not path.exists():
        return []
    hint = "; it records the earlier sessions of this run: repair it, or move it away to resume without them"
    try:
        sessions = load_meta(run_dir).get("sessions")
    except UserError as exc:
        raise UserError(f"{exc}{hint}") from None
    if not (isinstance(sessions, list) and all(isinstance(s, dict) and "started_at" in s for s in sessions)):
        raise UserError(f"{path} is damaged: its sessions are not a list of sessions{hint}")
    return sessions

"""The benchmark harness: runs solvers x datasets x devices x dtypes x seeds.

The harness owns the clock. Solver time is the sum of the durations of ``init`` and of each
``step``; on CUDA the device is synchronised before the clock is read. The loss is evaluated
between steps, outside the timed region, at the iterations of a geometric
:class:`~proxmf_bench.run.schedule.RecordSchedule` (always the first and the last); the factors
are copied there and their ground-truth metrics evaluated when the cell ends
(:class:`~proxmf_bench.problem.metrics.DeferredMetrics`). Solvers without a per-iteration API are
sampled with growing budgets instead (:mod:`proxmf_bench.solve.blackbox`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from proxmf_bench.solve.blackbox import is_black_box, run_black_box_cell
from proxmf_bench.errors import DataError, UserError
from proxmf_bench.problem.metrics import DeferredMetrics
from proxmf_bench.plugin.registry import Registry
from proxmf_bench.problem.problem import Problem, StartingPoint, initial_factors
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.plugin.selection import Variant

STOP_REASONS = ("max_iter", "max_time", "tol", "diverged", "error", "interrupted")

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Limits:
    """When a cell stops. ``max_time`` is solver seconds; ``tol`` is on relative loss change."""

    max_iter: int = 200
    max_time: float | None = None
    tol: float | None = None

    def __post_init__(self) -> None:
        if self.max_iter < 0:
            raise UserError(f"--max-iter must be >= 0, got {self.max_iter}")
        if self.max_time is not None and not self.max_time > 0:
            raise UserError(f"--max-time must be > 0 seconds, got {self.max_time}")
        if self.tol is not None and not self.tol >= 0:
            raise UserError(f"--tol must be >= 0, got {self.tol}")


@dataclass(frozen=True)
class Cell:
    """One (solver, dataset, device, dtype, seed) combination."""

    solver: Variant
    dataset: Variant
    device: str
    dtype: str
    seed: int

    def key(self) -> dict[str, Any]:
        return {
            "solver": self.solver.label,
            "solver_name": self.solver.name,
            "solver_params": self.solver.params_json(),
            "dataset": self.dataset.label,
            "dataset_name": self.dataset.name,
            "dataset_params": self.dataset.params_json(),
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
        }

    @property
    def id(self) -> str:
        """A stable identifier of what this cell computes (not of its labels).

        Hash of the solver and dataset names with their fully resolved parameters, the
        device, dtype and seed: the same cell in two runs, or in a resumed run, has the same id.
        """
        identity = [self.solver.name, self.solver.params_json(), self.dataset.name,
                    self.dataset.params_json(), self.device, self.dtype, self.seed]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.solver.label} on {self.dataset.label} ({self.device}, {self.dtype}, seed {self.seed})"


@dataclass
class CellResult:
    cell: Cell
    records: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "max_iter"
    error: str = ""

    def rows(self) -> Iterator[dict[str, Any]]:
        base = self.cell.key()
        for rec in self.records:
            yield {**base, **rec, "stop_reason": self.stop_reason, "error": self.error}


class CellObserver:
    """Hooks the harness calls so a progress display can follow along (all optional)."""

    def cell_started(self, cell: Cell, index: int, total: int) -> None: ...

    def recorded(self, cell: Cell, iteration: int, time_s: float, loss: float) -> None: ...

    def cell_finished(self, result: CellResult) -> None: ...


def parse_devices(text: str, require_available: bool = True) -> list[str]:
    """``"cpu,cuda"`` -> ``["cpu", "cuda:0"]``; CUDA asked for but absent is a ``UserError``.

    ``require_available=False`` skips that check (cells run on other machines: dask).
    """
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise UserError(f"empty device in {text!r}")
        try:
            dev = torch.device(item)
        except (RuntimeError, ValueError):
            raise UserError(f"unknown device {item!r} (use cpu, cuda or cuda:N)") from None
        if dev.type == "cuda" and not require_available:
            dev = torch.device("cuda", 0 if dev.index is None else dev.index)
        elif dev.type == "cuda":
            if not torch.cuda.is_available():
                raise UserError(f"device {item!r} requested but CUDA is not available on this machine")
            index = 0 if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise UserError(f"device {item!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
            dev = torch.device("cuda", index)
        elif dev.type != "cpu":
            raise UserError(f"unsupported device {item!r} (use cpu, cuda or cuda:N)")
        name = str(dev)
        if name not in out:
            out.append(name)
    return out


def parse_dtypes(text: str) -> list[str]:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if item not in DTYPES:
            raise UserError(f"unknown dtype {item!r} (use {', '.join(DTYPES)})")
        if item not in out:
            out.append(item)
    return out


def _synchronizer(device: torch.device) -> Callable[[], None] | None:
    """What waits for ``device`` to finish its queued work before the clock is read (CUDA), or None."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def loss_stop_reason(previous: float, loss: float, tol: float | None) -> str | None:
    """``diverged`` for a non-finite loss, ``tol`` for a relative change of at most ``tol``."""
    if not math.isfinite(loss):
        return "diverged"
    if tol is not None and abs(previous - loss) <= tol * max(abs(previous), 1e-300):
        return "tol"
    return None


@contextmanager
def guard_cell(
    result: CellResult,
    position: Callable[[], tuple[int, float]],
    observer: CellObserver | None,
    metrics: DeferredMetrics,
) -> Iterator[None]:
    """Record an exception in the solver as ``error`` and Ctrl-C as ``interrupted``.

    ``position()`` gives the (iteration, solver time) reached, for the row such a cell keeps.
    The pending ``metrics`` are evaluated in every case (a stopped cell keeps its records).
    The observer hears of the finished cell either way; Ctrl-C then stops the grid.
    """
    try:
        yield
        metrics.flush()
    except KeyboardInterrupt:
        result.stop_reason = "interrupted"
        result.error = "interrupted by the user"
        _ensure_row(result, *position())
        _flush_after_stop(metrics)
        if observer is not None:
            observer.cell_finished(result)
        raise _Interrupted(result) from None
    except Exception as exc:  # a solver may fail in any way; the grid goes on
        result.stop_reason = "error"
        result.error = _describe(exc)
        _ensure_row(result, *position())
        _flush_after_stop(metrics)
    if observer is not None:
        observer.cell_finished(result)


def _flush_after_stop(metrics: DeferredMetrics) -> None:
    """Metrics of the records of a cell already stopped by an error or Ctrl-C: one that fails
    to evaluate now, or a second Ctrl-C, leaves the remaining ones out (NaN in the table)."""
    try:
        metrics.flush()
    except (Exception, KeyboardInterrupt):
        pass


def run_cell(
    spec_factory: Callable[..., Any],
    cell: Cell,
    problem: Problem,
    W0: torch.Tensor,
    H0: torch.Tensor,
    limits: Limits,
    schedule: RecordSchedule,
    observer: CellObserver | None = None,
    start: StartingPoint | None = None,
) -> CellResult:
    """Run one solver on one problem from ``(W0, H0)`` until a stopping rule fires.

    ``start``, if given, is the starting point ``(W0, H0)`` were copied from: its loss,
    shared by the cells that start there, is then the loss at iteration 0.
    """
    if is_black_box(spec_factory):  # sampled by budgets, not stepped
        return run_black_box_cell(spec_factory, cell, problem, W0, H0, limits, schedule, observer, start)
    result = CellResult(cell)
    metrics = DeferredMetrics(problem)
    sync = _synchronizer(problem.device)
    clock = time.perf_counter
    elapsed = 0.0
    k = 0
    last_recorded = -1

    def record(iteration: int, W: torch.Tensor, H: torch.Tensor, loss: float) -> None:
        nonlocal last_recorded
        rec = {"iteration": iteration, "time_s": elapsed, "loss": loss}
        metrics.add(rec, W, H)
        result.records.append(rec)
        last_recorded = iteration
        if observer is not None:
            observer.recorded(cell, iteration, elapsed, loss)

    with guard_cell(result, lambda: (k, elapsed), observer, metrics):
        torch.manual_seed(cell.seed)
        solver = spec_factory(**cell.solver.params)
        if sync is not None:
            sync()
        tic = clock()
        solver.init(problem, W0, H0)
        if sync is not None:
            sync()
        elapsed = clock() - tic
        loss_of = _loss_function(solver, problem)
        W, H = solver.factors()
        loss = _initial_loss(start, W, H, loss_of)
        record(0, W, H, loss)
        next_record = schedule.next_after(0)
        # locals: this loop's own cost is what a solver step is compared with
        step, max_iter, tol = solver.step, limits.max_iter, limits.tol
        max_time = math.inf if limits.max_time is None else limits.max_time
        while True:
            if k >= max_iter:
                result.stop_reason = "max_iter"
                break
            if elapsed >= max_time:
                result.stop_reason = "max_time"
                break
            tic = clock()
            step()
            if sync is not None:
                sync()
            elapsed += clock() - tic
            k += 1
            if tol is None and k != next_record:
                continue
            previous = loss
            W, H = solver.factors()
            loss = loss_of(W, H)
            stop = loss_stop_reason(previous, loss, tol)
            if stop is not None:
                result.stop_reason = stop
                record(k, W, H, loss)
                break
            if k == next_record:
                record(k, W, H, loss)
                next_record = schedule.next_after(k)
        if last_recorded != k:
            W, H = solver.factors()
            record(k, W, H, loss_of(W, H))
    return result


def _initial_loss(
    start: StartingPoint | None, W: torch.Tensor, H: torch.Tensor, loss_of: Callable[..., float]
) -> float:
    """The loss at the factors a solver starts from: shared when they are ``start``'s."""
    shared = start.loss_at(W, H) if start is not None else None
    return loss_of(W, H) if shared is None else shared


def _loss_function(solver: Any, problem: Problem) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``loss(W, H)`` at the solver's current factors: its own ``loss()`` when it has one
    (from products it already holds), else :meth:`Problem.loss`."""
    own = getattr(solver, "loss", None)
    if callable(own):
        return lambda W, H: float(own())
    return problem.loss


class _Interrupted(Exception):
    """Carries the partial result of the cell that was running at Ctrl-C."""

    def __init__(self, result: CellResult) -> None:
        super().__init__("interrupted")
        self.result = result


def _ensure_row(result: CellResult, k: int, elapsed: float) -> None:
    """An errored or interrupted cell still leaves one row so it shows in the results."""
    if not result.records or result.records[-1]["iteration"] != k:
        result.records.append({"iteration": k, "time_s": elapsed, "loss": math.nan})


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass
class GridRun:
    """Outcome of :func:`run_grid`: finished cell results and whether Ctrl-C stopped it."""

    results: list[CellResult]
    interrupted: bool = False


def build_cells(
    solvers: list[Variant], datasets: list[Variant], devices: list[str], dtypes: list[str], seeds: list[int]
) -> list[Cell]:
    """Cells in execution order: each problem is loaded once for all its solvers."""
    return [
        Cell(s, d, dev, dt, seed)
        for d in datasets
        for seed in seeds
        for dev in devices
        for dt in dtypes
        for s in solvers
    ]


def preflight(registry: Registry, datasets: list[Variant], seed: int) -> None:
    """Load every dataset once on the CPU so bad data fails before any solver runs.

    A dataset that fails with anything but a :class:`UserError` (a plugin's bug, a missing
    library, memory) is reported as a :class:`DataError` naming the dataset.
    """
    for variant in datasets:
        spec = registry.get_dataset(variant.name)
        try:
            spec.load(variant.params, seed, torch.device("cpu"), torch.float64)
        except UserError:
            raise
        except Exception as exc:
            raise DataError(f"dataset {variant.label}: loading failed: {_describe(exc)}") from exc


def failed_result(cell: Cell, stop_reason: str, error: str) -> CellResult:
    """A cell that produced no records of its own (load error, crash, interrupt): one row."""
    result = CellResult(cell, stop_reason=stop_reason, error=error)
    _ensure_row(result, 0, 0.0)
    return result


class ProblemCache:
    """Loads the problem of a cell, keeping the latest: a problem's solvers run back to back."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.key: tuple | None = None
        self.problem: Problem | None = None
        self.start: StartingPoint | None = None
        self.error = ""

    def load(self, cell: Cell) -> tuple[Problem | None, str]:
        """``(problem, "")``, or ``(None, reason)`` when the dataset failed to load."""
        key = (cell.dataset, cell.seed, cell.device, cell.dtype)
        if key != self.key:
            self.key, self.problem, self.start, self.error = key, None, None, ""
            try:
                spec = self.registry.get_dataset(cell.dataset.name)
                problem = spec.load(cell.dataset.params, cell.seed, torch.device(cell.device), DTYPES[cell.dtype])
                W0, H0 = initial_factors(problem, cell.seed, key=cell.dataset.name + cell.dataset.params_json())
                self.problem, self.start = problem, StartingPoint(problem, W0, H0)
            except Exception as exc:  # recorded per cell; the rest of the grid goes on
                self.error = f"loading dataset failed: {_describe(exc)}"
        return self.problem, self.error


def run_grid_cell(
    registry: Registry,
    cell: Cell,
    limits: Limits,
    schedule: RecordSchedule,
    cache: ProblemCache,
    observer: CellObserver | None = None,
) -> CellResult:
    """Run one cell of a grid: load (or reuse) its problem, then :func:`run_cell`.

    Raises ``_Interrupted`` (carrying the partial result) on Ctrl-C inside the solver loop.
    """
    problem, load_error = cache.load(cell)
    if problem is None:
        result = failed_result(cell, "error", load_error)
        if observer is not None:
            observer.cell_finished(result)
        return result
    factory = registry.get_solver(cell.solver.name).factory
    return run_cell(factory, cell, problem, *cache.start.copies(), limits, schedule, observer, cache.start)


def run_grid(
    registry: Registry,
    cells: list[Cell],
    limits: Limits,
    schedule: RecordSchedule | None = None,
    observer: CellObserver | None = None,
    on_result: Callable[[CellResult], None] | None = None,
) -> GridRun:
    """Run ``cells`` in order in this process; Ctrl-C stops the grid and keeps what finished.

    ``on_result``, if given, is called with each result as soon as its cell finishes (the
    runner persists it there), including the partial result of an interrupted cell.
    """
    schedule = schedule or RecordSchedule()
    cache = ProblemCache(registry)
    results: list[CellResult] = []

    def finish(result: CellResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    for index, cell in enumerate(cells):
        try:
            if observer is not None:
                observer.cell_started(cell, index, len(cells))
            result = run_grid_cell(registry, cell, limits, schedule, cache, observer)
        except _Interrupted as stop:
            finish(stop.result)
            return GridRun(results, interrupted=True)
        except KeyboardInterrupt:  # outside the solver loop: while loading the problem
            finish(failed_result(cell, "interrupted", "interrupted by the user"))
            return GridRun(results, interrupted=True)
        try:
            finish(result)
        except KeyboardInterrupt:
            return GridRun(results, interrupted=True)
    return GridRun(results)

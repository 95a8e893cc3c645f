"""Cells one after another in this process: the serial run, and the loop inside each worker.

Cells come in grid order (:func:`proxmf_bench.run.grid.build_cells`), so that the solvers of
one problem run back to back and the problem is loaded once for all of them
(:class:`ProblemCache`). The solvers share its tensors, so the cache seals them when it loads
them and checks the seal after every cell: a solver that modified the problem data in place
fails its cell, and the next cells get the problem loaded afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from proxmf_bench.errors import DataError, UserError
from proxmf_bench.plugin.registry import Registry
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.plugin.specs import preflight_loads
from proxmf_bench.problem.integrity import ProblemSeal
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import DataFingerprint, StartingPoint, data_fingerprint, initial_factors
from proxmf_bench.run.cells import Cell, CellObserver, CellResult, Limits, failed_result
from proxmf_bench.run.grid import DTYPES
from proxmf_bench.run.harness import Interrupted, plugin_failure, run_cell
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.run.shared import SharedProblems


@dataclass
class GridRun:
    """Outcome of :func:`run_grid`: finished cell results and whether Ctrl-C stopped it."""

    results: list[CellResult]
    interrupted: bool = False


def preflight(registry: Registry, datasets: list[Variant], seed: int, dtype: torch.dtype = torch.float64,
              keep: bool = False) -> None:
    """Load every dataset once on the CPU in ``dtype`` so bad data fails before any solver runs.

    ``dtype`` is the run's smallest, so that data which fits in memory only in float32 is not
    refused by a float64 load. ``keep``: the cells run in this process, and a dataset may keep
    what it loaded for the first cell (:func:`~proxmf_bench.plugin.specs.preflight_loads`).
    A dataset that fails with anything but a :class:`UserError` (a plugin's bug, a missing
    library, memory, ``sys.exit()``) is reported as a :class:`DataError` naming the dataset.
    """
    for variant in datasets:
        spec = registry.get_dataset(variant.name)
        try:
            with preflight_loads(keep):
                spec.load(variant.params, seed, torch.device("cpu"), dtype)
        except UserError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            error = plugin_failure(exc, "the dataset")
            if error is None:
                raise
            raise DataError(f"dataset {variant.label}: loading failed: {error}") from exc


class ProblemCache:
    """Loads the problem of a cell, keeping the latest: a problem's solvers run back to back.

    :meth:`check` after each cell tells whether the solver modified the problem in place; the
    problem is then loaded again for the next cell, and must come back as it was first loaded
    (a dataset that hands out its cached tensors instead of copies cannot undo the damage).
    """

    def __init__(self, registry: Registry, yt: str = "auto", shared: SharedProblems | None = None) -> None:
        self.registry = registry
        self.yt = yt  # the run's Yt policy; "auto" leaves the dataset's own
        self.shared = shared  # in a --jobs worker: the data shared with the other workers
        self.key: tuple | None = None
        self.problem: Problem | None = None
        self.start: StartingPoint | None = None
        self.fingerprint: DataFingerprint | None = None
        self.error = ""
        self.seal: ProblemSeal | None = None
        self._damaged: tuple[tuple, ProblemSeal] | None = None  # (key, seal as first loaded)

    def load(self, cell: Cell) -> tuple[Problem | None, str]:
        """``(problem, "")``, or ``(None, reason)`` when the dataset failed to load."""
        key = (cell.dataset, cell.seed, cell.device, cell.dtype)
        if key != self.key:
            self.key, self.problem, self.start, self.seal, self.fingerprint, self.error = key, None, None, None, None, ""
            try:
                spec = self.registry.get_dataset(cell.dataset.name)

                def build() -> Problem:
                    return spec.load(cell.dataset.params, cell.seed, torch.device(cell.device), DTYPES[cell.dtype])

                problem = build() if self.shared is None else self.shared.load(cell, build)
                if self.yt != "auto":
                    problem.set_yt_policy(self.yt)
                fingerprint = data_fingerprint(problem)
                W0, H0 = initial_factors(problem, cell.seed, fingerprint)
                start = StartingPoint(problem, W0, H0)
                seal = ProblemSeal(problem, start)
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # recorded per cell; the grid goes on
                error = plugin_failure(exc, "the dataset")
                if error is None:
                    raise
                self.error = f"loading dataset failed: {error}"
                return self.problem, self.error
            if self._damaged is not None and self._damaged[0] == key and not seal.same_content(self._damaged[1]):
                self.error = (f"dataset {cell.dataset.label} returned the data an earlier solver modified in place "
                              f"(it hands out shared tensors, not copies: Problem.to(..., copy=True))")
                return self.problem, self.error
            self.problem, self.start, self.seal, self.fingerprint = problem, start, seal, fingerprint
            self._damaged = None
        return self.problem, self.error

    def check(self) -> str | None:
        """After a cell ran on the loaded problem: ``None``, or what it modified in place (the
        problem is then dropped, so that the next cell loads it again)."""
        try:
            changed = self.seal.changed(self.problem, self.start)
        except Exception:  # no memory left to check with (a solver that hogged it): reload to be safe
            changed = None
        if changed == []:
            return None
        self._damaged = (self.key, self.seal)
        self.key, self.problem, self.start, self.seal = None, None, None, None
        if changed is None:
            return None
        return f"the solver modified the problem data in place ({', '.join(changed)}); the next cells get it reloaded"


def run_grid_cell(
    registry: Registry,
    cell: Cell,
    limits: Limits,
    schedule: RecordSchedule,
    cache: ProblemCache,
    observer: CellObserver | None = None,
    repeat: int = 1,
) -> CellResult:
    """Run one cell of a grid: load (or reuse) its problem, then :func:`run_cell` with the
    objective the solver declares, and the problem key (:meth:`Cell.problem_key`), objective
    name and, where no objective value is known, why, recorded with every point.

    Raises :class:`~proxmf_bench.run.harness.Interrupted` (carrying the partial result) on
    Ctrl-C inside the solver loop.
    """
    problem, load_error = cache.load(cell)
    if problem is None:
        result = failed_result(cell, "error", load_error)
        if observer is not None:
            observer.cell_finished(result)
        return result
    spec = registry.get_solver(cell.solver.name)
    objective = spec.objective_for(cell.solver.params)
    name = objective.name(problem.fixed_W)
    labels = {"problem": cell.problem_key(name), "objective_name": name,
              "objective_note": objective.note(problem.fixed_W), "data_layout": problem.data_layout}
    return run_cell(spec.factory, cell, problem, cache.start.W0, cache.start.H0, limits, schedule, observer,
                    cache.start, objective=objective, labels=labels, repeat=repeat, check=cache.check)


def run_grid(
    registry: Registry,
    cells: list[Cell],
    limits: Limits,
    schedule: RecordSchedule | None = None,
    observer: CellObserver | None = None,
    on_result: Callable[[CellResult], None] | None = None,
    repeat: int = 1,
    yt: str = "auto",
) -> GridRun:
    """Run ``cells`` in order in this process; Ctrl-C stops the grid and keeps what finished.

    ``on_result``, if given, is called with each result as soon as its cell finishes (the
    runner persists it there), including the partial result of an interrupted cell. Each
    cell is timed ``repeat`` times (see :mod:`proxmf_bench.run.harness`); ``yt`` is the
    problems' policy for the copy of ``Y^T`` (:class:`ProblemCache`).
    """
    schedule = schedule or RecordSchedule()
    cache = ProblemCache(registry, yt)
    results: list[CellResult] = []

    def finish(result: CellResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    for index, cell in enumerate(cells):
        try:
            if observer is not None:
                observer.cell_started(cell, index, len(cells))
            result = run_grid_cell(registry, cell, limits, schedule, cache, observer, repeat)
        except Interrupted as stop:
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

"""What the harness runs and what it returns: a cell, its stopping limits, its result.

A *cell* is one (solver variant, dataset variant, device, dtype, seed) combination of a grid,
run under given stopping limits and record schedule; its result is the list of record points
and how it stopped. These types are shared by the harness, the grid, the run directory and the
worker processes, and import nothing of them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.run.schedule import RecordSchedule

STOP_REASONS = ("max_iter", "max_time", "tol", "diverged", "error", "interrupted", "worker_lost")
# Cells that stopped for a reason outside the cell (Ctrl-C, a worker process killed from
# outside, a dask cluster gone): ``--resume`` runs them again.
RERUN_REASONS = ("interrupted", "worker_lost")


@dataclass(frozen=True)
class Limits:
    """When a cell stops. ``max_time`` is solver seconds; ``tol`` is on relative loss change.
    ``max_iter=None`` puts no cap on the iterations (then ``max_time`` must be set)."""

    max_iter: int | None = 200
    max_time: float | None = None
    tol: float | None = None

    def __post_init__(self) -> None:
        if self.max_iter is None and self.max_time is None:
            raise UserError("a run needs --max-iter or --max-time: without either it would never stop")
        if self.max_iter is not None and self.max_iter < 0:
            raise UserError(f"--max-iter must be >= 0, got {self.max_iter}")
        if self.max_time is not None and not self.max_time > 0:
            raise UserError(f"--max-time must be > 0 seconds, got {self.max_time}")
        if self.tol is not None and not self.tol >= 0:
            raise UserError(f"--tol must be >= 0, got {self.tol}")
        for flag, value in (("--max-time", self.max_time), ("--tol", self.tol)):
            if value is not None and not math.isfinite(value):
                raise UserError(f"{flag} must be finite, got {value}")
        # one spelling per value: 2 and 2.0 are the same limit, and the same cell id
        for name in ("max_time", "tol"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class Cell:
    """One (solver, dataset, device, dtype, seed) combination, run under ``limits`` with
    records at the iterations of ``schedule``."""

    solver: Variant
    dataset: Variant
    device: str
    dtype: str
    seed: int
    limits: Limits = Limits()
    schedule: RecordSchedule = RecordSchedule()

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

        Hash of everything that determines its result: the solver and dataset names with
        their fully resolved parameters, the device, dtype and seed, the stopping limits and
        the record schedule. The same cell in two runs, or in a resumed run, has the same id;
        a cell run to other limits has another.
        """
        limits, schedule = self.limits, self.schedule
        identity = [self.solver.name, self.solver.params_json(), self.dataset.name,
                    self.dataset.params_json(), self.device, self.dtype, self.seed,
                    limits.max_iter, limits.max_time, limits.tol, schedule.dense, schedule.per_decade]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.solver.label} on {self.dataset.label} ({self.device}, {self.dtype}, seed {self.seed})"

    def problem_key(self, objective: str) -> str:
        """The problem this cell solves, as canonical JSON: the dataset with its resolved
        parameters, the dtype, the seed and the objective's canonical name (device and solver
        left out: every solver of one problem, on any device, solves the same one)."""
        return json.dumps({"dataset": self.dataset.name, "params": json.loads(self.dataset.params_json()),
                           "dtype": self.dtype, "seed": self.seed, "objective": objective},
                          sort_keys=True, separators=(",", ":"))


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

    def ensure_row(self, iteration: int, time_s: float) -> None:
        """An errored or interrupted cell still leaves one row so it shows in the results."""
        if not self.records or self.records[-1]["iteration"] != iteration:
            self.records.append({"iteration": iteration, "time_s": time_s, "loss": math.nan})


def failed_result(cell: Cell, stop_reason: str, error: str) -> CellResult:
    """A cell that produced no records of its own (load error, crash, interrupt): one row."""
    result = CellResult(cell, stop_reason=stop_reason, error=error)
    result.ensure_row(0, 0.0)
    return result


class CellObserver:
    """Hooks the harness calls so a progress display can follow along (all optional)."""

    def cell_started(self, cell: Cell, index: int, total: int) -> None: ...

    def recorded(self, cell: Cell, iteration: int, time_s: float, loss: float) -> None: ...

    def repeat_started(self, cell: Cell, repeat: int, total: int) -> None: ...

    def cell_finished(self, result: CellResult) -> None: ...

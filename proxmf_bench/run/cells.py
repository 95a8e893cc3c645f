"""What the harness runs and what it returns: a cell, its stopping limits, its result.

A *cell* is one (solver variant, dataset variant, device, dtype, seed) combination of a grid;
its result is the list of record points and how it stopped. These types are shared by the
harness, the grid, the run directory and the worker processes, and import nothing of them.
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

STOP_REASONS = ("max_iter", "max_time", "tol", "diverged", "error", "interrupted")


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

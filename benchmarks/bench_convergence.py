"""asv: iterations and solver time to reach 1e-4 relative suboptimality (lower is better).

A fixed-seed synthetic problem (200 x 300, rank 3, noise 0.2, float64, 1 thread) on which
every solver family converges to the same minimum. ``f*`` is the loss after 2000 sweeps of
HALS from the shared initial factors (``benchmarks.common.hals_reference_loss``), so adding a
solver does not move it. Each family's default variant runs in the harness for at most
``CAP`` iterations with its loss recorded at every iteration (outside the clock); a family that
never gets within ``1e-4 f*`` of ``f*`` reports NaN (asv shows it as failed).
"""

from __future__ import annotations

import math

from benchmarks.common import default_solver, hals_reference_loss, stepped_solvers, synthetic, timing_conditions
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule

TARGET = 1e-4
CAP = 5000
PROBLEM = {"m": 200, "n": 300, "rank": 3, "noise": 0.2}


def first_hit(records: list[dict], f_star: float, target: float = TARGET) -> tuple[float, float]:
    """(iteration, solver seconds) of the first record with ``(f - f*) / f* <= target``."""
    for rec in records:
        if rec["loss"] - f_star <= target * f_star:
            return float(rec["iteration"]), rec["time_s"]
    return math.nan, math.nan


class TrackConvergence:
    params = (stepped_solvers(),)
    param_names = ("solver",)
    timeout = 600

    def setup_cache(self):
        timing_conditions()
        full = synthetic(**PROBLEM)
        problem = Problem(Y=full.Y, rank=full.rank, name=full.name)  # no metrics: loss only
        f_star = hals_reference_loss(problem, sweeps=2000)
        W0, H0 = initial_factors(problem, 0)
        hits = {}
        for name in stepped_solvers():
            cell = Cell(Variant(name, {}, name), Variant("synthetic", {}, "synthetic"), "cpu", "float64", 0)
            result = run_cell(lambda name=name: default_solver(name), cell, problem, W0.clone(), H0.clone(),
                              Limits(max_iter=CAP), RecordSchedule(dense=CAP))
            hits[name] = first_hit(result.records, f_star)
        return hits

    def track_iterations_to_1e4(self, hits, solver):
        return hits[solver][0]

    track_iterations_to_1e4.unit = "iterations"

    def track_time_to_1e4(self, hits, solver):
        return hits[solver][1]

    track_time_to_1e4.unit = "seconds"

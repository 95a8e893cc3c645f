"""asv, pull-request subset, hard gate: the quality every stepped solver family reaches at fixed
iteration budgets. Deterministic (one thread, float64, fixed seeds, records outside the clock), so
a change is a change of the arithmetic, never noise: CI fails on any change above 1 %.

A fixed synthetic problem (120 x 90, rank 4, noise 0.1); ``f*`` is the loss after 3000 sweeps
of plain HALS from the shared start (``benchmarks.common.hals_reference_loss``, code of the
benchmark suite, so that it is the same for every commit compared). Tracked per family (default
variant): the relative suboptimality ``(f - f*) / f*`` after 20 and 200 iterations (floored at
1e-15, so a solver that beats ``f*`` reads 1e-15) and the iterations to reach 1e-4 (NaN if not
within 3000: asv shows it as failed). Lower is better. Part of the subset selected by
``-b '^pr_'`` (README, "Performance tracking").
"""

from __future__ import annotations

import math

from benchmarks.common import (
    PR_SOLVERS,
    default_solver,
    hals_reference_loss,
    require_registered,
    stepped_solvers,
    synthetic,
    timing_conditions,
)
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule

PROBLEM = {"m": 120, "n": 90, "rank": 4, "noise": 0.1}
BUDGETS = (20, 200)
TARGET = 1e-4
CAP = 3000
FLOOR = 1e-15


def quality(records: list[dict], f_star: float) -> dict[str, float]:
    """Suboptimality at each budget of :data:`BUDGETS` and the iterations to :data:`TARGET`."""
    by_iteration = {rec["iteration"]: rec["loss"] for rec in records}
    out = {f"subopt_{k}": max((by_iteration[k] - f_star) / f_star, FLOOR) if k in by_iteration else math.nan
           for k in BUDGETS}
    hits = [rec["iteration"] for rec in records if rec["loss"] - f_star <= TARGET * f_star]
    out["iterations"] = float(hits[0]) if hits else math.nan
    return out


class TrackQuality:
    params = (list(PR_SOLVERS),)
    param_names = ("solver",)
    timeout = 300

    def setup(self, results, solver):
        require_registered("solvers", solver)

    def setup_cache(self):
        timing_conditions()
        full = synthetic(**PROBLEM)
        problem = Problem(Y=full.Y, rank=full.rank, name=full.name)  # loss only: no metrics
        f_star = hals_reference_loss(problem, sweeps=CAP)
        W0, H0 = initial_factors(problem, 0)
        results = {}
        for name in sorted(set(PR_SOLVERS) & set(stepped_solvers())):
            cell = Cell(Variant(name, {}, name), Variant("synthetic", {}, "synthetic"), "cpu", "float64", 0)
            result = run_cell(lambda name=name: default_solver(name), cell, problem, W0.clone(), H0.clone(),
                              Limits(max_iter=CAP), RecordSchedule(dense=CAP))
            results[name] = quality(result.records, f_star)
        return results

    def track_subopt_at_20(self, results, solver):
        return results[solver]["subopt_20"]

    track_subopt_at_20.unit = "relative suboptimality"

    def track_subopt_at_200(self, results, solver):
        return results[solver]["subopt_200"]

    track_subopt_at_200.unit = "relative suboptimality"

    def track_iterations_to_1e4(self, results, solver):
        return results[solver]["iterations"]

    track_iterations_to_1e4.unit = "iterations"

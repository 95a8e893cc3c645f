"""asv: what the harness itself costs, measured with a solver whose ``step`` does nothing."""

from __future__ import annotations

from benchmarks.common import SIZES, synthetic, timing_conditions
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule


class Idle:
    """A solver that never moves: a cell's time is then the harness's own."""

    def init(self, problem, W0, H0):
        self.W, self.H = W0, H0

    def step(self):
        pass

    def factors(self):
        return self.W, self.H


class TimeHarness:
    """Harness overhead on the small problem (200 x 500, rank 10, float64).

    ``time_recorded_points``: a cell of 100 iterations that records every one of them (loss,
    and the ground-truth metrics when ``metrics`` is on): 100 times the cost of one recorded
    point. ``time_unrecorded_iterations``: 10 000 iterations of which only 5 are recorded: the
    per-iteration bookkeeping (clock reads, stopping rules) times 10 000.
    """

    params = ([True, False],)
    param_names = ("metrics",)

    def setup(self, metrics):
        timing_conditions()
        problem = synthetic(*SIZES["small"])
        if not metrics:
            problem = Problem(Y=problem.Y, rank=problem.rank, name=problem.name)
        self.problem = problem
        self.W0, self.H0 = initial_factors(problem, 0)
        self.cell = Cell(Variant("idle", {}, "idle"), Variant("synthetic", {}, "synthetic"), "cpu", "float64", 0)

    def _run(self, iterations, schedule):
        run_cell(Idle, self.cell, self.problem, self.W0, self.H0, Limits(max_iter=iterations), schedule)

    def time_recorded_points(self, metrics):
        self._run(100, RecordSchedule(dense=100))

    def time_unrecorded_iterations(self, metrics):
        self._run(10_000, RecordSchedule(dense=1, per_decade=1))

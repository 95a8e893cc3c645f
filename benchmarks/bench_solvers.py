"""asv: seconds per iteration of every built-in stepped solver family, and peak memory of a run."""

from __future__ import annotations

from benchmarks.common import (
    DEVICES,
    DTYPES,
    SIZES,
    default_solver,
    device_or_skip,
    started_solver,
    stepped_solvers,
    synchronize,
    synthetic,
    timing_conditions,
)
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule


class TimeSolverStep:
    """One ``step`` (one iteration) of each solver family's default variant, 1 thread.

    Sizes: small 200 x 500 rank 10, medium 1000 x 1000 rank 20. On CUDA the timed function
    synchronises, so the time is the kernels' and not only their launch.
    """

    params = (stepped_solvers(), list(SIZES), list(DTYPES), list(DEVICES))
    param_names = ("solver", "size", "dtype", "device")
    timeout = 180

    def setup(self, solver, size, dtype, device):
        dev = device_or_skip(device)
        timing_conditions()
        problem = synthetic(*SIZES[size], device=dev, dtype=DTYPES[dtype])
        self.solver = started_solver(solver, problem)
        self.device = dev

    def time_step(self, solver, size, dtype, device):
        self.solver.step()
        synchronize(self.device)


class PeakMemRun:
    """Peak resident memory of a process running 20 recorded iterations of each solver family.

    The medium problem (1000 x 1000, rank 20, float64), in the harness with its ground-truth
    metrics, as ``proxmf-bench run`` would; includes the interpreter and torch themselves.
    """

    params = (stepped_solvers(),)
    param_names = ("solver",)

    def setup(self, solver):
        timing_conditions()
        self.problem = synthetic(*SIZES["medium"])
        self.W0, self.H0 = initial_factors(self.problem, 0)
        self.cell = Cell(Variant(solver, {}, solver), Variant("synthetic", {}, "synthetic"), "cpu", "float64", 0)

    def peakmem_run(self, solver):
        run_cell(lambda: default_solver(solver), self.cell, self.problem, self.W0.clone(), self.H0.clone(),
                 Limits(max_iter=20), RecordSchedule())

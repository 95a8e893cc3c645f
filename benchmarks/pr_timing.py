"""asv, pull-request subset, timing: one step of each stepped solver family and one call of each
prox operator at one size, on the CPU in float64, with settings chosen for a noisy shared runner.

Each sample lasts at least ``sample_time`` (30 ms, many iterations), each round takes 5 to 10
samples, and asv interleaves four rounds per commit (``--interleave-rounds``), so a burst of load
on the runner hits both commits. CI compares these with ``--factor 2.5``, above the noise measured
on a loaded 2-core machine (two runs of the subset on one commit differed by up to 1.99 times,
and prox timings moved by up to 2.4 times between two commits with the same prox code; README,
"Performance tracking"): a shared runner detects a slowdown of 2.5x or more, not a 10 % one. Part of the subset selected by ``-b '^pr_'``;
the solver families and prox operators are listed in ``benchmarks.common`` (``PR_SOLVERS``,
``PR_PROX``).
"""

from __future__ import annotations

# the modules, not their classes: a class imported here would be discovered by asv as a
# benchmark of this module too, with its full grid
from benchmarks import bench_prox, bench_solvers
from benchmarks.common import PR_PROX, PR_SOLVERS, require_registered

NOISY_RUNNER = {"sample_time": 0.03, "repeat": (5, 10, 10.0), "rounds": 4, "warmup_time": 0.1}


class TimeStepPR(bench_solvers.TimeSolverStep):
    """``TimeSolverStep`` at the small size (200 x 500, rank 10), float64, CPU."""

    def setup(self, solver, size, dtype, device):
        require_registered("solvers", solver)
        super().setup(solver, size, dtype, device)

    params = (list(PR_SOLVERS), ["small"], ["float64"], ["cpu"])
    sample_time, repeat, rounds, warmup_time = (NOISY_RUNNER[k] for k in ("sample_time", "repeat", "rounds",
                                                                          "warmup_time"))


class TimeProxPR(bench_prox.TimeProx):
    """``TimeProx`` on 10^5 elements, float64, CPU."""

    def setup(self, prox, size, dtype, device):
        require_registered("prox", prox)
        super().setup(prox, size, dtype, device)

    params = (list(PR_PROX), [10**5], ["float64"], ["cpu"])
    sample_time, repeat, rounds, warmup_time = (NOISY_RUNNER[k] for k in ("sample_time", "repeat", "rounds",
                                                                          "warmup_time"))

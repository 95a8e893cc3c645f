"""Black-box peers continued from their last factors: same iterates as one long call, and the
wall time of a cell against its solver time.

Run ``python benchmarks/peer_continuation.py`` (``--quick``: 100 iterations). For each
installed peer, on one problem (CPU, 1 thread, float64):

- ``same iterates``: the factors after the harness's sequence of continued calls (budgets
  1, 2, ..., 10, 12, 14, ... up to ``--iters``) against one call of ``--iters`` iterations
  (largest absolute difference; 0 means bit for bit);
- ``wall / solver``: the wall time of the whole harness cell (warm-up call, calls, loss and
  metrics at every record point) over its recorded solver time, continued (the peer as
  registered) and restarted (every call from the initial factors, as before continuation);
- ``solver / one call``: the continued cell's solver time over the duration of one call of
  ``--iters`` iterations (after a warm-up call): 1 when the harness's correction for the
  library's fixed cost per call (input checks, set-up) is exact.

Cells and single calls are timed ``--repeats`` times (best kept): on a shared machine single
timings of a few hundred milliseconds move by tens of percent.
"""

from __future__ import annotations

import argparse
import time

import torch

PROBLEM = "synthetic[m=200,n=500,rank=10,noise=0.1]"


def restarted(factory):
    """The same peer with continuation turned off."""

    class Restarted(factory):
        continues = False

    return Restarted


def same_iterates(solver, problem, W0, H0, iters: int) -> float:
    from proxmf_bench.run.schedule import RecordSchedule

    schedule = RecordSchedule()
    W, H, done = W0.clone(), H0.clone(), 0
    while done < iters:
        budget = min(schedule.next_after(done), iters)
        W, H = solver.solve(problem, W.clone(), H.clone(), budget - done)
        done = budget
    W_long, H_long = solver.solve(problem, W0.clone(), H0.clone(), iters)
    return max(float((W.double() - W_long.double()).abs().max()), float((H.double() - H_long.double()).abs().max()))


def one_call(solver, problem, W0, H0, iters: int, repeats: int) -> float:
    solver.solve(problem, W0.clone(), H0.clone(), 1)
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        solver.solve(problem, W0.clone(), H0.clone(), iters)
        best = min(best, time.perf_counter() - tic)
    return best


def cell(registry, variant, dataset, problem, start, factory, iters: int):
    from proxmf_bench.run.cells import Cell, Limits
    from proxmf_bench.run.harness import run_cell
    from proxmf_bench.run.schedule import RecordSchedule

    wall = time.perf_counter()
    result = run_cell(factory, Cell(variant, dataset, "cpu", "float64", 0), problem, start.W0, start.H0,
                      Limits(max_iter=iters), RecordSchedule(), start=start)
    wall = time.perf_counter() - wall
    if result.stop_reason != "max_iter":
        raise RuntimeError(f"{variant.label} stopped with {result.stop_reason}: {result.error}")
    return wall, result


def best_cell(repeats: int, *args) -> tuple[float, float]:
    """(wall / solver time, solver time) of the fastest of ``repeats`` cells."""
    best = None
    for _ in range(repeats):
        wall, result = cell(*args)
        solver_time = result.records[-1]["time_s"]
        if best is None or solver_time < best[1]:
            best = (wall / solver_time, solver_time)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000, help="iterations per cell (default: 1000)")
    parser.add_argument("--quick", action="store_true", help="100 iterations")
    parser.add_argument("--problem", default=PROBLEM)
    parser.add_argument("--repeats", type=int, default=3, help="timings of each cell and call (best kept)")
    args = parser.parse_args()

    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.start import StartingPoint, initial_factors
    from proxmf_bench.solve.blackbox import is_black_box

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    iters = 100 if args.quick else args.iters
    repeats = args.repeats
    registry = load_registry(use_entry_points=False)
    dataset = select(args.problem, registry.datasets, registry, "dataset")[0]
    problem = registry.get_dataset(dataset.name).load(dataset.params, 0, torch.device("cpu"), torch.float64)
    start = StartingPoint(problem, *initial_factors(problem, 0))
    peers = sorted(n for n, s in registry.solvers.items() if is_black_box(s.factory))
    print(f"{args.problem}, float64, 1 thread, {iters} iterations, torch {torch.__version__}")
    print(f"{'peer':>20} {'same iterates (max |diff|)':>27} {'wall/solver continued':>22} {'restarted':>10}"
          f" {'solver / one call':>18}")
    for name in peers:
        for variant in select(name, registry.solvers, registry, "solver"):
            factory = registry.get_solver(name).factory
            solver = factory(**variant.params)
            diff = same_iterates(solver, problem, start.W0, start.H0, iters)
            args = (registry, variant, dataset, problem, start)
            ratio, solver_time = best_cell(repeats, *args, factory, iters)
            before, _ = best_cell(1, *args, restarted(factory), iters)
            single = one_call(solver, problem, start.W0, start.H0, iters, repeats)
            print(f"{variant.label:>20} {diff:27.1e} {ratio:22.2f} {before:10.2f} {solver_time / single:18.2f}",
                  flush=True)


if __name__ == "__main__":
    main()

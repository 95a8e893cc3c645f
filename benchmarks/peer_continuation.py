"""Black-box peers continued from their last factors: same iterates as one long call, and the
wall time of a cell against its solver time.

Run ``python benchmarks/peer_continuation.py`` (``--quick``: 100 iterations). For each
installed peer, on one problem (CPU, 1 thread, float64):

- ``same iterates``: the factors after the harness's sequence of continued calls (budgets
  1, 2, ..., 10, 12, 14, ... up to ``--iters``) against one call of ``--iters`` iterations
  (largest absolute difference; 0 means bit for bit);
- ``wall / solver``: the wall time of the whole harness cell (warm-up call, calls, loss and
  metrics at every record point) over its recorded solver time, continued (the peer as
  registered) and restarted (every call from the initial factors, as before continuation).
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


def wall_over_solver(registry, variant, dataset, problem, start, factory, iters: int) -> float:
    from proxmf_bench.run.cells import Cell, Limits
    from proxmf_bench.run.harness import run_cell
    from proxmf_bench.run.schedule import RecordSchedule

    cell = Cell(variant, dataset, "cpu", "float64", 0)
    wall = time.perf_counter()
    result = run_cell(factory, cell, problem, start.W0, start.H0, Limits(max_iter=iters), RecordSchedule(), start=start)
    wall = time.perf_counter() - wall
    if result.stop_reason != "max_iter":
        raise RuntimeError(f"{variant.label} stopped with {result.stop_reason}: {result.error}")
    return wall / result.records[-1]["time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000, help="iterations per cell (default: 1000)")
    parser.add_argument("--quick", action="store_true", help="100 iterations")
    parser.add_argument("--problem", default=PROBLEM)
    args = parser.parse_args()

    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.start import StartingPoint, initial_factors
    from proxmf_bench.solve.blackbox import is_black_box

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    iters = 100 if args.quick else args.iters
    registry = load_registry(use_entry_points=False)
    dataset = select(args.problem, registry.datasets, registry, "dataset")[0]
    problem = registry.get_dataset(dataset.name).load(dataset.params, 0, torch.device("cpu"), torch.float64)
    start = StartingPoint(problem, *initial_factors(problem, 0))
    peers = sorted(n for n, s in registry.solvers.items() if is_black_box(s.factory))
    print(f"{args.problem}, float64, 1 thread, {iters} iterations, torch {torch.__version__}")
    print(f"{'peer':>32} {'same iterates (max |diff|)':>27} {'wall/solver continued':>22} {'restarted':>10}")
    for name in peers:
        for variant in select(name, registry.solvers, registry, "solver"):
            factory = registry.get_solver(name).factory
            diff = same_iterates(factory(**variant.params), problem, start.W0, start.H0, iters)
            ratio = wall_over_solver(registry, variant, dataset, problem, start, factory, iters)
            before = wall_over_solver(registry, variant, dataset, problem, start, restarted(factory), iters)
            print(f"{variant.label:>32} {diff:27.1e} {ratio:22.2f} {before:10.2f}", flush=True)


if __name__ == "__main__":
    main()

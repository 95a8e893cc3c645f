"""Side-by-side timing: ``mu`` and ``pgm`` in the harness vs bare torch loops (same products).

Run ``python -m benchmarks.compare_mu_floor`` (``--quick`` for a short smoke). For each solver,
size and dtype it alternates the harness run and the bare loop several times in one process
(1 thread, denormals flushed) and prints the best per-iteration time of each and their ratio
(target <= 1.1). Each harness run lasts about 1 s of solver time, and the last column is its
harness overhead: wall time of the whole cell (loss and metrics at the record points included)
over the solver time the harness measured, minus one (target < 2%), best and median of the
repeats. The loss at the starting
point, computed once per problem and shared by all its cells (an ``m x n x r`` product), is
not in it: ``start ms`` is its cost.

The bare loops are the floor: the matrix products of one iteration, each in its fastest layout,
and the elementwise work around them, nothing else (``benchmarks.floor_table``, which states the
layouts and compares every solver family on real data). ``pgm`` is compared when it is registered. ``--no-ground-truth``
drops the synthetic problem's ground truth, so that record points cost the loss alone.

On a GPU: ``--device cuda --sizes 20000x10000x50 --dtypes float32`` (also prints the CPU
time of the bare loop at that size for the speed-up, unless ``--no-cpu``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.floor_table import BARE as BARE_LOOPS

SIZES = ((200, 500, 10), (1000, 1000, 20), (5000, 2000, 40))


BARE = {name: BARE_LOOPS[name] for name in ("mu", "pgm")}


Loop = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def measure_bare(loop: Loop, Y: torch.Tensor, W0: torch.Tensor, H0: torch.Tensor, iters: int,
                 Yt: torch.Tensor | None = None) -> float:
    """Seconds per iteration of a bare loop from copies of ``(W0, H0)`` (``Yt``: ``Y^T`` row-major)."""
    W, H = W0.clone(), H0.clone()
    Yt = Y.T.contiguous() if Yt is None else Yt
    sync = torch.cuda.synchronize if Y.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    loop(Y, Yt, W, H, iters)
    sync()
    return (time.perf_counter() - start) / iters


def measure_harness(registry, solver: str, start, iters: int) -> tuple[float, float]:
    """Per-iteration solver time of ``solver`` in the harness from ``start`` (a
    :class:`~proxmf_bench.problem.start.StartingPoint`), and the cell's wall/solver ratio."""
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.run.cells import Cell, Limits
    from proxmf_bench.run.harness import run_cell
    from proxmf_bench.run.schedule import RecordSchedule

    problem = start.problem
    cell = Cell(select_solver(registry, solver), select("synthetic", registry.datasets, registry, "dataset")[0],
                str(problem.device), str(problem.dtype).removeprefix("torch."), 0)
    factory = registry.get_solver(solver).factory
    wall = time.perf_counter()
    result = run_cell(factory, cell, problem, *start.copies(), Limits(max_iter=iters), RecordSchedule(), start=start)
    wall = time.perf_counter() - wall
    if result.stop_reason != "max_iter":
        raise RuntimeError(f"{solver} stopped with {result.stop_reason}: {result.error}")
    solver_time = result.records[-1]["time_s"]
    return solver_time / iters, wall / solver_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small size, few iterations")
    parser.add_argument("--repeats", type=int, default=3, help="alternations per case (best is kept)")
    parser.add_argument("--solvers", default="mu,pgm", help="comma-separated, among: " + ", ".join(BARE))
    parser.add_argument("--sizes", default=None, help="e.g. 200x500x10,1000x1000x20 (default: the three targets)")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="solver time of each harness run")
    parser.add_argument("--no-cpu", action="store_true", help="on CUDA, skip the CPU bare loop")
    parser.add_argument("--no-ground-truth", action="store_true",
                        help="drop the ground truth, so record points evaluate the loss only (no metrics)")
    args = parser.parse_args()

    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.problem.problem import Problem
    from proxmf_bench.problem.start import StartingPoint, initial_factors

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    registry = load_registry(use_entry_points=False)
    solvers = [s for s in args.solvers.split(",") if s in registry.solvers]
    if not solvers:
        raise SystemExit(f"none of {args.solvers} is registered")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")] if args.sizes else SIZES
    sizes = sizes[:1] if args.quick else sizes
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if on_gpu else ""))
    header = (f"{'solver':>6} {'size':>18} {'dtype':>8} {'bare ms/it':>11} {'harness ms/it':>14} {'ratio':>6}"
              f" {'overhead best/median':>21} {'start ms':>8}")
    print(header + (f" {'CPU bare ms/it':>15} {'speed-up':>9}" if on_gpu and not args.no_cpu else ""))
    for m, n, r in sizes:
        for dtype in args.dtypes.split(","):
            problem = registry.get_dataset("synthetic").load(
                select_params(registry, m, n, r), 0, device, getattr(torch, dtype))
            if args.no_ground_truth:
                problem = Problem(Y=problem.Y, rank=problem.rank, name=problem.name)
            W0, H0 = initial_factors(problem, 0)
            start = StartingPoint(problem, W0.clone(), H0.clone())
            tic = time.perf_counter()
            start.loss_at(W0, H0)  # once per problem, shared by its cells: reported on its own
            start_ms = 1e3 * (time.perf_counter() - tic)
            for solver in solvers:
                loop = BARE[solver]
                probe = measure_bare(loop, problem.Y, W0, H0, 3, problem.Yt)
                iters = max(5, int(args.seconds / probe))
                if args.quick:
                    iters = min(iters, 50)
                bare, harness, overhead = [], [], []
                for _ in range(args.repeats):
                    bare.append(measure_bare(loop, problem.Y, W0, H0, iters, problem.Yt))
                    per_it, wall_ratio = measure_harness(registry, solver, start, iters)
                    harness.append(per_it)
                    overhead.append(wall_ratio - 1.0)
                b, h = min(bare), min(harness)
                line = (f"{solver:>6} {f'{m}x{n} r{r}':>18} {dtype:>8} {1e3 * b:11.3f} {1e3 * h:14.3f}"
                        f" {h / b:6.3f} {100 * min(overhead):9.2f}% {100 * statistics.median(overhead):9.2f}%"
                        f" {start_ms:8.2f}")
                if on_gpu and not args.no_cpu:
                    Y_cpu, W_cpu, H_cpu = (X.cpu() for X in (problem.Y, W0, H0))
                    cpu = measure_bare(loop, Y_cpu, W_cpu, H_cpu, max(2, min(iters, 5)))
                    line += f" {1e3 * cpu:15.3f} {cpu / b:8.1f}x"
                print(line, flush=True)


def select_solver(registry, name: str):
    """The first default variant of solver family ``name`` (what ``--solvers name`` runs first)."""
    from proxmf_bench.plugin.selection import select

    return select(name, registry.solvers, registry, "solver")[0]


def select_params(registry, m: int, n: int, r: int) -> dict:
    """The synthetic dataset's full parameters for an ``m x n`` rank-``r`` problem."""
    from proxmf_bench.plugin.selection import select

    return select(f"synthetic[m={m},n={n},rank={r}]", registry.datasets, registry, "dataset")[0].params


if __name__ == "__main__":
    main()

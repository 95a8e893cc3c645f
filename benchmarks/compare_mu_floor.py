"""Side-by-side timing: ``mu`` inside the harness vs a bare torch MU loop (same products).

Run ``python benchmarks/compare_mu_floor.py`` (``--quick`` for a short smoke). For each size
and dtype it alternates the two several times in one process, 1 thread, denormals flushed,
and prints the best per-iteration time of each and their ratio (target <= 1.1), plus the
harness overhead on a run of about 1 s: wall time of the whole cell (loss and metrics at
record points included) over the solver time the harness measured.
"""

from __future__ import annotations

import argparse
import time

import torch

SIZES = ((200, 500, 10), (1000, 1000, 20), (5000, 2000, 40))


def bare_mu(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int, eps: float = 1e-12) -> float:
    """The floor: a plain MU loop with the same matrix products. Returns seconds per iteration."""
    start = time.perf_counter()
    for _ in range(iters):
        H *= (W.T @ Y) / (W.T @ W @ H).clamp_min(eps)
        H.clamp_min_(eps)
        W *= (Y @ H.T) / (W @ (H @ H.T)).clamp_min(eps)
        W.clamp_min_(eps)
    return (time.perf_counter() - start) / iters


def harness_mu(m: int, n: int, r: int, dtype: str, iters: int) -> tuple[float, float]:
    """Per-iteration solver time of ``mu`` in the harness and the cell's wall/solver ratio."""
    from proxmf_bench.harness import Cell, Limits, run_cell
    from proxmf_bench.plugins import load_registry
    from proxmf_bench.problem import initial_factors
    from proxmf_bench.schedule import RecordSchedule
    from proxmf_bench.selection import select

    registry = load_registry(use_entry_points=False)
    solver = select("mu", registry.solvers, registry, "solver")[0]
    dataset = select(f"synthetic[m={m},n={n},rank={r}]", registry.datasets, registry, "dataset")[0]
    problem = registry.get_dataset("synthetic").load(dataset.params, 0, torch.device("cpu"), getattr(torch, dtype))
    W0, H0 = initial_factors(problem, 0)
    cell = Cell(solver, dataset, "cpu", dtype, 0)
    wall = time.perf_counter()
    result = run_cell(registry.get_solver("mu").factory, cell, problem, W0, H0, Limits(max_iter=iters), RecordSchedule())
    wall = time.perf_counter() - wall
    solver_time = result.records[-1]["time_s"]
    return solver_time / iters, wall / solver_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    sizes = SIZES[:1] if args.quick else SIZES
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'size':>18} {'dtype':>8} {'bare ms/it':>11} {'harness ms/it':>14} {'ratio':>6} {'wall/solver (~1 s run)':>24}")
    for m, n, r in sizes:
        for dtype in ("float64", "float32"):
            Y = torch.rand(m, n, dtype=getattr(torch, dtype))
            W0 = torch.rand(m, r, dtype=Y.dtype)
            H0 = torch.rand(r, n, dtype=Y.dtype)
            probe = bare_mu(Y, W0.clone(), H0.clone(), 3)
            iters = max(5, int(1.0 / probe))  # about one second of solver time
            if args.quick:
                iters = min(iters, 50)
            bare, harness, overhead = [], [], []
            for _ in range(args.repeats):
                bare.append(bare_mu(Y, W0.clone(), H0.clone(), iters))
                per_it, wall_ratio = harness_mu(m, n, r, dtype, iters)
                harness.append(per_it)
                overhead.append(wall_ratio)
            b, h = min(bare), min(harness)
            print(f"{f'{m}x{n} r{r}':>18} {dtype:>8} {1e3 * b:11.3f} {1e3 * h:14.3f} {h / b:6.3f} {min(overhead):24.3f}")


if __name__ == "__main__":
    main()

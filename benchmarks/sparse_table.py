"""Sparse data: per-iteration time of ``mu`` and ``fista`` against bare torch sparse loops and
against the same matrix densified, and the peak memory of a sparse run.

Run ``python -m benchmarks.sparse_table`` (a few minutes on 2 cores; ``--quick``: a tiny
problem, seconds). The problem is ``sparse_synthetic`` (Poisson counts of a rank-``r``
intensity), by default 100000 x 20000 at density 1e-3, rank 20, float32 (2 million nonzeros).
In one process on ``--threads`` threads, it alternates ``--repeats`` times:

1. ``mu`` and ``fista`` (``restart=function``, the default variant) through their solver
   objects on the sparse :class:`~proxmf_bench.problem.problem.Problem` (``step()`` timed over
   ``--iters`` iterations), and the bare loops that do the same sparse products and
   elementwise work (``(Yt @ W)^T`` for :math:`W^\\top Y`, ``(Y @ H^T)^T`` for :math:`H Y^\\top`,
   ``Y`` and ``Yt`` torch sparse CSR), nothing else (``fista``'s with its function-value
   restart test, as in ``benchmarks.floor_table``): target ratio within 1.1;
2. the same solvers on the first ``--dense-rows`` rows of the matrix, sparse and densified
   (the full matrix densified is 8 GB in float32, twice that with the problem's ``Yt``, more
   than a shared machine should give one benchmark; ``--dense-rows 100000`` runs it whole).

It prints the best per-iteration time of each, the ratio of the bests and the median of the
per-repeat ratios. Then, in a fresh subprocess per solver, it measures the peak resident
memory of a run (load the CSR arrays, build the problem with its CSR ``Yt``, draw the initial
factors, ``--iters`` steps each followed by the float64 loss :meth:`Problem.loss`), as the
rise of the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` after the
imports and one step on a tiny problem, which loads the code run) over the resident set then, against the bound ``2 x`` the CSR bytes of
``Y`` plus ``16 (m + n) r`` factor-sized words.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.floor_table import largest_eigenvalue

EPS = 1e-12
FACTOR_WORDS = 16  # factor-sized arrays allowed in the memory bound: (m + n) r words each, 16 of them


def csr_bytes(Y: torch.Tensor) -> int:
    """Bytes of a CSR tensor's three arrays."""
    return sum(A.numel() * A.element_size() for A in (Y.crow_indices(), Y.col_indices(), Y.values()))


def bare_mu(Y: torch.Tensor, Yt: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int):
    """MU (Lee-Seung, epsilon-floored) with the two sparse products per iteration, as
    ``benchmarks.floor_table.bare_mu``; returns ``(W, H)``."""
    W.clamp_min_(EPS)
    H.clamp_min_(EPS)
    WtW = W.mT @ W
    for _ in range(iters):
        H.mul_((Yt @ W).mT.div_((WtW @ H).clamp_min_(EPS))).clamp_min_(EPS)
        HHt = H @ H.mT
        W.mul_((Y @ H.mT).div_((W @ HHt).clamp_min_(EPS))).clamp_min_(EPS)
        WtW = W.mT @ W
    return W, H


def bare_fista(Y: torch.Tensor, Yt: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int):
    """Alternating FISTA with nonnegativity, step ``1 / L`` per block and function-value restart
    (``fista``'s default), as ``benchmarks.floor_table.bare_fista`` with the sparse products;
    returns ``(W, H)``."""
    Y_norm2 = float(torch.linalg.vector_norm(Y.values(), dtype=torch.float64) ** 2)
    Wt = W.mT.contiguous()
    theta, objective = 1.0, math.inf
    H_prev = Wt_prev = None
    for _ in range(iters):
        theta_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * theta**2))
        beta = (theta - 1.0) / theta_next
        G = Wt @ Wt.mT
        t = 1.0 / largest_eigenvalue(G)
        V = H if H_prev is None or beta == 0 else H.lerp(H_prev, -beta)
        H_prev, H = H, torch.addmm(torch.add(V, (Yt @ Wt.mT).mT, alpha=t), G, V, alpha=-t).clamp_min_(0)
        G = H @ H.mT
        C = (Y @ H.mT).mT
        t = 1.0 / largest_eigenvalue(G)
        V = Wt if Wt_prev is None or beta == 0 else Wt.lerp(Wt_prev, -beta)
        Wt_prev, Wt = Wt, torch.addmm(torch.add(V, C, alpha=t), G, V, alpha=-t).clamp_min_(0)
        value = 0.5 * (Y_norm2 - 2.0 * float(torch.sum(C * Wt, dtype=torch.float64))
                       + float(torch.sum((G @ Wt) * Wt, dtype=torch.float64)))
        theta = 1.0 if value > objective else theta_next
        objective = value
    return Wt.mT, H


BARE = {"mu": bare_mu, "fista": bare_fista}


def measure_solver(registry, name: str, problem, W0, H0, iters: int) -> float:
    from proxmf_bench.plugin.selection import select

    (variant,) = select(name if name != "fista" else "fista[restart=function]", registry.solvers, registry, "solver")
    solver = registry.get_solver(variant.name).factory(**variant.params)
    solver.init(problem, W0.clone(), H0.clone())
    solver.step()  # warm-up: first-call costs (MKL handles, allocations)
    start = time.perf_counter()
    for _ in range(iters):
        solver.step()
    return (time.perf_counter() - start) / iters


def measure_bare(name: str, problem, W0, H0, iters: int) -> float:
    W, H = W0.clone(), H0.clone()
    BARE[name](problem.Y, problem.Yt, W, H, 1)
    start = time.perf_counter()
    BARE[name](problem.Y, problem.Yt, W, H, iters)
    return (time.perf_counter() - start) / iters


def rows_of(Y: torch.Tensor, rows: int) -> torch.Tensor:
    """The first ``rows`` rows of a CSR tensor (a CSR tensor of their arrays)."""
    crow = Y.crow_indices()[: rows + 1]
    end = int(crow[-1])
    return torch.sparse_csr_tensor(crow.clone(), Y.col_indices()[:end].clone(), Y.values()[:end].clone(),
                                   size=(rows, Y.shape[1]), check_invariants=False)


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def interleaved(cases: dict, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for key, run in cases.items():
            times[key].append(run())
    return times


def ratio_cells(a: list[float], b: list[float]) -> list[str]:
    best = min(a) / min(b)
    median = statistics.median(x / y for x, y in zip(a, b))
    return [f"{1e3 * min(a):.2f}", f"{1e3 * min(b):.2f}", f"{best:.3f}", f"{median:.3f}"]


MEMORY_CHILD = r"""
import json, resource, sys, warnings
import numpy as np, torch
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return None

directory, solver_name, iters, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
registry = load_registry(use_entry_points=False)
(variant,) = select(solver_name, registry.solvers, registry, "solver")
solver = registry.get_solver(variant.name).factory(**variant.params)
meta = json.load(open(f"{directory}/meta.json"))
# the same code paths once on a tiny problem: code and libraries loaded on first use are the
# interpreter's, not the run's
tiny = Problem(Y=torch.eye(8, dtype=torch.float32).to_sparse_csr(), rank=2)
solver.init(tiny, *initial_factors(tiny, 0))
solver.step()
tiny.loss(*solver.factors())
try:
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current resident set
    reset = True
except OSError:
    reset = False
base = status("VmRSS:")
arrays = [torch.from_numpy(np.load(f"{directory}/{k}.npy")) for k in ("crow", "col", "val")]
Y = torch.sparse_csr_tensor(*arrays, size=tuple(meta["shape"]), check_invariants=False)
problem = Problem(Y=Y, rank=meta["rank"])
W0, H0 = initial_factors(problem, 0)
solver.init(problem, W0, H0)
for _ in range(iters):
    solver.step()
    problem.loss(*solver.factors())
peak = status("VmHWM:") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak, "reset": reset}))
"""


def measure_memory(problem, solver: str, iters: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        Y = problem.Y
        for key, A in (("crow", Y.crow_indices()), ("col", Y.col_indices()), ("val", Y.values())):
            np.save(f"{directory}/{key}.npy", A.numpy())
        Path(directory, "meta.json").write_text(json.dumps({"shape": list(Y.shape), "rank": problem.rank}))
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, directory, solver, str(iters), str(threads)],
                             capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_dense(registry, problem, args) -> None:
    """The table of ``mu`` and ``fista`` on the first ``--dense-rows`` rows, sparse and densified."""
    from proxmf_bench.problem.problem import Problem
    from proxmf_bench.problem.start import initial_factors

    rows = min(args.dense_rows, args.m)
    sub = Problem(Y=rows_of(problem.Y, rows), rank=args.rank)
    dense = Problem(Y=sub.Y.to_dense(), rank=args.rank)
    Ws, Hs = initial_factors(sub, 0)
    print(f"\nsparse vs densified, first {rows} rows ({rows} x {args.n}, {sub.Y.values().numel()} nonzeros; "
          f"dense Y {4 * rows * args.n / 2**30:.2f} GiB plus its Yt)")
    print(_row(["solver", "sparse ms", "dense ms", "dense / sparse (best)", "dense / sparse (median)"]))
    print(_row(["---"] * 5))
    for name in ("mu", "fista"):
        times = interleaved({"dense": lambda name=name: measure_solver(registry, name, dense, Ws, Hs, args.iters),
                             "sparse": lambda name=name: measure_solver(registry, name, sub, Ws, Hs, args.iters)},
                            args.repeats)
        cells = ratio_cells(times["dense"], times["sparse"])
        print(_row([name, cells[1], cells[0], cells[2], cells[3]]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny problem, few iterations (a smoke test)")
    parser.add_argument("--m", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--density", type=float, default=1e-3)
    parser.add_argument("--dense-rows", type=int, default=12_500,
                        help="rows of the sparse-vs-densified comparison (default 12500: 1 GB dense in float32)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per run (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="alternations (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.quick:
        args.m, args.n, args.rank, args.density, args.dense_rows = 2000, 800, 5, 0.01, 500
        args.iters, args.repeats = 3, 2

    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.start import initial_factors

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    registry = load_registry(use_entry_points=False)
    text = f"sparse_synthetic[m={args.m},n={args.n},rank={args.rank},density={args.density:g}]"
    (variant,) = select(text, registry.datasets, registry, "dataset")
    started = time.perf_counter()
    problem = registry.get_dataset("sparse_synthetic").load(variant.params, 0, torch.device("cpu"), torch.float32)
    nnz = problem.Y.values().numel()
    print(f"{text} in float32: {nnz} nonzeros, CSR {csr_bytes(problem.Y) / 2**20:.1f} MiB "
          f"(generated in {time.perf_counter() - started:.1f} s); torch {torch.__version__}, {args.threads} thread(s); "
          f"ms per iteration, best of {args.repeats} interleaved runs of {args.iters} iterations")
    W0, H0 = initial_factors(problem, 0)

    print("\nsolver vs bare torch sparse loop (the same products), full size")
    print(_row(["solver", "bare ms", "solver ms", "ratio (best)", "ratio (median)"]))
    print(_row(["---"] * 5))
    for name in ("mu", "fista"):
        times = interleaved({"solver": lambda name=name: measure_solver(registry, name, problem, W0, H0, args.iters),
                             "bare": lambda name=name: measure_bare(name, problem, W0, H0, args.iters)}, args.repeats)
        cells = ratio_cells(times["solver"], times["bare"])
        print(_row([name, cells[1], cells[0], cells[2], cells[3]]))

    compare_dense(registry, problem, args)

    Y_bytes = csr_bytes(problem.Y)
    factors = FACTOR_WORDS * (args.m + args.n) * args.rank * 4
    bound = 2 * Y_bytes + factors
    print(f"\npeak resident memory of a run (subprocess; {args.iters} steps, each with the float64 loss), MiB")
    print(_row(["solver", "CSR of Y", "bound 2 CSR + 16 (m+n) r words", "peak rise", "peak / bound"]))
    print(_row(["---"] * 5))
    for name in ("mu", "fista[restart=function]"):
        out = measure_memory(problem, name, args.iters, args.threads)
        rise = out["peak"] - out["base"]
        print(_row([name, f"{Y_bytes / 2**20:.1f}", f"{bound / 2**20:.1f}", f"{rise / 2**20:.1f}",
                    f"{rise / bound:.2f}" + ("" if out["reset"] else " (ru_maxrss: includes the imports)")]))


if __name__ == "__main__":
    main()

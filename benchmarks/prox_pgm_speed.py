"""Side-by-side speed figures for the prox operators and the ``pgm`` solver.

1. Prox throughput (elements/s) of ``simplex`` and ``l1`` at 10^4..10^7 elements against
   plain reference implementations: the same sort-based simplex projection written with
   numpy, and soft thresholding written the textbook way in numpy and in torch.
2. Per-iteration time of ``pgm`` (and, for context, ``fista`` and ``pgm_torch``) against the
   bare-matmul floor, a torch loop doing exactly the matrix products of one ``pgm`` iteration,
   and against the same PGM iteration written inline without the solver classes.

Everything is measured in one process, on one thread, with denormals flushed; methods are
interleaved round by round and the best round of each is reported (as ``timeit`` does: other
processes only ever add time), so the ratios are comparable even on a busy machine. Run::

    python benchmarks/prox_pgm_speed.py            # all sizes (a few minutes)
    python benchmarks/prox_pgm_speed.py --quick    # small sizes only

This module is safe to import (asv imports every module in benchmarks/): all work happens
in functions called under ``__main__``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

VECTOR_LENGTH = 20  # simplex columns: an abundance vector of r = 20 components


# ---------------------------------------------------------------------------- reference code


def simplex_numpy(V: np.ndarray, s: float = 1.0) -> np.ndarray:
    """Sort-based projection of each column onto the simplex, in plain numpy."""
    U = -np.sort(-V, axis=0)
    css = np.cumsum(U, axis=0) - s
    k = np.arange(1, V.shape[0] + 1)[:, None]
    rho = np.max(np.where(U * k > css, k, 0), axis=0)
    theta = css[rho - 1, np.arange(V.shape[1])] / rho
    return np.maximum(V - theta, 0)


def soft_threshold_numpy(V: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(V) * np.maximum(np.abs(V) - tau, 0)


def soft_threshold_torch(V: torch.Tensor, tau: float) -> torch.Tensor:
    return torch.sign(V) * torch.clamp(torch.abs(V) - tau, min=0)


# ------------------------------------------------------------------------------------- timing


def _interleaved(methods: dict[str, Callable[[], object]], rounds: int, min_time: float) -> dict[str, float]:
    """Best seconds per call of each method over interleaved rounds."""
    counts = {}
    for name, fn in methods.items():  # warm up and pick a count that lasts ~min_time
        fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        counts[name] = max(1, int(min_time / once))
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            for _ in range(counts[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / counts[name])
    return {name: min(values) for name, values in samples.items()}


def prox_throughput(sizes: list[int], rounds: int, min_time: float = 0.05) -> list[dict]:
    from proxmf_bench.solve.prox import prox_l1, prox_simplex

    rows = []
    for dtype in (torch.float64, torch.float32):
        for n in sizes:
            X = torch.randn(VECTOR_LENGTH, n // VECTOR_LENGTH, dtype=dtype)
            A = X.numpy()
            methods = {
                "simplex (ours, torch)": lambda: prox_simplex(X, 1.0),
                "simplex (numpy reference)": lambda: simplex_numpy(A),
                "l1 (ours, torch)": lambda: prox_l1(X, 1.0, lam=0.5),
                "l1 (numpy reference)": lambda: soft_threshold_numpy(A, 0.5),
                "l1 (textbook torch)": lambda: soft_threshold_torch(X, 0.5),
            }
            seconds = _interleaved(methods, rounds, min_time)
            for name, sec in seconds.items():
                rows.append({"dtype": str(dtype).removeprefix("torch."), "elements": X.numel(), "method": name,
                             "elements_per_s": X.numel() / sec})
    return rows


def pgm_iteration(sizes: list[tuple[int, int, int]], rounds: int, min_time: float = 0.2) -> list[dict]:
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.problem import Problem
    from proxmf_bench.problem.start import initial_factors

    registry = load_registry(use_entry_points=False)
    rows = []
    for m, n, r in sizes:
        for dtype in (torch.float64, torch.float32):
            gen = torch.Generator().manual_seed(0)
            Y = (torch.rand(m, r, generator=gen, dtype=torch.float64) @ torch.rand(r, n, generator=gen, dtype=torch.float64))
            problem = Problem(Y=Y.to(dtype), rank=r)
            W0, H0 = initial_factors(problem, 0)
            methods = {"bare matmul floor": _bare_products(problem.Y, W0, H0),
                       "inline PGM loop": _inline_pgm(problem.Y, W0, H0)}
            for selection in ("pgm", "fista[restart=gradient]", "pgm_torch"):
                (variant,) = select(selection, registry.solvers, registry, "solver")
                solver = registry.get_solver(variant.name).factory(**variant.params)
                solver.init(problem, W0.clone(), H0.clone())
                methods[variant.label] = solver.step
            seconds = _interleaved(methods, rounds, min_time)
            floor = seconds["bare matmul floor"]
            for name, sec in seconds.items():
                rows.append({"size": f"{m}x{n} r{r}", "dtype": str(dtype).removeprefix("torch."), "method": name,
                             "ms_per_iter": 1e3 * sec, "vs_floor": sec / floor,
                             "vs_inline": sec / seconds["inline PGM loop"]})
    return rows


def _bare_products(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> Callable[[], None]:
    """Exactly the matrix products of one pgm iteration, and nothing else."""
    Wt, Yt = W.T.contiguous(), Y.T.contiguous()

    def run() -> None:
        gram, _ = Wt @ Wt.T, Wt @ Y
        gram @ H
        gram, _ = H @ H.T, H @ Yt  # Y^T row-major, as the problem holds it
        gram @ Wt

    return run


def _inline_pgm(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> Callable[[], None]:
    """One nonnegative PGM iteration written out plainly, as a user would without the suite."""
    state = {"Wt": W.T.clone(), "H": H.clone()}

    def run() -> None:
        Wt, H = state["Wt"], state["H"]
        G = Wt @ Wt.T
        t = 1.0 / float(torch.linalg.eigvalsh(G)[-1])
        H = (H - t * (G @ H - Wt @ Y)).clamp_min(0)
        G = H @ H.T
        t = 1.0 / float(torch.linalg.eigvalsh(G)[-1])
        state["Wt"] = (Wt - t * (G @ Wt - H @ Y.T)).clamp_min(0)
        state["H"] = H

    return run


def _print_table(rows: list[dict], columns: list[str], formats: dict[str, str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(format(row[c], formats.get(c, "")) for c in columns) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per method (default 7, 3 with --quick)")
    parser.add_argument("--only", choices=("prox", "pgm"), help="run one of the two measurements")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    rounds = args.rounds or (3 if args.quick else 7)
    prox_sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 10**7]
    pgm_sizes = [(200, 500, 10)] if args.quick else [(200, 500, 10), (1000, 1000, 20)]
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, "
          f"best of {rounds} rounds\n")
    if args.only != "pgm":
        print(f"Prox throughput (columns of length {VECTOR_LENGTH}), elements/s:\n")
        _print_table(prox_throughput(prox_sizes, rounds), ["dtype", "elements", "method", "elements_per_s"],
                     {"elements_per_s": ".3g"})
    if args.only != "prox":
        print("Per-iteration time (nonneg on both blocks):\n")
        _print_table(pgm_iteration(pgm_sizes, rounds),
                     ["size", "dtype", "method", "ms_per_iter", "vs_floor", "vs_inline"],
                     {"ms_per_iter": ".3f", "vs_floor": ".2f", "vs_inline": ".2f"})


if __name__ == "__main__":
    main()

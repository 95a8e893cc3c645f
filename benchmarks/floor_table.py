"""Per-iteration time of the built-in solvers against bare torch loops, and of the peers' MU.

Run ``python -m benchmarks.floor_table`` (about 4 minutes on 2 idle cores; ``--quick``: tiny
problems, a few seconds). For every problem (digits, Samson, Jasper, synthetic square, tall
and wide) and dtype (float64, float32), in one process on one thread with denormals flushed,
it alternates ``--repeats`` times: each solver in the harness (``run_cell``, as
``proxmf-bench run`` runs it) and the bare loop that does the same arithmetic, then
scikit-learn's and tensorly's MU through their peer plugins. It prints the best per-iteration
time of each, the ratio of the bests and the median of the per-repeat ratios (target: within
1.1 for ``mu``, ``nalmu``, ``pgm``, ``fista``, ``adaprox``; ``pgm_torch`` against ``pgm``'s
bare loop, target 1.5), and ``mu`` against each peer's MU (target: below 1). For ``pgm_torch``
a second line times its two optimizer rounds (``zero_grad``, ``backward``, ``step``) alone
against the same two steps computed directly: the route's own cost per iteration, which
decides at which sizes 1.5x is within reach at all.

The bare loops are the floor: the matrix products of one iteration, each in the fastest
layout measured on the CPU, and the elementwise work around them, nothing else. Layouts:

- ``W^T Y`` as ``W.T @ Y`` with ``Y`` row-major (``Problem.Y``);
- ``H Y^T`` as ``H @ Yt`` with ``Y^T`` row-major (``Problem.Yt``); MU's ``Y H^T`` is its
  transposed view;
- Grams ``W^T W``, ``H H^T`` as ``W.T @ W``, ``H @ H.T``; the PGM family holds ``W^T``
  (``r x m``, row-major), so its Grams and gradient steps are ``r x k`` products;
- ``lambda_max`` of an ``r x r`` Gram from LAPACK ``syevd`` on the CPU (``eigvalsh`` on CUDA).

``--layouts`` adds a table of each product in every layout of ``Y`` (row-major, column-major,
with a row-major ``Y^T``), which is how the layouts above were chosen.

Solver times are ``(t_K - t_0) / K`` from the harness's records (``t_0``: after ``init``);
bare loops are timed over ``K`` iterations from the same start; a peer's is
``(T(2K) - T(K)) / K`` from two calls, which leaves its set-up out.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

PROBLEMS = {
    "digits": "digits",
    "samson": "samson",
    "jasper": "jasper",
    "square": "synthetic[m=1000,n=1000,rank=20]",
    "tall": "synthetic[m=4000,n=400,rank=20]",
    "wide": "synthetic[m=400,n=4000,rank=20]",
}
QUICK_PROBLEMS = {"tiny": "synthetic[m=60,n=40,rank=3]"}
DTYPES = ("float64", "float32")
SOLVERS = ("mu", "nalmu", "pgm", "fista", "adaprox", "pgm_torch", "hals")
PEERS = ("sklearn_mu", "tensorly_mu")
# the bare loop each solver is compared with (nalmu untrained is MU; pgm_torch solves pgm's problem)
FLOOR_OF = {"mu": "mu", "nalmu": "mu", "pgm": "pgm", "fista": "fista", "adaprox": "adaprox", "pgm_torch": "pgm"}
EPS = 1e-12


def largest_eigenvalue(G: torch.Tensor) -> float:
    if G.device.type != "cpu":
        return float(torch.linalg.eigvalsh(G)[-1])
    from scipy.linalg.lapack import dsyevd, ssyevd

    syevd = dsyevd if G.dtype == torch.float64 else ssyevd
    return float(syevd(G.numpy(), compute_v=0)[0][-1])


def bare_mu(Y: torch.Tensor, Yt: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int):
    """Lee-Seung MU, ``H`` then ``W``, epsilon-floored, in place; returns ``(W, H)``."""
    W.clamp_min_(EPS)
    H.clamp_min_(EPS)
    WtW = W.T @ W
    for _ in range(iters):
        H.mul_((W.T @ Y).div_((WtW @ H).clamp_min_(EPS))).clamp_min_(EPS)
        HHt = H @ H.T
        W.mul_((H @ Yt).T.div((W @ HHt).clamp_min_(EPS))).clamp_min_(EPS)
        WtW = W.T @ W
    return W, H


def bare_pgm(Y: torch.Tensor, Yt: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int):
    """Projected gradient on ``H`` then ``W^T``, step ``1 / lambda_max`` of the block's Gram,
    fused as ``(X + t C) - t G X`` (one elementwise pass and one ``addmm``)."""
    Wt = W.T.contiguous()
    for _ in range(iters):
        G = Wt @ Wt.T
        t = 1.0 / largest_eigenvalue(G)
        H = torch.addmm(torch.add(H, Wt @ Y, alpha=t), G, H, alpha=-t).clamp_min_(0)
        G = H @ H.T
        t = 1.0 / largest_eigenvalue(G)
        Wt = torch.addmm(torch.add(Wt, H @ Yt, alpha=t), G, Wt, alpha=-t).clamp_min_(0)
    return Wt.T, H


def bare_fista(Y: torch.Tensor, Yt: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int):
    """Alternating FISTA with function-value restart (``fista``'s default): extrapolate each
    block with the shared sequence, projected gradient step from there, and restart when
    ``f`` (from the last block's products and the new ``W^T W``, the next iteration's Gram)
    increases."""
    Y_norm2 = float(torch.linalg.vector_norm(Y, dtype=torch.float64) ** 2)
    Wt = W.T.contiguous()
    theta, objective = 1.0, math.inf
    H_prev = Wt_prev = None
    WWt = Wt @ Wt.T
    for _ in range(iters):
        theta_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * theta**2))
        beta = (theta - 1.0) / theta_next
        G = WWt
        t = 1.0 / largest_eigenvalue(G)
        V = H if H_prev is None or beta == 0 else H.lerp(H_prev, -beta)
        H_prev, H = H, torch.addmm(torch.add(V, Wt @ Y, alpha=t), G, V, alpha=-t).clamp_min_(0)
        G = H @ H.T
        C = H @ Yt
        t = 1.0 / largest_eigenvalue(G)
        V = Wt if Wt_prev is None or beta == 0 else Wt.lerp(Wt_prev, -beta)
        Wt_prev, Wt = Wt, torch.addmm(torch.add(V, C, alpha=t), G, V, alpha=-t).clamp_min_(0)
        WWt = Wt @ Wt.T
        value = 0.5 * (Y_norm2 - 2.0 * float(torch.sum(C * Wt, dtype=torch.float64))
                       + float(torch.sum(G.double() * WWt.double())))
        theta = 1.0 if value > objective else theta_next
        objective = value
    return Wt.T, H


def bare_adaprox(Y: torch.Tensor, Yt: torch.Tensor, W: torch.Tensor, H: torch.Tensor, iters: int,
                 lr: float = 0.1, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-12):
    """Alternating proximal AMSGrad (``adaprox``'s defaults): the nonnegative projection, an
    elementwise one, is the same in Adam's metric, so it is applied to the Adam step once."""
    Wt = W.T.contiguous()
    blocks = {}
    for name, X in (("W", Wt), ("H", H)):
        rms = float(torch.linalg.vector_norm(X)) / X.numel() ** 0.5
        blocks[name] = (lr * rms, torch.zeros_like(X), torch.zeros_like(X), torch.zeros_like(X))

    def update(name: str, X: torch.Tensor, G: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        alpha, m, v, vmax = blocks[name]
        grad = torch.addmm(C, G, X, beta=-1)
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        torch.maximum(vmax, v, out=vmax)
        psi = vmax.sqrt().add_(eps)
        return torch.addcdiv(X, m, psi, value=-alpha).clamp_min_(0)

    for _ in range(iters):
        H = update("H", H, Wt @ Wt.T, Wt @ Y)
        Wt = update("W", Wt, H @ H.T, H @ Yt)
    return Wt.T, H


def measure_route_rounds(registry, problem, W0: torch.Tensor, H0: torch.Tensor, iters: int) -> tuple[float, float]:
    """Seconds per iteration of ``pgm_torch``'s two optimizer rounds alone, and of the same two
    projected gradient steps computed directly, each block's Gram and cross product given
    (those of the start): what the route costs beyond the products, which no layout removes.
    As in an iteration, each round follows the block's product with ``Y`` (recomputed, not
    timed), which leaves the caches cold: the route's code then runs about 1.5x slower than in a
    tight loop of rounds."""
    from proxmf_bench.plugin.selection import select

    variant = select("pgm_torch", registry.solvers, registry, "solver")[0]
    solver = registry.get_solver("pgm_torch").factory(**variant.params)
    solver.init(problem, W0.clone(), H0.clone())
    groups = solver.optimizer.param_groups
    Wt = W0.T.contiguous()
    with torch.no_grad():
        blocks = [(groups[0], Wt @ Wt.T, Wt @ problem.Y, solver.H, (Wt, problem.Y)),
                  (groups[1], H0 @ H0.T, H0 @ problem.Yt, solver.Wt, (H0, problem.Yt))]
    scratch = [torch.empty_like(cross) for _, _, cross, _, _ in blocks]

    def run(round_) -> float:
        elapsed = 0.0
        for _ in range(iters):
            for i, (_, gram, cross, _, (left, data)) in enumerate(blocks):
                torch.matmul(left, data, out=scratch[i])  # the iteration's product, untimed
                tic = time.perf_counter()
                round_(i, gram, cross)
                elapsed += time.perf_counter() - tic
        return elapsed / iters

    route = run(lambda i, gram, cross: solver.optimizer_round(blocks[i][0], gram, cross, blocks[i][3]))
    direct = [X.detach().clone() for _, _, _, X, _ in blocks]

    def direct_step(i: int, gram: torch.Tensor, cross: torch.Tensor) -> None:
        t = 1.0 / largest_eigenvalue(gram)
        direct[i] = torch.addmm(torch.add(direct[i], cross, alpha=t), gram, direct[i], alpha=-t).clamp_min_(0)

    return route, run(direct_step)


BARE: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "mu": bare_mu, "pgm": bare_pgm, "fista": bare_fista, "adaprox": bare_adaprox,
}


def measure_bare(name: str, problem, W0: torch.Tensor, H0: torch.Tensor, iters: int) -> float:
    """Seconds per iteration of bare loop ``name`` over ``iters`` iterations from ``(W0, H0)``."""
    W, H = W0.clone(), H0.clone()
    synchronize(problem.device)
    tic = time.perf_counter()
    BARE[name](problem.Y, problem.Yt, W, H, iters)
    synchronize(problem.device)
    return (time.perf_counter() - tic) / iters


def measure_solver(registry, variant, dataset_variant, problem, start, iters: int) -> float:
    """Seconds per iteration of a stepped solver in the harness: ``(t_K - t_0) / K``."""
    from proxmf_bench.run.cells import Cell, Limits
    from proxmf_bench.run.harness import run_cell
    from proxmf_bench.run.schedule import RecordSchedule

    cell = Cell(variant, dataset_variant, str(problem.device), str(problem.dtype).removeprefix("torch."), 0)
    factory = registry.get_solver(variant.name).factory
    result = run_cell(factory, cell, problem, *start.copies(), Limits(max_iter=iters),
                      RecordSchedule(dense=1, per_decade=1), start=start)
    if result.stop_reason != "max_iter":
        raise RuntimeError(f"{variant.label} stopped with {result.stop_reason}: {result.error}")
    first, last = result.records[0], result.records[-1]
    return (last["time_s"] - first["time_s"]) / (last["iteration"] - first["iteration"])


def measure_peer(solver, problem, W0: torch.Tensor, H0: torch.Tensor, iters: int) -> tuple[float, float]:
    """Seconds of a black-box peer's calls with budgets ``K`` and ``2K``: ``(T(K), T(2K))``."""
    times = []
    for budget in (iters, 2 * iters):
        tic = time.perf_counter()
        solver.solve(problem, W0.clone(), H0.clone(), budget)
        times.append(time.perf_counter() - tic)
    return times[0], times[1]


def peer_per_iteration(calls: list[tuple[float, float]], iters: int) -> float:
    """``(min T(2K) - min T(K)) / K`` over repeats: the per-iteration time without the set-up."""
    return max(min(t2 for _, t2 in calls) - min(t1 for t1, _ in calls), 0.0) / iters


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def iterations_for(seconds_per_iteration: float, seconds: float, quick: bool) -> int:
    iters = max(10, min(5000, int(seconds / max(seconds_per_iteration, 1e-7))))
    return min(iters, 20) if quick else iters


def layout_table(problem) -> list[str]:
    """Microseconds of each product of an iteration in each layout of ``Y`` (best of 7)."""
    Y = problem.Y
    Y_cm = Y.T.contiguous().T  # the same values, column-major
    Yt = problem.Yt
    m, n = problem.shape
    gen = torch.Generator().manual_seed(0)
    W = torch.rand(m, problem.rank, generator=gen, dtype=torch.float64).to(Y.dtype)
    H = torch.rand(problem.rank, n, generator=gen, dtype=torch.float64).to(Y.dtype)
    cases = {
        "W^T Y: W.T @ Y, Y row-major": lambda: W.T @ Y,
        "W^T Y: W.T @ Y, Y column-major": lambda: W.T @ Y_cm,
        "W^T Y: (Yt @ W).T, Yt row-major": lambda: Yt @ W,
        "Y H^T: Y @ H.T, Y row-major": lambda: Y @ H.T,
        "Y H^T: Y @ H.T, Y column-major": lambda: Y_cm @ H.T,
        "Y H^T: (H @ Yt).T, Yt row-major": lambda: H @ Yt,
        "H Y^T: H @ Y.T, Y row-major": lambda: H @ Y.T,
    }
    lines = []
    for label, fn in cases.items():
        fn()
        probe = time.perf_counter()
        fn()
        inner = max(1, int(0.01 / max(time.perf_counter() - probe, 1e-7)))
        best = math.inf
        for _ in range(7):
            tic = time.perf_counter()
            for _ in range(inner):
                fn()
            best = min(best, (time.perf_counter() - tic) / inner)
        lines.append(f"    {label:<36} {1e6 * best:10.1f} us")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny problems, few iterations (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5, help="alternations per case (default 5)")
    parser.add_argument("--seconds", type=float, default=0.1, help="solver seconds per timed run (default 0.1)")
    parser.add_argument("--problems", default=None, help="comma-separated, among: " + ", ".join(PROBLEMS))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--solvers", default=",".join(SOLVERS + PEERS))
    parser.add_argument("--layouts", action="store_true", help="also time each product in each layout of Y")
    args = parser.parse_args(argv)

    from proxmf_bench.errors import UserError
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.start import StartingPoint, initial_factors

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    registry = load_registry(use_entry_points=False)
    problems = QUICK_PROBLEMS if args.quick else PROBLEMS
    if args.problems:
        problems = {k: PROBLEMS.get(k, k) for k in args.problems.split(",")}
    wanted = [s for s in args.solvers.split(",") if s in registry.solvers]
    print(f"torch {torch.__version__}, 1 thread, CPU; ms per iteration, best of {args.repeats};"
          " ratio = solver / floor (best, median of the per-repeat ratios)")
    print(f"{'problem':>8} {'dtype':>8} {'solver':>12} {'floor':>8} {'floor ms':>9} {'solver ms':>10}"
          f" {'ratio':>6} {'median':>6}")
    for label, selection in problems.items():
        for dtype in args.dtypes.split(","):
            dataset = select(selection, registry.datasets, registry, "dataset")[0]
            try:
                problem = registry.get_dataset(dataset.name).load(dataset.params, 0, torch.device("cpu"),
                                                                 getattr(torch, dtype))
            except UserError as exc:
                print(f"{label:>8} {dtype:>8} skipped: {exc}")
                continue
            W0, H0 = initial_factors(problem, 0)
            start = StartingPoint(problem, W0, H0)
            if args.layouts:
                print(f"  layouts, {label} {dtype} ({problem.shape[0]} x {problem.shape[1]}, r {problem.rank}):")
                print("\n".join(layout_table(problem)))
            report_problem(registry, label, dtype, dataset, problem, start, wanted, args)


def report_problem(registry, label, dtype, dataset, problem, start, wanted, args) -> None:
    from proxmf_bench.plugin.selection import select

    variants = {name: select(name, registry.solvers, registry, "solver")[0] for name in wanted}
    peers = {name: registry.get_solver(name).factory(**variants[name].params) for name in wanted if name in PEERS}
    W0, H0 = start.W0, start.H0
    # iterations per timed run, from a probe of each
    iters = {}
    for name in wanted:
        if name in peers:
            continue
        probe = measure_solver(registry, variants[name], dataset, problem, start, 3)
        iters[name] = iterations_for(probe, args.seconds, args.quick)
    for name in peers:
        tic = time.perf_counter()
        peers[name].solve(problem, W0.clone(), H0.clone(), 3)
        iters[name] = iterations_for((time.perf_counter() - tic) / 3, args.seconds, args.quick)
    times: dict[str, list] = {key: [] for key in iters}
    floor_times: dict[str, list[float]] = {name: [] for name in wanted if name in FLOOR_OF}
    for _ in range(args.repeats):
        for name in wanted:  # interleaved: each solver, then its floor, then the next
            if name in peers:
                times[name].append(measure_peer(peers[name], problem, W0, H0, iters[name]))
                continue
            times[name].append(measure_solver(registry, variants[name], dataset, problem, start, iters[name]))
            floor = FLOOR_OF.get(name)
            if floor is not None:
                floor_times[name].append(measure_bare(floor, problem, W0, H0, iters[name]))
    route_rounds = [measure_route_rounds(registry, problem, W0, H0, iters["pgm_torch"])
                    for _ in range(args.repeats)] if "pgm_torch" in iters else []
    for name in peers:
        times[name] = [peer_per_iteration(times[name], iters[name])]
    for name in wanted:
        best = min(times[name])
        floor = FLOOR_OF.get(name)
        if floor is not None:
            floor_best = min(floor_times[name])
            # each repeat of the solver against the floor's run right after it
            pairs = [t / f for t, f in zip(times[name], floor_times[name])]
            print(f"{label:>8} {dtype:>8} {name:>12} {'bare ' + floor:>8} {1e3 * floor_best:9.3f} {1e3 * best:10.3f}"
                  f" {best / floor_best:6.2f} {statistics.median(pairs):6.2f}", flush=True)
        elif name in peers and "mu" in times:
            mu = min(times["mu"])
            print(f"{label:>8} {dtype:>8} {name:>12} {'mu':>8} {1e3 * mu:9.3f} {1e3 * best:10.3f}"
                  f" {best / mu:6.2f} {'':>6}   (peer / mu: above 1 means mu is faster)", flush=True)
        else:
            print(f"{label:>8} {dtype:>8} {name:>12} {'-':>8} {'':>9} {1e3 * best:10.3f}", flush=True)
    if route_rounds:
        route, direct = min(r for r, _ in route_rounds), min(d for _, d in route_rounds)
        allowed = 0.5 * min(floor_times["pgm_torch"])
        print(f"{'':>17} pgm_torch's two optimizer rounds alone {1e3 * route:.3f} ms, the same steps computed"
              f" directly {1e3 * direct:.3f} ms: the route adds {1e3 * (route - direct):.3f} ms per iteration"
              f" ({'within' if route - direct <= allowed else 'above'} the {1e3 * allowed:.3f} ms that 1.5x the"
              " pgm floor leaves)", flush=True)


if __name__ == "__main__":
    main()

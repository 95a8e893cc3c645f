"""How accurate the recorded float32 loss is: the harness's float32 ``loss`` against a float64
evaluation of the same iterates, at every record point.

Run ``python benchmarks/float32_accuracy.py`` (``--quick`` for a short smoke). Each solver runs
in the harness (``run_cell``, 1 thread, float32) on each built-in dataset; the factors the
harness sees at each record point are copied, and ``1/2 ||Y - W H||^2`` is evaluated again in
float64 from them (on the float32 data cast to float64, so both evaluate the same problem).
Printed per dataset and solver: the largest relative deviation over the record points, the
deviation at the last one, and, for the monotone solvers (``mu``, ``nalmu``, ``pgm``),
how often the recorded float32 loss increased by more than ``1e-5`` relative and by how much
at most. Where the results carry an ``objective`` column it is checked the same way.

Black-box solvers (``sklearn_cd`` ...) are matched by the order of their calls.
"""

from __future__ import annotations

import argparse
import math

import torch

DATASETS = ("synthetic", "nnls_toy", "digits", "samson", "jasper")
SOLVERS = ("mu", "pgm", "fista", "pgm_momentum")
MONOTONE = ("mu", "nalmu", "pgm")
TOLERANCE = 1e-5


class _Stepped:
    """A stepped solver that copies (in float64) the factors the harness reads, by iteration."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.k = 0
        self.seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def init(self, problem, W0, H0) -> None:
        self.inner.init(problem, W0, H0)
        self.k = 0

    def step(self) -> None:
        self.inner.step()
        self.k += 1

    def factors(self):
        W, H = self.inner.factors()
        self.seen[self.k] = (W.detach().double().clone(), H.detach().double().clone())
        return W, H

    def __getattr__(self, name):  # loss() and anything else the harness may look for
        return getattr(self.inner, name)


def capturing_factory(factory, holder: list):
    """A factory whose solvers record what they hand the harness; the last one built is the
    timed run (a warm-up, if the harness does one, builds its own)."""
    from proxmf_bench.solve.blackbox import BlackBoxSolver, is_black_box

    if is_black_box(factory):
        class _BlackBox(BlackBoxSolver):
            def __init__(self, **params) -> None:
                self.inner = factory(**params)
                self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
                holder.append(self)

            def __getattr__(self, name):
                return getattr(self.inner, name)

            def solve(self, problem, W0, H0, n_iter):
                W, H = self.inner.solve(problem, W0, H0, n_iter)
                self.calls.append((W.detach().double().clone(), H.detach().double().clone()))
                return W, H

        return _BlackBox

    def make(**params):
        solver = _Stepped(factory(**params))
        holder.append(solver)
        return solver

    return make


def float64_loss(Y64: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> float:
    return 0.5 * float(torch.linalg.vector_norm(Y64 - W @ H) ** 2)


def measure(registry, dataset: str, solver: str, iters: int):
    """Per record point: (iteration, recorded loss, float64 loss, recorded objective or None)."""
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.run.cells import Cell, Limits
    from proxmf_bench.run.harness import run_cell
    from proxmf_bench.run.schedule import RecordSchedule

    data = select(dataset, registry.datasets, registry, "dataset")[0]
    variant = select(solver, registry.solvers, registry, "solver")[0]
    problem = registry.get_dataset(data.name).load(data.params, 0, torch.device("cpu"), torch.float32)
    W0, H0 = _start(problem)
    holder: list = []
    factory = capturing_factory(registry.get_solver(variant.name).factory, holder)
    cell = Cell(variant, data, "cpu", "float32", 0)
    result = run_cell(factory, cell, problem, W0.clone(), H0.clone(), Limits(max_iter=iters), RecordSchedule())
    if result.stop_reason not in ("max_iter", "tol"):
        raise RuntimeError(f"{solver} on {dataset} stopped with {result.stop_reason}: {result.error}")
    run = holder[-1]
    Y64 = problem.Y.double()
    rows = []
    if isinstance(run, _Stepped):
        factors = [run.seen[rec["iteration"]] for rec in result.records]
    else:
        factors = [(W0.double(), H0.double()), *run.calls[len(run.calls) - (len(result.records) - 1):]]
    for rec, (W, H) in zip(result.records, factors):
        rows.append((rec["iteration"], rec["loss"], float64_loss(Y64, W, H), rec.get("objective")))
    return rows


def _start(problem):
    from proxmf_bench.problem.start import initial_factors

    return initial_factors(problem, 0)


def summarise(rows, monotone: bool) -> dict:
    deviations = [abs(f32 - f64) / f64 for _, f32, f64, _ in rows]
    objective = [abs(obj - f64) / f64 for _, _, f64, obj in rows if obj is not None]
    recorded = [f32 for _, f32, _, _ in rows]
    rises = [(b - a) / a for a, b in zip(recorded, recorded[1:]) if b > a * (1 + TOLERANCE)]
    return {
        "points": len(rows), "max": max(deviations), "last": deviations[-1],
        "objective_max": max(objective) if objective else math.nan,
        "rises": len(rises) if monotone else None, "max_rise": max(rises, default=0.0) if monotone else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--iters", type=int, default=2000, help="iterations per run (default: 2000)")
    parser.add_argument("--quick", action="store_true", help="synthetic and nnls_toy, 100 iterations")
    args = parser.parse_args()

    from proxmf_bench.plugin.registry import load_registry

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    registry = load_registry(use_entry_points=False)
    datasets = ["synthetic", "nnls_toy"] if args.quick else args.datasets.split(",")
    iters = 100 if args.quick else args.iters
    print(f"float32 recorded loss vs float64 evaluation of the same iterates, {iters} iterations, "
          f"torch {torch.__version__}, 1 thread")
    print(f"{'dataset':>10} {'solver':>14} {'points':>6} {'max rel dev':>12} {'last':>10} {'objective':>10}"
          f" {'rises > 1e-5':>12} {'max rise':>9}")
    for dataset in datasets:
        for solver in args.solvers.split(","):
            try:
                rows = measure(registry, dataset, solver, iters)
            except Exception as exc:  # a missing data file: say so and go on
                print(f"{dataset:>10} {solver:>14} skipped: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            s = summarise(rows, solver.split("[")[0] in MONOTONE)
            rises = "" if s["rises"] is None else f"{s['rises']:12d} {100 * s['max_rise']:8.3f}%"
            print(f"{dataset:>10} {solver:>14} {s['points']:6d} {s['max']:12.2e} {s['last']:10.2e}"
                  f" {s['objective_max']:10.2e} {rises}", flush=True)


if __name__ == "__main__":
    main()

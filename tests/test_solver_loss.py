"""Solvers' own ``loss()`` (from products they already hold) against ``Problem.loss``, and its
use by the harness."""

from __future__ import annotations

import pytest
import torch

from proxmf_bench.harness import Cell, Limits, run_cell
from proxmf_bench.problem import Problem, initial_factors
from proxmf_bench.schedule import RecordSchedule
from proxmf_bench.selection import select
from solvers.mu import MU

# every built-in stepped solver variant that has loss(); test_every_solver_with_loss_is_covered
# fails when a new one is not listed here
WITH_LOSS = [
    "mu", "pgm", "pgm[backtracking=true]", "pgm[prox=l1,lam=0.1]", "pgm_momentum",
    "fista[restart=function]", "fista[restart=gradient]", "fista[restart=none]",
    "adaprox", "adaprox[variant=adam]",
]


def _problem(registry, fixed_W: bool) -> Problem:
    (variant,) = select("synthetic[m=30,n=20,rank=3]", registry.datasets, registry, "dataset")
    problem = registry.get_dataset(variant.name).load(variant.params, 0, torch.device("cpu"), torch.float64)
    return Problem(Y=problem.Y, rank=problem.rank, W_true=problem.W_true, H_true=problem.H_true, fixed_W=fixed_W)


def _solver(registry, text: str):
    (variant,) = select(text, registry.solvers, registry, "solver")
    return registry.get_solver(variant.name).factory(**variant.params)


@pytest.mark.parametrize("fixed_W", [False, True], ids=["nmf", "fixed_W"])
@pytest.mark.parametrize("text", WITH_LOSS)
def test_solver_loss_equals_problem_loss(registry, text, fixed_W):
    problem = _problem(registry, fixed_W)
    solver = _solver(registry, text)
    solver.init(problem, *initial_factors(problem, 0))
    assert solver.loss() == pytest.approx(problem.loss(*solver.factors()), rel=1e-10)
    for _ in range(7):
        solver.step()
        assert solver.loss() == pytest.approx(problem.loss(*solver.factors()), rel=1e-10)


def test_every_solver_with_loss_is_covered(registry):
    listed = {text.split("[")[0] for text in WITH_LOSS}
    for name, spec in registry.solvers.items():
        if getattr(spec.factory, "black_box", False):
            continue
        (variant,) = select(name, registry.solvers, registry, "solver")[:1]
        if callable(getattr(spec.factory(**variant.params), "loss", None)):
            assert name in listed, f"{name} has loss() but is not in WITH_LOSS"


def test_harness_records_the_solvers_own_loss(registry):
    calls = []

    class CountingMU(MU):
        def loss(self) -> float:
            value = super().loss()
            calls.append(value)
            return value

    problem = _problem(registry, fixed_W=False)
    W0, H0 = initial_factors(problem, 0)
    (solver,) = select("mu", registry.solvers, registry, "solver")[:1]
    (dataset,) = select("synthetic", registry.datasets, registry, "dataset")[:1]
    cell = Cell(solver, dataset, "cpu", "float64", 0)
    result = run_cell(CountingMU, cell, problem, W0, H0, Limits(max_iter=20), RecordSchedule())
    assert result.stop_reason == "max_iter"
    assert [rec["loss"] for rec in result.records] == calls
    assert calls[0] == pytest.approx(problem.loss(W0.clamp_min(1e-12), H0.clamp_min(1e-12)), rel=1e-12)

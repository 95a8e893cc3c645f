"""Solvers' own ``loss()`` (from products they already hold) against ``Problem.loss``, and its
use by the harness. Every registered solver with a ``loss()`` is checked against
``Problem.loss`` by the contract checks (test_contracts.py), on its default variants and the
examples its spec declares; here, trained NALMU weights, which no spec example can name."""

from __future__ import annotations

import pytest
import torch

from proxmf_bench.nalmu.model import NALMU, NALMUConfig, save_weights
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.solvers.mu import MU
from proxmf_bench.solvers.nalmu import NALMUSolver, resolve_params


def _problem(registry, fixed_W: bool) -> Problem:
    (variant,) = select("synthetic[m=30,n=20,rank=3]", registry.datasets, registry, "dataset")
    problem = registry.get_dataset(variant.name).load(variant.params, 0, torch.device("cpu"), torch.float64)
    return Problem(Y=problem.Y, rank=problem.rank, W_true=problem.W_true, H_true=problem.H_true, fixed_W=fixed_W)


def _check_loss_along_the_run(problem: Problem, solver) -> None:
    solver.init(problem, *initial_factors(problem, 0))
    assert solver.loss() == pytest.approx(problem.loss(*solver.factors()), rel=1e-10)
    for _ in range(7):
        solver.step()
        assert solver.loss() == pytest.approx(problem.loss(*solver.factors()), rel=1e-10)


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("fixed_W", [False, True], ids=["nmf", "fixed_W"])
def test_trained_nalmu_loss_equals_problem_loss(registry, tmp_path, fixed_W, normalize):
    problem = _problem(registry, fixed_W)
    model = NALMU(NALMUConfig(layers=3, rank=problem.rank, m=problem.shape[0], fixed_W=fixed_W, normalize=normalize))
    with torch.no_grad():
        for weights in model.parameters():
            weights.uniform_(0.5, 1.5)
    path = save_weights(tmp_path / "w.pt", model, {})
    _check_loss_along_the_run(problem, NALMUSolver(**resolve_params({"weights": str(path)})))


def test_harness_records_the_solvers_own_loss(registry):
    calls = []

    class CountingMU(MU):
        def init(self, problem, W0, H0):
            calls.clear()  # the last solver built is the timed one (a warm-up comes first)
            super().init(problem, W0, H0)

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

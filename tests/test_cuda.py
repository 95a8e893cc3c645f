"""CUDA: every built-in stepped solver, the harness and the HALS reference on a GPU, against the
CPU in float64. Selected by ``pytest -m cuda`` (``benchmarks/gpu_check.py`` runs them); skipped
without a CUDA device."""

from __future__ import annotations

import pytest
import torch

from conftest import cuda
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.solve.hals import solve_hals

pytestmark = cuda

# hals with alpha=0: its sweep caps depend on the device (the cost of a row update), so the
# accelerated variant does different work on the GPU by design
SOLVERS = ["mu", "nalmu", "pgm", "pgm_momentum", "fista[restart=function]", "fista[restart=gradient]", "adaprox",
           "pgm_torch", "hals[alpha=0]", "hals[alpha=0,first=H,prox=elastic_nonneg,lam=0.1,ridge=0.2]"]


def _problem(registry, device, dtype=torch.float64, text="synthetic[m=60,n=40,rank=4]"):
    (variant,) = select(text, registry.datasets, registry, "dataset")
    return registry.get_dataset(variant.name).load(variant.params, 0, torch.device(device), dtype)


def _run(registry, text, problem, iterations):
    (variant,) = select(text, registry.solvers, registry, "solver")
    solver = registry.get_solver(variant.name).factory(**variant.params)
    solver.init(problem, *initial_factors(problem, 0))
    for _ in range(iterations):
        solver.step()
    return solver


@pytest.mark.parametrize("text", SOLVERS)
def test_solver_on_cuda_matches_cpu(registry, text):
    cpu, gpu = _problem(registry, "cpu"), _problem(registry, "cuda")
    a, b = _run(registry, text, cpu, 10), _run(registry, text, gpu, 10)
    for x, y in zip(a.factors(), b.factors()):
        assert y.device.type == "cuda"
        torch.testing.assert_close(y.cpu(), x, rtol=1e-7, atol=1e-9)
    assert b.loss() == pytest.approx(a.loss(), rel=1e-9)


@pytest.mark.parametrize("text", ["mu", "pgm", "fista", "hals"])
def test_float32_runs_on_cuda(registry, text):
    problem = _problem(registry, "cuda", torch.float32)
    solver = _run(registry, text, problem, 30)
    assert solver.loss() == pytest.approx(problem.loss(*solver.factors()), rel=1e-3)
    assert all(X.dtype == torch.float32 and X.is_cuda for X in solver.factors())


def test_harness_on_cuda_records_synchronised_time(registry):
    problem = _problem(registry, "cuda")
    (solver,) = select("mu", registry.solvers, registry, "solver")
    (dataset,) = select("synthetic", registry.datasets, registry, "dataset")
    cell = Cell(solver, dataset, "cuda", "float64", 0)
    result = run_cell(registry.get_solver("mu").factory, cell, problem, *initial_factors(problem, 0),
                      Limits(max_iter=20), RecordSchedule())
    assert result.stop_reason == "max_iter"
    times = [rec["time_s"] for rec in result.records]
    assert times == sorted(times) and times[-1] > 0


def test_hals_reference_on_cuda_matches_cpu(registry):
    # both from float32 data, which solve_hals runs in float64
    cpu, gpu = _problem(registry, "cpu", torch.float32), _problem(registry, "cuda", torch.float32)
    start = initial_factors(cpu, 0)
    a = solve_hals(cpu, *start, tol=0.0, max_iter=50, alpha=0)
    b = solve_hals(gpu, *start, tol=0.0, max_iter=50, alpha=0)
    assert b.W.is_cuda and b.W.dtype == torch.float64
    assert b.loss == pytest.approx(a.loss, rel=1e-9)

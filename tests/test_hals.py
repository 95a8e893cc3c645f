"""``hals``: accelerated HALS against independent definitions (an explicit coordinate loop, the
KKT conditions, scipy's NNLS), its penalties, its refusals and the float64 reference function."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.solve.hals import HALS, solve_hals, sweep_caps


def _problem(m=30, n=40, r=4, seed=0, fixed_W=False) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    W = torch.rand(m, r, generator=gen, dtype=torch.float64)
    H = torch.rand(r, n, generator=gen, dtype=torch.float64)
    Y = W @ H + 0.05 * torch.rand(m, n, generator=gen, dtype=torch.float64)
    return Problem(Y=Y, rank=r, W_true=W, H_true=H, fixed_W=fixed_W)


def _solver(registry, text):
    (variant,) = select(text, registry.solvers, registry, "solver")
    return registry.get_solver(variant.name).factory(**variant.params)


def _reference_hals(Y, W, H, iterations, first, eps=1e-16):
    """Plain HALS written entry by entry: for each column t of W (row t of H), the exact
    minimiser over that column with the others fixed, floored at eps."""
    W, H = W.clone().clamp_min(eps), H.clone().clamp_min(eps)
    m, r = W.shape

    def columns_of_W():
        for t in range(r):
            residual = Y - W @ H + torch.outer(W[:, t], H[t])
            W[:, t] = (residual @ H[t] / (H[t] @ H[t])).clamp_min(eps)

    def rows_of_H():
        for t in range(r):
            residual = Y - W @ H + torch.outer(W[:, t], H[t])
            H[t] = (W[:, t] @ residual / (W[:, t] @ W[:, t])).clamp_min(eps)

    for _ in range(iterations):
        for update in ((columns_of_W, rows_of_H) if first == "W" else (rows_of_H, columns_of_W)):
            update()
    return W, H


@pytest.mark.parametrize("first", ["W", "H"])
def test_plain_hals_equals_the_coordinate_definition(registry, first):
    problem = _problem()
    W0, H0 = initial_factors(problem, 0)
    solver = _solver(registry, f"hals[alpha=0,first={first}]")
    solver.init(problem, W0.clone(), H0.clone())
    for _ in range(6):
        solver.step()
    W, H = solver.factors()
    W_ref, H_ref = _reference_hals(problem.Y, W0, H0, 6, first)
    torch.testing.assert_close(W, W_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H, H_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("text", ["hals", "hals[first=H]", "hals[alpha=3,delta=0.01]",
                                  "hals[prox_W=l1_nonneg,lam_W=0.5,prox_H=elastic_nonneg,lam_H=0.2,ridge_H=1.0]"])
def test_every_iteration_decreases_the_objective(registry, text):
    """Exact block coordinate descent never increases its objective (loss plus penalties)."""
    problem = _problem(seed=1)
    solver = _solver(registry, text)
    solver.init(problem, *initial_factors(problem, 0))
    objective = solver.loss() + solver.penalty()
    for _ in range(40):
        solver.step()
        value = solver.loss() + solver.penalty()
        assert value <= objective * (1 + 1e-12)
        objective = value
        assert 1 <= solver.sweeps["W"] <= solver.cap_W and 1 <= solver.sweeps["H"] <= solver.cap_H


@pytest.mark.parametrize("l1,l2", [((0.0, 0.0), (0.0, 0.0)), ((0.3, 0.1), (0.0, 2.0)), ((0.0, 0.4), (0.5, 0.5))])
def test_converged_point_satisfies_the_kkt_conditions(l1, l2):
    """At a solution of min F over X >= 0, the gradient of F is >= 0 and vanishes where X > 0."""
    problem = _problem(seed=2)
    W0, H0 = initial_factors(problem, 0)
    result = solve_hals(problem, W0, H0, tol=1e-15, max_iter=20_000, eps=0.0, l1=l1, l2=l2)
    assert result.converged
    W, H, Y = result.W, result.H, problem.Y
    R = W @ H - Y
    # each gradient against the size of the terms that cancel in it
    gradients = {"W": (R @ H.T + l1[0] + l2[0] * W, Y @ H.T), "H": (W.T @ R + l1[1] + l2[1] * H, W.T @ Y)}
    for block, X in (("W", W), ("H", H)):
        G, terms = gradients[block]
        scale = float(terms.abs().max())
        assert float(G.min()) >= -1e-5 * scale, block
        assert float((G * X).abs().max()) <= 1e-5 * scale * float(X.max()), block


def test_fixed_W_converges_to_the_nnls_solution():
    problem = _problem(fixed_W=True)
    W0, H0 = initial_factors(problem, 0)
    # a fixed number of sweeps: near the optimum a decrease of the loss is below its rounding
    result = solve_hals(problem, W0, H0, tol=-math.inf, max_iter=300, alpha=2.0, eps=0.0)
    assert torch.equal(result.W, problem.W_true)
    A, Y = problem.W_true.numpy(), problem.Y.numpy()
    expected = np.stack([nnls(A, Y[:, j])[0] for j in range(Y.shape[1])], axis=1)
    np.testing.assert_allclose(result.H.numpy(), expected, atol=1e-8)


def test_penalties_come_from_the_prox_operators(registry):
    solver = _solver(registry, "hals[prox_W=l1_nonneg,lam_W=0.25,prox_H=elastic_nonneg,lam_H=0.5,ridge_H=2]")
    assert (solver.l1_W, solver.l2_W, solver.l1_H, solver.l2_H) == (0.25, 0.0, 0.5, 2.0)
    plain = _solver(registry, "hals")
    assert (plain.l1_W, plain.l2_W, plain.l1_H, plain.l2_H) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("text,bad", [("hals[prox_H=simplex]", "prox_H=simplex"), ("hals[prox=l1,lam=0.1]", "prox_W=l1"),
                                      ("hals[prox_W=box]", "prox_W=box")])
def test_proxes_hals_cannot_honour_are_refused(registry, text, bad):
    with pytest.raises(UserError, match=rf"solver hals: {bad} has no closed-form coordinate update"):
        select(text, registry.solvers, registry, "solver")


def test_solve_hals_runs_in_float64_from_any_dtype():
    problem = _problem().to("cpu", torch.float32)
    W0, H0 = initial_factors(problem, 0)
    result = solve_hals(problem, W0, H0, tol=1e-10)
    assert result.converged and result.W.dtype == result.H.dtype == torch.float64
    assert W0.dtype == torch.float32  # inputs untouched
    exact = problem.to("cpu", torch.float64).loss(result.W, result.H)
    assert result.loss == pytest.approx(exact, rel=1e-10) and result.objective == pytest.approx(exact, rel=1e-10)
    capped = solve_hals(problem, W0, H0, tol=0.0, max_iter=3)
    assert capped.iterations == 3 and not capped.converged


def test_sweep_caps_follow_the_cost_ratio():
    # rho_W = 1 + n (m + r) / (m (r + 1)), rho_H likewise with m, n swapped; cap = floor(1 + alpha rho)
    m, n, r = 64, 1797, 10
    assert sweep_caps(m, n, r, 0.5) == (int(1 + 0.5 * (1 + n * (m + r) / (m * (r + 1)))),
                                        int(1 + 0.5 * (1 + m * (n + r) / (n * (r + 1)))))
    assert sweep_caps(m, n, r, 0.0) == (1, 1)


def test_bad_order_is_refused():
    with pytest.raises(ValueError, match="first must be"):
        HALS(first="both")

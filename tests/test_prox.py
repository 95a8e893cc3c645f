"""Prox operators against their definitions: argmin_z 1/2 ||z - v||^2 + t g(z).

Independent references: a brute-force grid for the elementwise operators, scipy's SLSQP for
the vector-wise ones, scipy.special.wrightomega for max_entropy; then each set's own
feasibility test, dtypes, empty, scalar and degenerate inputs, gradients. The generic
properties (idempotence, nonexpansiveness, batching, untouched inputs, the argmin against a
numerical minimiser) are the contract checks, run over every registered operator in
test_contracts.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import wrightomega

from proxmf_bench.errors import UserError
from proxmf_bench.solve.prox import BUILTIN_PROX

PROX = {spec.name: spec for spec in BUILTIN_PROX}


def example(name: str) -> dict:
    """The operator's first declared example parameters (its defaults where it has none)."""
    spec = PROX[name]
    return spec.resolve(spec.examples[0] if spec.examples else {})

# --------------------------------------------------------------- elementwise: brute-force grid

STEP = 0.7
ELEMENTWISE_CASES = {
    # name: (params, g(z) on a numpy grid (inf outside the domain), grid range)
    "nonneg": ({}, lambda z: np.where(z >= 0, 0.0, np.inf), (-4, 4)),
    "box": ({"low": -0.5, "high": 1.5}, lambda z: np.where((z >= -0.5) & (z <= 1.5), 0.0, np.inf), (-4, 4)),
    "l1": ({"lam": 0.8}, lambda z: 0.8 * np.abs(z), (-4, 4)),
    "l1_nonneg": ({"lam": 0.8}, lambda z: np.where(z >= 0, 0.8 * z, np.inf), (-4, 4)),
    "elastic_nonneg": ({"lam": 0.8, "ridge": 1.3}, lambda z: np.where(z >= 0, 0.8 * z + 0.65 * z * z, np.inf), (-4, 4)),
    "l0": ({"lam": 0.8}, lambda z: 0.8 * (z != 0), (-4, 4)),
    "max_entropy": ({"lam": 0.8}, lambda z: np.where(z > 0, 0.8 * z * np.log(np.where(z > 0, z, 1)), np.where(z == 0, 0, np.inf)), (0, 4)),
}


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-3, 3, 40), [0.0, 1e-3, -1e-3]])


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_CASES))
def test_elementwise_matches_grid_argmin(name):
    params, g, (lo, hi) = ELEMENTWISE_CASES[name]
    v = _values()
    grid = np.union1d(np.linspace(lo, hi, 200_001), [0.0])
    objective = 0.5 * (grid[None, :] - v[:, None]) ** 2 + STEP * g(grid)[None, :]
    best = grid[np.argmin(objective, axis=1)]
    z = PROX[name](torch.from_numpy(v), STEP, **params).numpy()
    F = lambda x: 0.5 * (x - v) ** 2 + STEP * g(x)  # noqa: E731
    spacing = (hi - lo) / 200_000
    assert np.all(F(z) <= F(best) + 1e-9)
    np.testing.assert_allclose(z, best, atol=2 * spacing)


def test_max_entropy_matches_wright_omega_over_a_wide_range():
    v = torch.cat([torch.linspace(-50, 50, 2001, dtype=torch.float64), torch.tensor([1e6, -1e6, 0.0])])
    for a in (1e-3, 0.3, 5.0):
        z = PROX["max_entropy"](v, a, lam=1.0)
        expected = a * wrightomega(v.numpy() / a - 1 - math.log(a)).real
        np.testing.assert_allclose(z.numpy(), expected, rtol=1e-12, atol=1e-300)
        z32 = PROX["max_entropy"](v.float(), a, lam=1.0)
        np.testing.assert_allclose(z32.double().numpy(), expected, rtol=2e-5, atol=1e-30)


def test_max_entropy_where_x_over_a_overflows():
    # x / a = -1e310 overflowed and the operator returned x itself (-1e10), outside its domain;
    # the reference a * W0(exp(x/a - 1 - log a)) is evaluated by mpmath, whose exponents do not
    # overflow (torch depends on sympy, which depends on mpmath)
    import mpmath

    for dtype, a, v in ((torch.float64, 1e-300, [-1e10, -1.0, 0.0, 3.0, 1e10]),
                        (torch.float32, 1e-39, [-1e10, -1.0, 3.0, 1e10]), (torch.float32, 1e-300, [-2.0, 5.0])):
        with mpmath.workdps(40):
            A = mpmath.mpf(a)
            expected = [float(A * mpmath.lambertw(mpmath.exp(mpmath.mpf(x) / A - 1 - mpmath.log(A))).real) for x in v]
        z = PROX["max_entropy"](torch.tensor(v, dtype=dtype), a, lam=1.0)
        assert (z >= 0).all()
        np.testing.assert_allclose(z.double().numpy(), expected, rtol=1e-6 if dtype == torch.float32 else 1e-12,
                                   atol=1e-300)


def test_max_entropy_gradient_is_the_implicit_derivative():
    # z + a log z = v - a  =>  dz/dv = z / (z + a)
    v = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    a = 0.5
    z = PROX["max_entropy"](v, a, lam=1.0)
    z.sum().backward()
    torch.testing.assert_close(v.grad, (z / (z + a)).detach(), rtol=1e-10, atol=1e-12)


def test_max_entropy_lam_zero_is_nonneg_projection():
    v = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(PROX["max_entropy"](v, 1.0, lam=0.0), v.clamp_min(0))


# --------------------------------------------------------------- vector-wise: scipy SLSQP


def _slsqp(v, x0, constraints=(), bounds=None, split=False):
    """SLSQP on 1/2 ||z - v||^2 (z = p - q when ``split``) with exact gradients."""
    d = len(v)
    if split:
        def fun(pq):
            r = pq[:d] - pq[d:] - v
            return 0.5 * r @ r, np.concatenate([r, -r])
    else:
        def fun(z):
            return 0.5 * (z - v) @ (z - v), z - v
    res = minimize(fun, x0, jac=True, method="SLSQP", constraints=constraints, bounds=bounds,
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert res.status in (0, 8), res.message  # 8: the line search hit round-off at the optimum
    return res.x[:d] - res.x[d:] if split else res.x


def _simplex_ref(v, s):
    eq = {"type": "eq", "fun": lambda z: np.sum(z) - s, "jac": lambda z: np.ones_like(z)}
    return _slsqp(v, np.full_like(v, s / len(v)), [eq], [(0, None)] * len(v))


def _l1_ball_ref(v, r):
    ineq = {"type": "ineq", "fun": lambda pq: r - np.sum(pq), "jac": lambda pq: -np.ones_like(pq)}
    return _slsqp(v, np.zeros(2 * len(v)), [ineq], [(0, None)] * (2 * len(v)), split=True)


def _l2_ball_ref(v, r):
    ineq = {"type": "ineq", "fun": lambda z: r**2 - z @ z, "jac": lambda z: -2 * z}
    return _slsqp(v, np.zeros_like(v), [ineq])


def _l21_ref(v, a):
    # Moreau decomposition: prox of a ||.||_2 is v minus the projection onto the ball of radius a
    return v - _l2_ball_ref(v, a)


VECTOR_CASES = {
    "simplex": ({"s": 1.5}, lambda v: _simplex_ref(v, 1.5)),
    "l1_ball": ({"radius": 1.2}, lambda v: _l1_ball_ref(v, 1.2)),
    "l2_ball": ({"radius": 1.2}, lambda v: _l2_ball_ref(v, 1.2)),
    "l21": ({"lam": 1.0}, lambda v: _l21_ref(v, STEP * 1.0)),
}


@pytest.mark.parametrize("name", sorted(VECTOR_CASES))
def test_vectorwise_matches_scipy(name):
    params, reference = VECTOR_CASES[name]
    rng = np.random.default_rng(1)
    V = rng.normal(size=(5, 6)) * np.array([0.1, 0.3, 1.0, 2.0, 3.0, 0.5])  # inside and outside
    V[:, 5] = [0.05, -0.02, 0.1, 0.0, 0.3]  # a column with small norms (inside / shrunk to 0)
    Z = PROX[name](torch.from_numpy(V), STEP, **params).numpy()
    expected = np.stack([reference(V[:, j]) for j in range(V.shape[1])], axis=1)
    np.testing.assert_allclose(Z, expected, atol=2e-6)


# --------------------------------------------------------------- properties on random inputs


def _random(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feasibility(dtype):
    X = _random((7, 9), dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    sums = lambda Z: Z.sum(0)  # noqa: E731
    Z = PROX["simplex"](X, 1.0, s=2.0)
    assert (Z >= 0).all() and torch.allclose(sums(Z), torch.full((9,), 2.0, dtype=dtype), atol=tol)
    Z = PROX["unity"](X, 1.0, s=2.0)
    assert (Z >= 0).all() and torch.allclose(sums(Z), torch.full((9,), 2.0, dtype=dtype), atol=tol)
    assert (PROX["l1_ball"](X, 1.0, radius=1.5).abs().sum(0) <= 1.5 + tol).all()
    assert (torch.linalg.vector_norm(PROX["l2_ball"](X, 1.0, radius=1.5), dim=0) <= 1.5 + tol).all()
    Z = PROX["box"](X, 1.0, low=-1.0, high=0.5)
    assert ((Z >= -1) & (Z <= 0.5)).all()
    assert (PROX["nonneg"](X, 1.0) >= 0).all() and (PROX["l1_nonneg"](X, 1.0, lam=0.5) >= 0).all()
    assert (PROX["max_entropy"](X, 1.0, lam=0.5) > 0).all()


@pytest.mark.parametrize("name", sorted(PROX))
def test_float32_agrees_with_float64_and_keeps_dtype(name):
    X = _random((6, 8), torch.float64)
    Z64 = PROX[name](X, 0.8, **example(name))
    Z32 = PROX[name](X.float(), 0.8, **example(name))
    assert Z32.dtype == torch.float32 and Z64.dtype == torch.float64 and Z32.shape == X.shape
    torch.testing.assert_close(Z32.double(), Z64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PROX))
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (0,), ()])
def test_empty_and_scalar_inputs(name, shape):
    X = torch.full(shape, 0.7, dtype=torch.float64)
    Z = PROX[name](X, 0.8, **example(name))
    assert Z.shape == X.shape and Z.dtype == X.dtype
    assert bool(torch.isfinite(Z).all())


@pytest.mark.parametrize("offset", [1e5, -1e5, 3e7])
def test_float32_simplex_and_l1_ball_with_a_large_common_offset(offset):
    # the cumulative sums carried the offset: float32 columns around 1e5 missed sum = 1 by
    # 3e-2; the reference is the float64 operator (checked against SLSQP above) on the same input
    X = (torch.randn(20, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + offset).float()
    for name in ("simplex", "l1_ball"):
        Z = PROX[name](X, 1.0)
        reference = PROX[name](X.double(), 1.0)
        assert (Z.double().abs().sum(0) - 1).abs().max() < 1e-6
        torch.testing.assert_close(Z.double(), reference, rtol=0, atol=1e-6)


def test_degenerate_cases_of_the_vector_sets():
    ties = torch.full((4, 2), 3.0, dtype=torch.float64)
    torch.testing.assert_close(PROX["simplex"](ties, 1.0), torch.full((4, 2), 0.25, dtype=torch.float64))
    torch.testing.assert_close(PROX["simplex"](ties, 1.0, s=0.0), torch.zeros(4, 2, dtype=torch.float64))
    torch.testing.assert_close(PROX["unity"](-ties, 1.0), torch.full((4, 2), 0.25, dtype=torch.float64))
    inside = torch.tensor([[0.1, -0.2], [0.3, 0.0]], dtype=torch.float64)
    assert torch.equal(PROX["l1_ball"](inside, 1.0, radius=1.0), inside)
    assert torch.equal(PROX["l2_ball"](inside, 1.0, radius=1.0), inside)
    assert torch.equal(PROX["l1_ball"](inside, 1.0, radius=0.0), torch.zeros_like(inside))
    assert torch.equal(PROX["l2_ball"](inside, 1.0, radius=0.0), torch.zeros_like(inside))
    assert torch.equal(PROX["l21"](torch.zeros(3, 2), 1.0, lam=1.0), torch.zeros(3, 2))
    for name in ("l1", "l21", "l0"):
        assert torch.equal(PROX[name](inside, 0.0, lam=1.0), inside)  # zero step: identity


@pytest.mark.parametrize("name", sorted(PROX))
def test_autograd_gradients_match_finite_differences(name):
    # away from kinks every operator is smooth; gradcheck compares with finite differences
    X = (_random((4, 3), torch.float64, seed=3) + 0.01).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda A: PROX[name](A, 0.8, **example(name)), (X,))


def test_parameters_are_declared_and_checked():
    for spec in BUILTIN_PROX:
        assert spec.summary
        resolved = spec.resolve({})
        assert set(resolved) == {p.name for p in spec.params}
    with pytest.raises(UserError, match="below its minimum"):
        PROX["l1"].resolve({"lam": "-1"})
    with pytest.raises(UserError, match="not one of"):
        PROX["simplex"].resolve({"axis": "diagonal"})
    with pytest.raises(UserError, match="low=2 is greater than high=1"):
        PROX["box"](torch.zeros(2), 1.0, low=2.0, high=1.0)


@pytest.mark.parametrize("name,params,g", [
    ("l1", {"lam": 0.5}, lambda z: 0.5 * np.abs(z).sum()),
    ("l1_nonneg", {"lam": 0.5}, lambda z: 0.5 * z.sum()),
    ("elastic_nonneg", {"lam": 0.5, "ridge": 3.0}, lambda z: 0.5 * z.sum() + 1.5 * np.sum(z * z)),
    ("l0", {"lam": 0.5}, lambda z: 0.5 * np.count_nonzero(z)),
    ("max_entropy", {"lam": 0.5}, lambda z: 0.5 * np.sum(z * np.log(z))),
    ("l21", {"lam": 0.5}, lambda z: 0.5 * np.linalg.norm(z, axis=0).sum()),
])
def test_declared_penalties(name, params, g):
    Z = PROX[name](_random((4, 5), torch.float64), 0.8, **params)
    assert float(PROX[name].penalty(Z, **params)) == pytest.approx(g(Z.numpy()), rel=1e-12)


def test_registered_through_the_plugin_hook(registry):
    assert set(PROX) <= set(registry.prox)
    assert registry.owner[("prox", "simplex")] == "proxmf_bench.solve.prox"

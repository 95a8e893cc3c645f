r"""The built-in proximal operators, registered through ``proxmf_register_prox``.

Every operator has the signature ``fn(X, step, **params) -> Z`` and returns

.. math:: Z = \operatorname{prox}_{t g}(X) = \arg\min_Z \tfrac12 \|Z - X\|_F^2 + t\, g(Z),
          \qquad t = \texttt{step},

for its penalty or constraint ``g``; projections (``g`` the indicator of a set) ignore ``t``.
Operators are pure torch: batched, on any device and floating dtype, with no Python loop over
columns, and differentiable by autograd wherever the operator is differentiable (almost
everywhere for all of them). Inputs are never modified.

Set-valued constraints that concern whole vectors (``simplex``, ``unity``, ``l2_ball``,
``l1_ball``) and the groups of ``l21`` act on each column (``axis=columns``, along dim 0) or on
each row (``axis=rows``, along the last dim) of a matrix; a 1-D tensor is one vector. All other
operators are elementwise.

Each spec also carries ``penalty(X, **params)``, the value of ``g``, +inf outside its domain
(``l1_nonneg`` and ``max_entropy`` at a negative entry; ``None`` for indicator functions and
for the normalisation ``unity``, which are 0 at the operator's outputs); the FISTA solver uses
it for function-value restarts. Each declares what it is (``projection``, ``convex``,
``acts_on``, example parameters) for the contract checks of :mod:`proxmf_bench.testing`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import Param, ProxSpec

AXES = ("columns", "rows")


def _dim(X: torch.Tensor, axis: str) -> int:
    """The dimension that holds one vector: 0 for columns, the last one for rows."""
    if axis not in AXES:
        raise UserError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    return 0 if axis == "columns" or X.ndim < 2 else X.ndim - 1


def _vectorwise(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Let a vector-wise operator take a scalar (a vector of length one) or an empty tensor."""

    @functools.wraps(fn)
    def wrapper(X: torch.Tensor, step: float, **params) -> torch.Tensor:
        if X.ndim == 0:
            return wrapper(X.reshape(1), step, **params).reshape(())
        if X.numel() == 0:
            _dim(X, params.get("axis", "columns"))
            return X.clone()
        return fn(X, step, **params)

    return wrapper


# ---------------------------------------------------------------------------------- elementwise


def prox_nonneg(X: torch.Tensor, step: float) -> torch.Tensor:
    r"""Projection onto the nonnegative orthant, :math:`\max(X, 0)`."""
    return X.clamp_min(0)


def prox_nonneg_(X: torch.Tensor, step: float) -> torch.Tensor:
    """:func:`prox_nonneg` overwriting ``X``."""
    return X.clamp_min_(0)


def prox_box(X: torch.Tensor, step: float, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    r"""Projection onto the box :math:`\{\text{low} \le x_i \le \text{high}\}`."""
    _check_box(low, high)
    return X.clamp(low, high)


def prox_box_(X: torch.Tensor, step: float, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """:func:`prox_box` overwriting ``X``."""
    _check_box(low, high)
    return X.clamp_(low, high)


def _check_box(low: float, high: float) -> None:
    if low > high:
        raise UserError(f"box: low={low:g} is greater than high={high:g}")


def prox_l1(X: torch.Tensor, step: float, lam: float = 0.1) -> torch.Tensor:
    r"""Soft threshold, the prox of :math:`\lambda\|x\|_1`: :math:`\operatorname{sign}(x)\max(|x| - t\lambda, 0)`."""
    tau = step * lam
    return X - X.clamp(-tau, tau)


def prox_l1_nonneg(X: torch.Tensor, step: float, lam: float = 0.1) -> torch.Tensor:
    r"""Prox of :math:`\lambda \sum_i x_i + \iota_{x \ge 0}`: :math:`\max(x - t\lambda, 0)`."""
    return (X - step * lam).clamp_min(0)


def prox_elastic_nonneg(X: torch.Tensor, step: float, lam: float = 0.1, ridge: float = 0.1) -> torch.Tensor:
    r"""Prox of :math:`\lambda \sum_i x_i + \tfrac{\rho}{2}\|x\|^2 + \iota_{x \ge 0}` (``ridge`` is
    :math:`\rho`): :math:`\max(x - t\lambda, 0) / (1 + t\rho)`."""
    return (X - step * lam).clamp_min(0) / (1.0 + step * ridge)


def prox_l0(X: torch.Tensor, step: float, lam: float = 0.1) -> torch.Tensor:
    r"""Hard threshold, a prox of :math:`\lambda\|x\|_0`: keep :math:`x_i` where :math:`x_i^2 > 2 t \lambda`.

    At :math:`|x_i| = \sqrt{2t\lambda}` both ``0`` and ``x_i`` minimise; ``0`` is returned.
    """
    return torch.where(X.abs() > math.sqrt(2.0 * step * lam), X, X.new_zeros(()))


def prox_max_entropy(X: torch.Tensor, step: float, lam: float = 0.1, newton_steps: int = 8) -> torch.Tensor:
    r"""Prox of the negative entropy :math:`\lambda \sum_i x_i \log x_i` (domain :math:`x \ge 0`).

    With :math:`a = t\lambda > 0` the optimality condition :math:`z - x + a(\log z + 1) = 0`
    gives :math:`z = a\,w` where :math:`w + \log w = c := x/a - 1 - \log a`, i.e. :math:`w` is
    the Wright omega function :math:`\omega(c) = W_0(e^c)`. Torch has no Lambert W, so
    :math:`y = \log w` is found by Newton's method on the convex increasing
    :math:`\phi(y) = e^y + y - c`, started at :math:`y_0 = \log c` for :math:`c > 1` and
    :math:`y_0 = c` otherwise. Both starts satisfy :math:`\phi(y_0) \ge 0`, so the iterates
    decrease monotonically to the root (the safeguard: no overshoot, no overflow) and converge
    quadratically; ``newton_steps = 8`` reaches float64 precision for every :math:`c`.
    With :math:`a = 0` the operator is the limit :math:`\max(x, 0)`, and so it is where
    :math:`x/a` overflows (a tiny step, below about 1e-38 in float32): there :math:`z = x`
    up to a relative :math:`a \log(x) / x` for :math:`x > 0`, and :math:`z = a\,e^{c}`
    underflows to 0 for :math:`x < 0`.
    """
    a = step * lam
    if a == 0:
        return X.clamp_min(0)
    c = X / a - (1.0 + math.log(a))
    y = torch.where(c > 1, torch.log(c.clamp_min(1)), c)
    for _ in range(newton_steps):
        ey = torch.exp(y)
        y = y - (ey + y - c) / (ey + 1)
    return torch.where(torch.isfinite(c), a * torch.exp(y), X.clamp_min(0))


# ------------------------------------------------------------------------------ vector-wise sets


def simplex_threshold(V: torch.Tensor, s: float, dim: int = 0) -> torch.Tensor:
    r"""The :math:`\theta` (one per vector along ``dim``) with :math:`\sum_i \max(v_i - \theta, 0) = s`.

    Sort-based (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with :math:`u` sorted
    decreasingly and :math:`\rho = \max\{k : u_k > (\sum_{j \le k} u_j - s)/k\}`,
    :math:`\theta = (\sum_{j \le \rho} u_j - s)/\rho`. One sort and one cumulative sum per
    vector, all vectors at once. For ``s = 0`` the result is :math:`\max_i v_i`.

    The cumulative sums carry any common offset of a vector, so the rounding of
    :math:`\theta` grows with it (float32 columns around 1e5 miss the sum by 3e-2): pass
    vectors shifted by their maximum (:func:`_shifted_by_max`), whose entries in the support
    then lie within ``s`` of 0.
    """
    U = torch.sort(V, dim=dim, descending=True).values
    css = U.cumsum(dim).sub_(s)
    shape = [1] * V.ndim
    shape[dim] = V.shape[dim]
    k = torch.arange(1, V.shape[dim] + 1, device=V.device, dtype=V.dtype).view(shape)
    # the condition holds for k = 1..rho and fails after, so rho is the count of its successes
    # (at a boundary blurred by round-off, both candidate rho give the same theta)
    rho = torch.gt(U.mul_(k), css).sum(dim, keepdim=True).clamp_min_(1)
    return css.gather(dim, rho - 1) / rho


def _shifted_by_max(V: torch.Tensor, dim: int) -> torch.Tensor:
    """``V`` minus the maximum of each vector along ``dim``: the threshold is translation
    equivariant, and the shifted entries near the maximum are exact (Sterbenz)."""
    return V - V.amax(dim, keepdim=True)


@_vectorwise
def prox_simplex(X: torch.Tensor, step: float, s: float = 1.0, axis: str = "columns") -> torch.Tensor:
    r"""Exact Euclidean projection of each vector onto :math:`\{x \ge 0,\ \sum_i x_i = s\}`.

    Computed as :math:`\max(D - \theta_D, 0)` with :math:`D = x - \max_i x_i`, so that a
    large common offset does not cost precision (see :func:`simplex_threshold`).
    """
    dim = _dim(X, axis)
    D = _shifted_by_max(X, dim)
    return D.sub_(simplex_threshold(D, s, dim)).clamp_min_(0)


@_vectorwise
def prox_unity(X: torch.Tensor, step: float, s: float = 1.0, axis: str = "columns") -> torch.Tensor:
    r"""Normalisation of each vector to sum ``s``: :math:`s\,\max(x, 0) / \sum_i \max(x_i, 0)`.

    This is the seed blog's normalisation (there applied after a nonnegativity projection),
    kept to compare against the exact projection ``simplex``: its output lies on the same set
    but it is *not* the Euclidean projection (nor any prox). A vector with no positive entry
    becomes the uniform vector :math:`s/d`.
    """
    dim = _dim(X, axis)
    P = X.clamp_min(0)
    total = P.sum(dim, keepdim=True)
    positive = total > 0
    scale = s / torch.where(positive, total, torch.ones_like(total))
    return torch.where(positive, P * scale, torch.full_like(total, s / X.shape[dim]))


@_vectorwise
def prox_l2_ball(X: torch.Tensor, step: float, radius: float = 1.0, axis: str = "columns") -> torch.Tensor:
    r"""Projection of each vector onto :math:`\{\|x\|_2 \le r\}`: :math:`x \min(1, r / \|x\|_2)`."""
    dim = _dim(X, axis)
    norm = torch.linalg.vector_norm(X, dim=dim, keepdim=True)
    outside = norm > radius
    return torch.where(outside, X * (radius / torch.where(outside, norm, torch.ones_like(norm))), X)


@_vectorwise
def prox_l1_ball(X: torch.Tensor, step: float, radius: float = 1.0, axis: str = "columns") -> torch.Tensor:
    r"""Exact projection of each vector onto :math:`\{\|x\|_1 \le r\}`.

    :math:`z = \operatorname{sign}(x)\max(|x| - \theta, 0)` with
    :math:`\theta = \max(\theta_s, 0)`, :math:`\theta_s` the simplex threshold of :math:`|x|`
    for total ``r`` (Duchi et al. 2008). Points already inside have :math:`\theta_s \le 0`
    and are returned unchanged. As in ``simplex``, the threshold is taken on :math:`|x|`
    shifted by its maximum :math:`M` (:math:`\theta_s = M + \theta_D`).
    """
    dim = _dim(X, axis)
    A = X.abs()
    M = A.amax(dim, keepdim=True)
    D = A - M  # not in place: amax's gradient needs A
    theta_D = simplex_threshold(D, radius, dim)
    return torch.where(theta_D + M > 0, X.sign() * D.sub_(theta_D).clamp_min_(0), X)


@_vectorwise
def prox_l21(X: torch.Tensor, step: float, lam: float = 0.1, axis: str = "columns") -> torch.Tensor:
    r"""Group soft threshold, the prox of :math:`\lambda \sum_g \|x_g\|_2` over columns or rows.

    :math:`z_g = x_g \max(0, 1 - t\lambda / \|x_g\|_2)`; a group with norm at most
    :math:`t\lambda` becomes zero.
    """
    dim = _dim(X, axis)
    norm = torch.linalg.vector_norm(X, dim=dim, keepdim=True)
    tiny = torch.finfo(X.dtype).tiny
    return X * (1 - (step * lam) / norm.clamp_min(tiny)).clamp_min(0)


# ------------------------------------------------------------------------------------ penalties


def _sum64(X: torch.Tensor) -> torch.Tensor:
    return X.sum(dtype=torch.float64)


def penalty_l1(X: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    return lam * _sum64(X.abs())


def _on_nonneg(X: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` where ``X >= 0``, +inf outside: the domain of a penalty restricted to x >= 0."""
    return torch.where((X < 0).any(), math.inf, value)


def penalty_l1_nonneg(X: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    return _on_nonneg(X, lam * _sum64(X))


def penalty_elastic_nonneg(X: torch.Tensor, lam: float = 0.1, ridge: float = 0.1) -> torch.Tensor:
    return _on_nonneg(X, lam * _sum64(X) + 0.5 * ridge * _sum64(X * X))


def penalty_l0(X: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    return lam * _sum64((X != 0).to(X.dtype))


def penalty_max_entropy(X: torch.Tensor, lam: float = 0.1, newton_steps: int = 8) -> torch.Tensor:
    return _on_nonneg(X, lam * _sum64(torch.special.xlogy(X, X)))


def penalty_l21(X: torch.Tensor, lam: float = 0.1, axis: str = "columns") -> torch.Tensor:
    if X.ndim == 0:
        X = X.reshape(1)
    return lam * _sum64(torch.linalg.vector_norm(X, dim=_dim(X, axis)))


# --------------------------------------------------------------------------------- registration


def _lam(help_text: str) -> Param:
    return Param("lam", 0.1, float, help_text, low=0.0)


def _axis(what: str) -> Param:
    return Param("axis", "columns", str, f"{what} each column or each row", choices=AXES)


BUILTIN_PROX = (
    ProxSpec("nonneg", prox_nonneg, summary="projection onto X >= 0", inplace=prox_nonneg_, projection=True, convex=True),
    ProxSpec(
        "simplex", prox_simplex,
        params=(Param("s", 1.0, float, "sum of each vector", low=0.0), _axis("project")),
        summary="exact Euclidean projection of each column (or row) onto {x >= 0, sum x = s}, sort-based",
        projection=True, convex=True, acts_on="vectors", examples=({"s": 2.5}, {"axis": "rows"}),
    ),
    ProxSpec(
        "unity", prox_unity,
        params=(Param("s", 1.0, float, "sum of each vector", low=0.0), _axis("normalise")),
        summary="s max(x, 0) / sum(max(x, 0)) per column or row (the seed's normalisation; not a projection)",
        acts_on="vectors", examples=({"s": 2.0, "axis": "rows"},),
    ),
    ProxSpec("l1", prox_l1, params=(_lam("weight of lam * ||x||_1"),), penalty=penalty_l1,
             summary="soft threshold, prox of lam * ||x||_1", convex=True, examples=({"lam": 2.0},)),
    ProxSpec("l1_nonneg", prox_l1_nonneg, params=(_lam("weight of lam * sum x"),), penalty=penalty_l1_nonneg,
             summary="prox of lam * ||x||_1 on x >= 0: max(x - step * lam, 0)", convex=True,
             examples=({"lam": 2.0},)),
    ProxSpec(
        "max_entropy", prox_max_entropy,
        params=(
            _lam("weight of lam * sum x log x"),
            Param("newton_steps", 8, int, "Newton steps for the Wright omega function", low=1, high=50),
        ),
        penalty=penalty_max_entropy,
        summary="prox of lam * sum x log x (negative entropy), safeguarded Newton",
        convex=True, examples=({"lam": 3.0},),
    ),
    ProxSpec(
        "box", prox_box,
        params=(Param("low", 0.0, float, "lower bound"), Param("high", 1.0, float, "upper bound")),
        summary="projection onto low <= x <= high", inplace=prox_box_,
        projection=True, convex=True, examples=({"low": -1.0, "high": 2.0},),
    ),
    ProxSpec(
        "l2_ball", prox_l2_ball,
        params=(Param("radius", 1.0, float, "ball radius", low=0.0), _axis("project")),
        summary="projection of each column (or row) onto {||x||_2 <= radius}",
        projection=True, convex=True, acts_on="vectors", examples=({"radius": 0.3, "axis": "rows"},),
    ),
    ProxSpec(
        "l1_ball", prox_l1_ball,
        params=(Param("radius", 1.0, float, "ball radius", low=0.0), _axis("project")),
        summary="exact projection of each column (or row) onto {||x||_1 <= radius}",
        projection=True, convex=True, acts_on="vectors", examples=({"radius": 0.3, "axis": "rows"},),
    ),
    ProxSpec("l0", prox_l0, params=(_lam("weight of lam * ||x||_0"),), penalty=penalty_l0,
             summary="hard threshold, prox of lam * ||x||_0 (nonconvex)", examples=({"lam": 2.0},)),
    ProxSpec(
        "l21", prox_l21, params=(_lam("weight of lam * sum of group norms"), _axis("groups are")),
        penalty=penalty_l21, summary="group soft threshold, prox of lam * sum_g ||x_g||_2 (groups: columns or rows)",
        convex=True, acts_on="vectors", examples=({"lam": 1.0, "axis": "rows"},),
    ),
    ProxSpec(
        "elastic_nonneg", prox_elastic_nonneg,
        params=(_lam("weight of lam * sum x"), Param("ridge", 0.1, float, "weight of ridge/2 ||x||^2", low=0.0)),
        penalty=penalty_elastic_nonneg, convex=True, examples=({"lam": 0.0, "ridge": 2.0}, {"lam": 1.5, "ridge": 0.5}),
        summary="prox of lam * sum x + ridge/2 ||x||^2 on x >= 0: max(x - step * lam, 0) / (1 + step * ridge)",
    ),
)


@hookimpl
def proxmf_register_prox(register):
    for spec in BUILTIN_PROX:
        register(spec)

r"""Building blocks shared by the proximal-gradient solver family (``pgm``, ``pgm_momentum``,
``fista``, ``adaprox``, ``pgm_torch``) and by third-party solvers that want the same interface.

**Choosing the prox operators.** Every solver built with :func:`prox_solver_spec` takes the
parameters ``prox_W`` and ``prox_H``: the name of any registered prox operator (third-party
ones included), resolved through the registry. The chosen operator's own parameters are given
with the block as suffix (``lam_H=0.1``, ``radius_W=2``). Unsuffixed ``prox=...`` and
``lam=...`` are shorthand for both blocks (a suffixed value wins); an unsuffixed prox parameter
applies to every block whose operator declares it (unless the solver has a parameter of that
name, which takes it). So ``pgm[prox=l1,lam=0.1]`` puts
``l1`` with ``lam=0.1`` on ``W`` and on ``H``. Resolved parameters are flat
(``{"prox_H": <ProxSpec l1>, "lam_H": 0.1, ...}``) and are recorded as such in the results'
``solver_params`` (the prox by name).

**Block quantities.** For :math:`f(W, H) = \tfrac12\|Y - WH\|_F^2`,

.. math::
    \nabla_H f = (W^\top W) H - W^\top Y, \qquad \nabla_W f = W (H H^\top) - Y H^\top,

so each block needs one :math:`r \times r` Gram and one cross product with ``Y``; its gradient
is Lipschitz with constant :math:`L = \lambda_{\max}` of that Gram, from the eigenvalues of the
:math:`r \times r` matrix (``torch.linalg.eigvalsh``, or LAPACK directly on the CPU). Blocks are oriented so that the
Gram always multiplies from the same side: the ``W`` block works on :math:`W^\top`
(``r x m``), whose gradient is :math:`(H H^\top) W^\top - H Y^\top`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from proxmf_bench.errors import UserError, did_you_mean
from proxmf_bench.plugin.specs import FactorTerm, Objective, Param, ProxSpec, SolverSpec, SpecLookup, coerce_params
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import times

BLOCKS = ("W", "H")
DEFAULT_PROX = "nonneg"


@dataclass(frozen=True)
class BoundProx:
    """A registered prox operator with its parameters fixed: ``prox(X, step)``."""

    spec: ProxSpec
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, X: torch.Tensor, step: float) -> torch.Tensor:
        return self.spec.fn(X, step, **self.params)

    def apply_(self, X: torch.Tensor, step: float) -> torch.Tensor:
        """The prox of ``X``, which it may overwrite (the operator's in-place variant, if any)."""
        return (self.spec.inplace or self.spec.fn)(X, step, **self.params)

    def penalty(self, X: torch.Tensor) -> float:
        """``g(X)``; 0 for operators that declare no penalty (indicators of sets)."""
        if self.spec.penalty is None:
            return 0.0
        return float(self.spec.penalty(X, **self.params))

    @property
    def term(self) -> FactorTerm:
        """This operator's term of the objective."""
        return FactorTerm(self.spec, self.params)


def prox_param(block: str) -> Param:
    """The declared ``prox_<block>`` parameter (what ``proxmf-bench list`` shows)."""
    return Param(
        f"prox_{block}", DEFAULT_PROX, str,
        f"prox operator on {block} (any registered one); its parameters take the suffix _{block}",
    )


def resolve_prox_params(
    given: Mapping[str, Any], registry: SpecLookup, own: tuple[Param, ...], owner: str
) -> dict[str, Any]:
    """Resolve a PGM-family solver's parameters: its own, ``prox_W``/``prox_H`` and theirs.

    Unknown names, unknown prox operators (with a close-match suggestion) and out-of-range
    values are a :class:`UserError`. Each chosen operator is applied once to a tiny tensor so
    that a bad combination of its parameters (``box`` with ``low > high``) fails here, before
    any solver runs.
    """
    own_names = {p.name for p in own}
    rest = dict(given)
    own_given = {k: rest.pop(k) for k in list(rest) if k in own_names}
    resolved = coerce_params(own, own_given, owner)
    shorthand_prox = rest.pop("prox", None)
    specs: dict[str, ProxSpec] = {}
    for block in BLOCKS:
        name = rest.pop(f"prox_{block}", shorthand_prox if shorthand_prox is not None else DEFAULT_PROX)
        try:
            specs[block] = registry.get_prox(str(name).strip())
        except UserError as exc:
            raise UserError(f"{owner}: prox_{block}: {exc}") from None
        resolved[f"prox_{block}"] = specs[block]
    used: set[str] = set()
    for block in BLOCKS:
        spec = specs[block]
        values = {}
        for p in spec.params:
            key = f"{p.name}_{block}"
            if key in rest:
                values[p.name] = rest[key]
                used.add(key)
            elif p.name in rest:
                values[p.name] = rest[p.name]
                used.add(p.name)
        bound = coerce_params(spec.params, values, f"{owner}: prox {spec.name} on {block}")
        _try_prox(BoundProx(spec, bound), f"{owner}: prox {spec.name} on {block}")
        resolved.update({f"{k}_{block}": v for k, v in bound.items()})
    unknown = [k for k in rest if k not in used]
    if unknown:
        known = sorted(own_names | {"prox", "prox_W", "prox_H"} | {
            f"{p.name}_{b}" for b in BLOCKS for p in specs[b].params
        })
        raise UserError(
            f"{owner}: unknown parameter {unknown[0]!r}{did_you_mean(unknown[0], known)} "
            f"(parameters: {', '.join(known)})"
        )
    return resolved


def _try_prox(prox: BoundProx, owner: str) -> None:
    try:
        prox(torch.ones(2, 2, dtype=torch.float64), 1.0)
    except UserError as exc:
        raise UserError(f"{owner}: {exc}") from None


def split_prox_params(params: Mapping[str, Any]) -> tuple[BoundProx, BoundProx, dict[str, Any]]:
    """Resolved flat parameters -> ``(prox_W, prox_H, the solver's own parameters)``."""
    rest = dict(params)
    bound = []
    for block in BLOCKS:
        spec = rest.pop(f"prox_{block}")
        bound.append(BoundProx(spec, {p.name: rest.pop(f"{p.name}_{block}") for p in spec.params}))
    return bound[0], bound[1], rest


def prox_objective(params: Mapping[str, Any]) -> Objective:
    """The objective of a PGM-family variant: the loss plus the terms of ``prox_W`` and ``prox_H``."""
    prox_W, prox_H, _ = split_prox_params(params)
    return Objective(W=prox_W.term, H=prox_H.term)


def prox_solver_spec(
    name: str,
    solver: Callable[..., Any],
    params: tuple[Param, ...] = (),
    summary: str = "",
    grid: Mapping[str, Any] | None = None,
    check: Callable[[Mapping[str, Any]], str | None] | None = None,
    examples: tuple[Mapping[str, Any], ...] = (),
) -> SolverSpec:
    """A :class:`SolverSpec` for ``solver(prox_W, prox_H, **own_params)``.

    The declared parameters are ``prox_W``, ``prox_H`` and ``params``; resolution goes
    through :func:`resolve_prox_params`, and the objective is :func:`prox_objective`. ``check(resolved)``, if given, returns a message
    for a combination of values that is invalid (it becomes a :class:`UserError`).
    ``examples``: see :class:`SolverSpec`.
    """

    def factory(**resolved: Any) -> Any:
        prox_W, prox_H, own = split_prox_params(resolved)
        return solver(prox_W=prox_W, prox_H=prox_H, **own)

    def resolve(given: Mapping[str, Any], registry: SpecLookup) -> dict[str, Any]:
        resolved = resolve_prox_params(given, registry, params, f"solver {name}")
        message = check(resolved) if check is not None else None
        if message:
            raise UserError(f"solver {name}: {message}")
        return resolved

    return SolverSpec(
        name=name, factory=factory, params=(prox_param("W"), prox_param("H"), *params),
        grid=dict(grid or {}), summary=summary, resolve_params=resolve, objective=prox_objective,
        examples=examples,
    )


# dtype -> LAPACK syevd, filled by load_eigensolver
_SYEVD: dict[torch.dtype, Callable[..., Any]] = {}


def _syevd(dtype: torch.dtype) -> Callable[..., Any] | None:
    load_eigensolver()
    return _SYEVD.get(dtype)


def load_eigensolver() -> None:
    """Import the CPU eigensolver now. Solver constructors call this, so that the import
    happens when the harness builds a solver, never inside the timed ``init``/``step``."""
    if not _SYEVD:
        from scipy.linalg import lapack  # on first use: importing scipy.linalg slows every start-up

        _SYEVD.update({torch.float64: lapack.dsyevd, torch.float32: lapack.ssyevd})


def extreme_eigenvalues(gram: torch.Tensor) -> tuple[float, float]:
    """Smallest and largest eigenvalue of a symmetric ``r x r`` Gram; NaN if it is not finite.

    On the CPU, LAPACK's ``syevd`` is called directly: ``torch.linalg.eigvalsh`` adds some
    30 us of fixed overhead per call, as much as all the products of a small problem.
    """
    syevd = _syevd(gram.dtype) if gram.is_cpu else None
    if syevd is not None:
        eigenvalues, _, info = syevd(gram.detach().numpy(), compute_v=0)
        return (float(eigenvalues[0]), float(eigenvalues[-1])) if info == 0 else (math.nan, math.nan)
    try:
        eigenvalues = torch.linalg.eigvalsh(gram)
    except torch.linalg.LinAlgError:
        return math.nan, math.nan
    return float(eigenvalues[0]), float(eigenvalues[-1])


def lipschitz(gram: torch.Tensor) -> float:
    """Largest eigenvalue of a symmetric PSD ``r x r`` Gram: the block gradient's Lipschitz constant."""
    syevd = _SYEVD.get(gram.dtype) if gram.is_cpu and not gram.requires_grad else None
    if syevd is None:
        return extreme_eigenvalues(gram)[1]
    eigenvalues, _, info = syevd(gram.numpy(), compute_v=0)  # once per block update: the short path
    return float(eigenvalues[-1]) if info == 0 else math.nan


def safe_step(scale: float, L: float) -> float:
    """``scale / L``; a zero Gram (a block with no effect on the loss) gets the step ``scale``."""
    return scale / L if L > 0 else scale


def gram_gradient(gram: torch.Tensor, X: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
    """The block gradient ``gram @ X - cross`` as one fused product."""
    return torch.addmm(cross, gram, X, beta=-1)


def gradient_step(gram: torch.Tensor, X: torch.Tensor, cross: torch.Tensor, step: float) -> torch.Tensor:
    """``X - step * (gram @ X - cross)`` as ``(X + step * cross) - step * gram @ X``: one
    elementwise pass and one fused product."""
    return torch.addmm(torch.add(X, cross, alpha=step), gram, X, alpha=-step)


class AlternatingProxSolver(ABC):
    r"""Base of the analytic solvers: alternate a block update on :math:`H`, then on :math:`W^\top`.

    Both blocks are held as ``r x k`` matrices (``H`` and ``Wt`` :math:`= W^\top`) so that one
    update rule serves both: the block's gradient is ``gram @ X - cross`` with
    ``(gram, cross)`` :math:`= (W^\top W, W^\top Y)` for ``H`` and
    :math:`(H H^\top, H Y^\top)` for ``Wt``. Prox operators see the factor in its natural
    orientation (``W`` is ``m x r``, so column-wise operators act on the columns of ``W``).
    Subclasses implement :meth:`update`; ``W`` is not updated in a fixed-W problem, and the
    ``H``-side products are then computed once.
    """

    def __init__(self, prox_W: BoundProx, prox_H: BoundProx) -> None:
        self.prox_W = prox_W
        self.prox_H = prox_H
        load_eigensolver()

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.problem = problem
        self.Y = problem.Y
        self.fixed_W = problem.fixed_W
        self.Wt = W0.T.contiguous()  # row-major r x m: elementwise updates keep their inputs' layout
        self.H = H0
        self._H_side: tuple[torch.Tensor, torch.Tensor] | None = None
        # (gram, cross, X) of the last block update, and W W^T of the current W (the next
        # H update's Gram, computed at the end of a step): what loss() needs
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._WWt: torch.Tensor | None = None
        self.state: dict[str, dict[str, Any]] = {"W": {}, "H": {}}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.Wt.T, self.H

    def H_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._H_side is not None:
            return self._H_side
        gram = self._WWt if self._WWt is not None else self.Wt @ self.Wt.T
        side = (gram, times(self.Wt, self.Y, self.problem.Yt))
        if self.fixed_W:
            self._H_side = side
        return side

    def W_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.H @ self.H.T, times(self.H, self.problem.Yt, self.Y)  # row-major Y^T: the fastest layout

    def step(self) -> None:
        gram, cross = self.H_side()
        self.H = X = self.update("H", self.H, gram, cross)
        if not self.fixed_W:
            gram, cross = self.W_side()
            self.Wt = X = self.update("W", self.Wt, gram, cross)
            self._WWt = X @ X.T
        self._last = (gram, cross, X)

    def loss(self) -> float:
        """The loss at :meth:`factors` from the last block's products (:meth:`smooth_loss`):
        :math:`O(r^2 k)` instead of an ``m x n x r`` product. A subclass whose ``step``
        changes the factors other than through this class's ``step`` must override it."""
        if self._last is None:  # before the first step
            return self.problem.loss(*self.factors())
        gram, cross, X = self._last
        if self.fixed_W:
            return self.smooth_loss(gram, cross, X)
        # <H H^T W^T, W^T> = <H H^T, W^T W> with W^T W (r x r, here W W^T in Wt's terms) held
        return self.problem.loss_from_products(cross, X, gram, self._WWt)

    @abstractmethod
    def update(self, block: str, X: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        """Return the new value of ``X`` (``H`` or ``Wt``) given its block's products."""

    def prox(self, block: str, Z: torch.Tensor, step: float) -> torch.Tensor:
        """Apply the block's prox to ``Z`` (``r x k`` orientation) with step ``step``."""
        if block == "H":
            return self.prox_H(Z, step)
        return self.prox_W(Z.T, step).T

    def prox_(self, block: str, Z: torch.Tensor, step: float) -> torch.Tensor:
        """:meth:`prox` that may overwrite ``Z``: for an intermediate the caller no longer needs."""
        if block == "H":
            return self.prox_H.apply_(Z, step)
        return self.prox_W.apply_(Z.T, step).T

    def penalty(self, block: str, X: torch.Tensor) -> float:
        return self.prox_H.penalty(X) if block == "H" else self.prox_W.penalty(X.T)

    def smooth_loss(self, gram: torch.Tensor, cross: torch.Tensor, X: torch.Tensor) -> float:
        r""":math:`f = \tfrac12\|Y\|^2 - \langle C, X\rangle + \tfrac12\langle G X, X\rangle` from
        the products ``(G, C)`` of the block ``X``: the loss at ``X`` and the other block's
        current value, accumulated in float64."""
        quad = torch.sum((gram @ X) * X, dtype=torch.float64)
        return self.problem.loss_from_inner_products(torch.sum(cross * X, dtype=torch.float64), quad)

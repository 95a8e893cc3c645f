"""Frozen dataclass specs that plugins register: solvers, datasets and prox operators.

A spec is pure description: a name, declared parameters, and a callable that does the work.
Plugins hand specs to the ``register`` callable their hook receives (see ``hookspecs``).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from proxmf_bench.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import torch

    from proxmf_bench.problem.problem import Problem

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One declared parameter of a solver, dataset or prox operator.

    ``type`` is one of ``int``, ``float``, ``str``, ``bool``. ``low``/``high`` bound numbers
    (inclusive), ``choices`` restricts strings. Values given on the command line arrive as
    strings and are coerced with :meth:`coerce`. NaN is never accepted, and infinity (``inf``,
    or a number too large for a float such as ``1e400``) only where ``allow_infinite`` says so.
    A ``required`` parameter has no usable default (a data file's path): it must be given, and
    ``all`` skips specs that have one.
    """

    name: str
    default: Any
    type: type = float
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False
    allow_infinite: bool = False

    def coerce(self, value: Any, owner: str = "") -> Any:
        """Return ``value`` converted to this parameter's type, or raise ``UserError``."""
        where = f"{owner}: " if owner else ""
        try:
            out = self._convert(value)
        except (TypeError, ValueError):
            raise UserError(
                f"{where}parameter {self.name}={value!r} is not a valid {self.type.__name__}"
            ) from None
        if isinstance(out, float) and math.isnan(out):
            raise UserError(f"{where}parameter {self.name} must not be NaN")
        if isinstance(out, float) and math.isinf(out) and not self.allow_infinite:
            raise UserError(f"{where}parameter {self.name}={value!r} is not a finite number")
        if self.low is not None and out < self.low:
            raise UserError(f"{where}parameter {self.name}={out} is below its minimum {self.low}")
        if self.high is not None and out > self.high:
            raise UserError(f"{where}parameter {self.name}={out} is above its maximum {self.high}")
        if self.choices is not None and out not in self.choices:
            raise UserError(
                f"{where}parameter {self.name}={out!r} is not one of {', '.join(self.choices)}"
            )
        return out

    def _convert(self, value: Any) -> Any:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(value)
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value) if not isinstance(value, str) else int(value.strip())
        if self.type is float:
            return float(value)
        return str(value)

    def describe(self) -> str:
        """Short human description: ``name=default (type, range)``."""
        bits = [self.type.__name__]
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            bits.append(f"[{lo}, {hi}]")
        if self.choices:
            bits.append("|".join(self.choices))
        if self.required:
            bits.append("required")
        text = f"{self.name} ({', '.join(bits)})" if self.required else f"{self.name}={self.default!r} ({', '.join(bits)})"
        return f"{text}: {self.help}" if self.help else text


def coerce_params(
    declared: tuple[Param, ...], given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each value coerced; unknown names and missing
    required parameters are an error."""
    by_name = {p.name: p for p in declared}
    unknown = [k for k in given if k not in by_name]
    if unknown:
        known = ", ".join(by_name) or "none"
        raise UserError(
            f"{owner}: unknown parameter {unknown[0]!r}{did_you_mean(unknown[0], by_name)}"
            f" (parameters: {known})"
        )
    missing = [p for p in declared if p.required and p.name not in given]
    if missing:
        raise UserError(f"{owner}: parameter {missing[0].name!r} is required ({missing[0].help})")
    out = {p.name: p.default for p in declared}
    for key, value in given.items():
        out[key] = by_name[key].coerce(value, owner)
    return out


class Solver(Protocol):
    """What a solver factory returns. The harness owns the clock; ``step`` only computes."""

    def init(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None: ...

    def step(self) -> None: ...

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]: ...

    # Optional: ``loss(self) -> float``, the loss ``1/2 ||Y - W H||_F^2`` at the current
    # ``factors()``, valid after ``init`` and after every ``step``. The harness calls it at
    # record points instead of ``Problem.loss``; a solver that already holds the products
    # (``Y H^T`` and ``H H^T``, or ``W^T Y`` and ``W^T W``) gets the loss in O((m + n) r^2)
    # instead of an m x n x r product. It must agree with ``Problem.loss`` up to rounding.


class SpecLookup(Protocol):
    """What a parameter resolver may look up: registered specs by name (the registry,
    :class:`proxmf_bench.plugin.registry.Registry`, is one)."""

    def get_solver(self, name: str) -> SolverSpec: ...

    def get_dataset(self, name: str) -> DatasetSpec: ...

    def get_prox(self, name: str) -> ProxSpec: ...


ParamResolver = Callable[[Mapping[str, Any], SpecLookup], dict[str, Any]]


class ResolvableSpec:
    """Parameter resolution shared by solver and dataset specs.

    A spec coerces the given values against its declared ``params``, unless it has a
    ``resolve_params(given, registry)`` of its own (the PGM family uses one to accept the
    parameters of whichever prox operator is chosen, the synthetic family to expand presets).
    """

    kind: ClassVar[str]
    name: str
    params: tuple[Param, ...]
    resolve_params: ParamResolver | None

    def resolve(self, given: Mapping[str, Any], registry: SpecLookup) -> dict[str, Any]:
        if self.resolve_params is not None:
            return self.resolve_params(given, registry)
        return coerce_params(self.params, given, f"{self.kind} {self.name}")


@dataclass(frozen=True)
class SolverSpec(ResolvableSpec):
    """A named solver family.

    ``factory(**params)`` builds a fresh solver. ``grid`` maps parameter names to the values
    that ``all`` (and a bare ``name``) expands into; a list value gives one variant per entry.
    ``examples``: parameter sets (as a selection gives them, ``{"backtracking": "true"}``)
    that the contract checks (``proxmf-bench check``) try besides the default variants.
    ``resolve_params(given, registry)``: see :class:`ResolvableSpec`.

    ``objective(params)``, given the resolved parameters, says what the solver minimises (an
    :class:`Objective`): the harness records that objective's value and compares the solver
    only with solvers of the same problem. ``None`` (the default) declares the nonnegative
    problem ``1/2 ||Y - W H||^2`` subject to ``W, H >= 0``, as MU, NALMU and the peers solve;
    the PGM family derives it from ``prox_W`` and ``prox_H``. A solver that minimises
    something it cannot state returns ``Objective(unknown="why")``: its objective is then NaN.
    """

    kind: ClassVar[str] = "solver"
    name: str
    factory: Callable[..., Solver]
    params: tuple[Param, ...] = ()
    grid: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    resolve_params: ParamResolver | None = None
    examples: tuple[Mapping[str, Any], ...] = ()
    objective: Callable[[Mapping[str, Any]], Objective] | None = None

    def objective_for(self, params: Mapping[str, Any]) -> Objective:
        """The objective of the variant with resolved ``params`` (see the class docstring)."""
        return self.objective(params) if self.objective is not None else Objective()


@dataclass(frozen=True)
class DataFile:
    """A file that a dataset reads from the data directory (see :mod:`proxmf_bench.plugin.data_files`).

    ``path`` is relative to the data directory, ``/``-separated (``"samson/Samson.mat"``);
    ``sha256`` and ``size`` (bytes) identify the one valid copy; ``url``, when set, is a
    public address that ``proxmf-bench data fetch`` downloads it from.
    """

    path: str
    sha256: str
    size: int
    url: str | None = None


@dataclass(frozen=True)
class DatasetSpec(ResolvableSpec):
    """A named dataset family. ``load(params, seed, device, dtype)`` returns a ``Problem``.

    ``files`` lists the data files ``load`` needs (checked and fetched by ``proxmf-bench
    data``). ``resolve_params(given, registry)``: see :class:`ResolvableSpec`.
    """

    kind: ClassVar[str] = "dataset"
    name: str
    load: Callable[[Mapping[str, Any], int, torch.device, torch.dtype], Problem]
    params: tuple[Param, ...] = ()
    grid: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    ground_truth: bool = False
    files: tuple[DataFile, ...] = ()
    resolve_params: ParamResolver | None = None


_KEEP_FOR_NEXT_LOAD: contextvars.ContextVar[bool] = contextvars.ContextVar("keep_for_next_load", default=False)


@contextmanager
def preflight_loads(keep: bool) -> Iterator[None]:
    """Dataset loads inside are the run's check before it starts. ``keep``: the cells run in
    this process next, so a dataset may keep the problem it loads for the next load of the same
    problem (the first cell's), to build it once; it must hand it out once and then forget it,
    so that no process holds a copy of ``Y`` besides the one in use."""
    token = _KEEP_FOR_NEXT_LOAD.set(keep)
    try:
        yield
    finally:
        _KEEP_FOR_NEXT_LOAD.reset(token)


def keep_for_next_load() -> bool:
    """Whether a dataset may keep what it loads now for the next load (:func:`preflight_loads`)."""
    return _KEEP_FOR_NEXT_LOAD.get()


PROX_ACTS_ON = ("elements", "vectors", "tensor")


@dataclass(frozen=True)
class ProxSpec:
    """A named proximal operator ``fn(X, step, **params) -> X`` acting on a torch tensor.

    It returns ``argmin_Z 1/2 ||Z - X||^2 + step * g(Z)``; projections ignore ``step``.
    Column-wise operators treat each column of a matrix as one vector. ``penalty(X, **params)``,
    when given, evaluates ``g(X)`` as a 0-d tensor (solvers that compare objective values use
    it); ``None`` means ``g`` is 0 at the operator's outputs, as for the indicator of a set.
    ``inplace(X, step, **params)``, when given, computes the same result as ``fn`` by
    overwriting ``X`` and returns it: solvers use it on intermediates they own, to save an
    allocation per call (``fn`` itself never modifies its argument).

    What the operator is, declared so that contract checks (``proxmf-bench check``) and the
    objective know what to hold it to:

    - ``projection``: ``fn`` is the Euclidean projection onto a closed set (``g`` its
      indicator): outputs are feasible, ``fn`` is idempotent and ignores ``step``;
    - ``convex``: ``g`` is convex, so ``fn`` is the unique argmin above and firmly
      nonexpansive (a nonconvex prox such as a hard threshold is an argmin but not unique);
    - ``acts_on``: what ``g`` separates into, i.e. what a batched call treats independently:
      ``"elements"`` (each entry), ``"vectors"`` (each vector along dim 0, a column of a
      matrix, or along the last dim, a row, when the operator's ``axis`` parameter is
      ``"rows"``; a 1-D tensor is one vector) or ``"tensor"`` (the whole argument, e.g. a
      nuclear-norm prox). The checks compare a batched call with calls on each part;
    - ``examples``: parameter sets, besides the defaults, on which to check it.

    ``penalty`` returns +inf outside the domain of ``g`` (``l1_nonneg`` at a negative entry),
    so that ``1/2 ||Z - X||^2 + step * g(Z)`` is the whole objective. An operator that is
    neither a projection nor declares a ``penalty`` (a normalisation, say) minimises no stated
    objective: it can be run, but no objective value is known for it.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    params: tuple[Param, ...] = ()
    summary: str = ""
    penalty: Callable[..., torch.Tensor] | None = None
    inplace: Callable[..., torch.Tensor] | None = None
    projection: bool = False
    convex: bool = False
    acts_on: str = "elements"
    examples: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.acts_on not in PROX_ACTS_ON:
            raise ValueError(f"prox {self.name}: acts_on must be one of {', '.join(PROX_ACTS_ON)}, "
                             f"got {self.acts_on!r}")

    def __call__(self, X: torch.Tensor, step: float, **params: Any) -> torch.Tensor:
        return self.fn(X, step, **params)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return coerce_params(self.params, given, f"prox {self.name}")


def format_value(value: Any) -> str:
    """A parameter value as written in labels: ``0.1``, ``1e-08``, ``true``, ``columns``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


NONNEG = "nonneg"


@dataclass(frozen=True)
class FactorTerm:
    """The term ``g(X)`` of one factor: a registered prox operator with its parameters.

    Its value is the operator's declared ``penalty``; a projection without one contributes 0
    (the indicator of its set, at the feasible points its prox returns). An operator that is
    neither has no known value (:attr:`known` is false).
    """

    prox: ProxSpec
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name`` or ``name[key=value,...]``, the parameters in their declared order."""
        if not self.params:
            return self.prox.name
        return f"{self.prox.name}[{','.join(f'{k}={format_value(v)}' for k, v in self.params.items())}]"

    @property
    def known(self) -> bool:
        return self.prox.penalty is not None or self.prox.projection

    def value(self, X: torch.Tensor) -> float:
        """``g(X)``: the penalty, 0 for a projection, NaN when unknown."""
        if self.prox.penalty is not None:
            return float(self.prox.penalty(X, **self.params))
        return 0.0 if self.prox.projection else math.nan


@dataclass(frozen=True)
class Objective:
    r"""What a solver minimises: :math:`\tfrac12\|Y - W H\|_F^2 + g_W(W) + g_H(H)`.

    ``W`` and ``H`` are the terms of the factors (``None``: the nonnegativity constraint,
    ``nonneg``). In a fixed-W (NNLS) problem ``W`` is data and its term is left out. ``unknown``,
    when set, says why no value of the objective is known (the solver declared so).
    """

    W: FactorTerm | None = None
    H: FactorTerm | None = None
    unknown: str = ""

    def terms(self, fixed_W: bool = False) -> list[tuple[str, FactorTerm | None]]:
        return [("H", self.H)] if fixed_W else [("W", self.W), ("H", self.H)]

    def name(self, fixed_W: bool = False) -> str:
        """The canonical objective: ``nonneg`` for the nonnegative problem, else each factor's
        term, e.g. ``W:nonneg H:l1_nonneg[lam=0.1]`` (``H:...`` alone in an NNLS problem)."""
        if self.unknown:
            return "unknown"
        labels = [(block, NONNEG if term is None else term.label) for block, term in self.terms(fixed_W)]
        if all(label == NONNEG for _, label in labels):
            return NONNEG
        return " ".join(f"{block}:{label}" for block, label in labels)

    def note(self, fixed_W: bool = False) -> str:
        """Why the objective's value is unknown, or ``""`` when it is known."""
        if self.unknown:
            return self.unknown
        for block, term in self.terms(fixed_W):
            if term is not None and not term.known:
                return (f"prox {term.prox.name} on {block} is neither a projection nor declares a penalty, "
                        "so no objective value is known")
        return ""

    def penalty(self, W: torch.Tensor, H: torch.Tensor, fixed_W: bool = False) -> float:
        """``g_W(W) + g_H(H)`` (``g_H(H)`` alone in an NNLS problem); NaN when unknown."""
        if self.unknown:
            return math.nan
        total = 0.0
        for block, term in self.terms(fixed_W):
            if term is not None:
                total += term.value(W if block == "W" else H)
        return total

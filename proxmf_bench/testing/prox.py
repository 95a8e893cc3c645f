r"""Contract checks of a prox operator: :func:`check_prox`.

An operator ``fn(X, step, **params)`` promises :math:`Z = \arg\min_Z \tfrac12\|Z - X\|^2 + t\,g(Z)`
(:class:`~proxmf_bench.plugin.specs.ProxSpec`). The checks hold it to what its spec declares,
on seeded random inputs of several shapes in float32 and float64 and on edge cases (zeros,
ties, tiny and huge values, a large common offset, a transposed view, tiny and huge steps,
points of the set):

- every operator: it runs, returns a tensor of the input's shape, dtype and device, finite on
  finite input, never modifies its input, and a batched call equals calls on each part
  (element, column or row, as ``acts_on`` says); the defaults, the examples and the bounds and
  choices of every declared ``Param`` work;
- with a ``penalty``: the output lies in the domain of ``g``, and is the argmin: no nearby
  point (single coordinates, random directions, towards ``X`` and towards 0) and no point
  found by a numerical minimiser (scipy's Nelder-Mead from ``Z`` and from ``X``, on float64
  inputs of at most 4 entries) has a lower objective
  :math:`F(Z) = \tfrac12\|Z - X\|^2 + t\,g(Z)`, evaluated in float64;
- a ``projection``: it ignores ``step``, is idempotent (its outputs lie in its set, which is
  the set of its fixed points) and returns the nearest point of the set; onto a ``convex``
  set also :math:`\langle X - P(X), C - P(X)\rangle \le 0` for points ``C`` of the set;
- ``convex``: firmly nonexpansive,
  :math:`\langle P(X) - P(Y), X - Y\rangle \ge \|P(X) - P(Y)\|^2`.

Comparisons allow the rounding of the output's dtype: a difference passes when it is below
``TOL * eps`` times the size of the quantities compared (``eps`` of float32 for float32
outputs), so a check never fails on a correct operator because of float32 arithmetic, while
an operator that is wrong by more than a few parts in a million is caught.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.specs import Param, ProxSpec
from proxmf_bench.testing.report import (
    CheckReport,
    Counterexample,
    Recorder,
    describe_error,
    fmt_value,
    needs_parameters,
)

DTYPES = (torch.float32, torch.float64)
TOL = 64.0  # allowed rounding, in units of the output dtype's eps
SMALL = 12  # inputs with at most this many entries get the perturbation test
TINY_INPUT = 4  # ... and at most this many the numerical minimiser

RUNS = "runs on every input"
SHAPE = "output has the input's shape, dtype and device"
FINITE = "output finite on finite input"
UNMODIFIED = "input not modified"
BATCHED = "batched call equals calls on each part"
PARAMS = "defaults and examples are valid parameters"
RANGES = "works across the declared parameter ranges and choices"
DOMAIN = "penalty: output in the domain of g (g(Z) finite)"
PERTURB = "argmin: no nearby point has a lower objective"
MINIMISER = "argmin: a numerical minimiser finds no lower objective"
STEP = "projection: ignores the step"
IDEMPOTENT = "projection: idempotent, P(P(X)) = P(X) (outputs lie in the set)"
NEAREST = "projection: nearest point of the set"
OBTUSE = "projection onto a convex set: <X - P(X), C - P(X)> <= 0 for C in the set"
FIRM = "convex: firmly nonexpansive, <P(X) - P(Y), X - Y> >= ||P(X) - P(Y)||^2"

ORDER = (PARAMS, RUNS, SHAPE, FINITE, UNMODIFIED, BATCHED, DOMAIN, PERTURB, MINIMISER, STEP, IDEMPOTENT, NEAREST,
         OBTUSE, FIRM, RANGES)
OBJECTIVE = "F(Z) = 1/2 ||Z - X||^2 + step * g(Z)"


@dataclass(frozen=True)
class Case:
    """One input of the checks: a tensor, a step, and how it was made."""

    label: str
    X: torch.Tensor
    step: float


def check_prox(
    spec: ProxSpec,
    *,
    params: Sequence[Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    dtypes: Sequence[torch.dtype] = DTYPES,
    seed: int = 0,
) -> CheckReport:
    """Check ``spec`` against the prox contract; see the module docstring for the properties.

    ``params``: the parameter sets to check (as a selection gives them, e.g.
    ``[{"lam": "0.5"}]``); by default the defaults and ``spec.examples``. The inputs are drawn
    from a generator seeded with ``seed``, so a report is reproducible.
    """
    rec = Recorder("prox", spec.name, ORDER)
    if needs_parameters(rec, spec, params, RUNS):
        return rec.finish()
    device = torch.device(device)
    for given in _param_sets(rec, spec, params):
        for dtype in dtypes:
            _check_at(rec, spec, given, torch.Generator().manual_seed(seed), dtype, device)
    if params is None:
        _check_ranges(rec, spec, device, seed)
    _skips(rec, spec)
    return rec.finish()


# ------------------------------------------------------------------------------------- inputs


def _cases(gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> list[Case]:
    """The seeded inputs: random ones of several shapes and steps, then the edge cases.

    Drawn in float64 and cast, so the float32 inputs are the float64 ones rounded."""
    finfo = torch.finfo(dtype)
    huge, tiny = finfo.max ** 0.25, finfo.tiny ** 0.5
    offset = 1e-2 / finfo.eps  # where a sum carrying it loses its last 2 digits: 8e4 in float32

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    def case(label: str, X: torch.Tensor, step: float) -> Case:
        return Case(label, X.to(device=device, dtype=dtype), step)

    cases = [case(f"random {'x'.join(map(str, shape))}", 2 * randn(*shape), step) for shape, step in (
        ((1,), 1.0), ((3,), 5.0), ((5,), 0.4), ((2, 2), 0.7), ((4, 3), 0.4), ((4, 3), 2.0),
        ((1, 5), 1.0), ((6, 1), 0.3), ((7, 6), 1e-3), ((7, 6), 1.0),
    )]
    levels = torch.randint(-1, 3, (5, 4), generator=gen).double()
    signs = torch.where(randn(4, 3) > 0, 1.0, -1.0).double()
    wide = case("a transposed (non-contiguous) view", 2 * randn(3, 4), 0.5)
    cases += [
        case("zeros", torch.zeros(4, 3), 1.0),
        case("ties: all entries equal", torch.full((4, 3), 1.5), 1.0),
        case("ties: repeated values", levels, 0.5),
        case(f"tiny values (~{tiny:.1e})", tiny * randn(4, 3), 1.0),
        case(f"huge values (~{huge:.1e})", huge * signs * (1 + torch.rand(4, 3, generator=gen, dtype=torch.float64)), 1.0),
        case(f"large common offset ({offset:.1e} + random)", offset + randn(5, 4), 1.0),
        Case(wide.label, wide.X.T, wide.step),  # how the PGM family hands W to prox_W
    ]
    for step in (1e-300, 1e30):
        kind = "tiny" if step < 1 else "huge"
        cases += [case(f"{kind} step, random 4x3", 2 * randn(4, 3), step),
                  case(f"{kind} step, random 3", 2 * randn(3), step),
                  case(f"{kind} step, huge values", huge * signs, step),
                  case(f"{kind} step, large common offset", offset + randn(5, 4), step)]
    return cases


def _describe(case: Case, params: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"X = {fmt_value(case.X)} [{case.label}], step = {case.step:g}" + (f", {shown}" if shown else "")


# ----------------------------------------------------------------------------- the properties


def _check_at(rec: Recorder, spec: ProxSpec, params: Mapping[str, Any], gen: torch.Generator,
              dtype: torch.dtype, device: torch.device) -> None:
    """Every property on every case, for one parameter set and dtype."""
    eps = torch.finfo(dtype).eps
    outputs = [(c, Z) for c in _cases(gen, dtype, device) if (Z := _run(rec, spec, c, params)) is not None]
    if spec.projection:  # points of the set are inputs too
        inside = [Case(f"a point of the set, P({c.label})", Z, c.step) for c, Z in outputs[:8]]
        outputs += [(c, Z) for c in inside if (Z := _run(rec, spec, c, params)) is not None]
    for case, Z in outputs:
        _check_batched(rec, spec, case, Z, params, eps)
        if spec.penalty is not None:
            _check_argmin(rec, spec, case, Z, params, eps, gen)
        if spec.projection:
            _check_projection(rec, spec, case, Z, params, eps, [W for c, W in outputs if W.shape == Z.shape], gen)
        if spec.convex:
            _check_firm(rec, spec, case, Z, params, eps, gen)


def _run(rec: Recorder, spec: ProxSpec, case: Case, params: Mapping[str, Any]) -> torch.Tensor | None:
    """``fn(X, step)`` with the generic properties checked; ``None`` when unusable."""
    X = case.X
    before = X.clone()
    what = lambda: _describe(case, params)  # noqa: E731
    ran, Z = rec.attempt(RUNS, lambda: spec.fn(X, case.step, **params), what)
    if not ran:
        return None
    rec.check(RUNS, True, lambda: None)
    if not rec.check(UNMODIFIED, torch.equal(X, before), lambda: Counterexample(
            _describe(Case(case.label, before, case.step), params), "X unchanged by the call",
            f"X = {fmt_value(X)} afterwards")):
        return None
    good = isinstance(Z, torch.Tensor) and Z.shape == X.shape and Z.dtype == X.dtype and Z.device == X.device
    if not rec.check(SHAPE, good, lambda: Counterexample(
            what(), f"a tensor of shape {tuple(X.shape)}, {X.dtype}, on {X.device}", _kind_of(Z))):
        return None
    rec.check(FINITE, bool(torch.isfinite(Z).all()), lambda: Counterexample(what(), "finite entries", f"Z = {fmt_value(Z)}"))
    return Z


def _kind_of(Z: Any) -> str:
    if isinstance(Z, torch.Tensor):
        return f"a tensor of shape {tuple(Z.shape)}, {Z.dtype}, on {Z.device}"
    return f"{type(Z).__name__} {Z!r}"[:200]


def _agree(A: torch.Tensor, B: torch.Tensor, eps: float) -> bool:
    """Equal up to ``TOL * eps`` relative to the larger magnitude in either (NaNs match)."""
    if A.shape != B.shape:
        return False
    if A.numel() == 0:
        return True
    A, B = A.detach().double().cpu(), B.detach().double().cpu()
    finite = torch.isfinite(A) & torch.isfinite(B)
    size = max(float(A[finite].abs().max()) if finite.any() else 0.0,
               float(B[finite].abs().max()) if finite.any() else 0.0)
    return bool(torch.isclose(A, B, rtol=0.0, atol=TOL * eps * size + 1e-300, equal_nan=True).all())


def _quiet(spec: ProxSpec, X: torch.Tensor, step: float, params: Mapping[str, Any]) -> torch.Tensor | None:
    """``fn`` on a derived input; its failures are reported by the property that needs it."""
    try:
        Z = spec.fn(X, step, **params)
    except Exception:
        return None
    return Z if isinstance(Z, torch.Tensor) and Z.shape == X.shape else None


def _parts(spec: ProxSpec, X: torch.Tensor, params: Mapping[str, Any]) -> list[tuple[str, Any, torch.Tensor]]:
    """How a batched call splits, as ``(name, index into the output, part)``: an elementwise
    operator by rows and by columns (either catches one that mixes entries), a vector-wise one
    by its ``axis``; a 1-D vector is one column (or row) matrix."""
    columns = [(f"column {j}", (slice(None), j), X[:, j]) for j in range(X.shape[1])] if X.ndim == 2 else []
    rows = [(f"row {i}", (i, slice(None)), X[i, :]) for i in range(X.shape[0])] if X.ndim == 2 else []
    if spec.acts_on == "elements":
        return columns + rows if X.ndim == 2 else [(f"entry {i}", slice(i, i + 1), X[i : i + 1]) for i in range(X.shape[0])]
    axis = params.get("axis", "columns")
    if X.ndim == 1:
        return [(f"the vector as a one-{axis[:-1]} matrix", None, X.reshape((-1, 1) if axis == "columns" else (1, -1)))]
    return rows if axis == "rows" else columns


def _check_batched(rec: Recorder, spec: ProxSpec, case: Case, Z: torch.Tensor, params: Mapping[str, Any],
                   eps: float) -> None:
    X = case.X
    if spec.acts_on == "tensor" or X.ndim not in (1, 2) or X.numel() < 2:
        return
    for name, index, part in _parts(spec, X, params):
        expected = Z.reshape(part.shape) if index is None else Z[index]
        got = _quiet(spec, part, case.step, params)
        if not rec.check(BATCHED, got is not None and _agree(got.reshape(expected.shape), expected, eps),
                         lambda: Counterexample(
                             f"{_describe(case, params)}; {name} = {fmt_value(part)}",
                             f"fn({name}) = {name} of the batched output = {fmt_value(expected)} "
                             f"(acts_on={spec.acts_on!r})",
                             "fn failed on it" if got is None else f"fn({name}) = {fmt_value(got)}")):
            return


# ------------------------------------------------------------------------------------- argmin


def _penalty(spec: ProxSpec, Z64: torch.Tensor, params: Mapping[str, Any]) -> float:
    """``g(Z)`` as a float, +inf for NaN or an error (outside the domain)."""
    try:
        value = float(torch.as_tensor(spec.penalty(Z64, **params)))
    except Exception:
        return math.inf
    return math.inf if math.isnan(value) else value


def _objective(spec: ProxSpec, X64: torch.Tensor, Z64: torch.Tensor, step: float,
               params: Mapping[str, Any]) -> tuple[float, float]:
    """``(F(Z), size)``: the objective in float64 and the magnitude its rounding scales with."""
    x, z = X64.numpy().reshape(-1), Z64.numpy().reshape(-1)
    g = _penalty(spec, Z64, params)
    fit = 0.5 * float(np.dot(z - x, z - x))
    tg = g if math.isinf(g) else step * g
    size = float(np.dot(x, x) + np.dot(z, z)) + (abs(tg) if math.isfinite(tg) else 0.0)
    return fit + tg, size


def _check_argmin(rec: Recorder, spec: ProxSpec, case: Case, Z: torch.Tensor, params: Mapping[str, Any],
                  eps: float, gen: torch.Generator) -> None:
    X64, Z64 = case.X.detach().double().cpu(), Z.detach().double().cpu()
    F, size = _objective(spec, X64, Z64, case.step, params)
    g = _penalty(spec, Z64, params)
    if not rec.check(DOMAIN, math.isfinite(g), lambda: Counterexample(
            _describe(case, params), "g(Z) finite (Z in the domain of g)", f"Z = {fmt_value(Z)}, g(Z) = {g}")):
        return
    if Z.numel() > SMALL:
        return

    def better(C: torch.Tensor) -> tuple[bool, float]:
        FC, size_C = _objective(spec, X64, C, case.step, params)
        return FC < F - TOL * eps * (size + size_C) - 1e-300, FC

    def counterexample(C: torch.Tensor, FC: float, how: str) -> Counterexample:
        hint = ""
        if bool((Z64 >= 0).all()) and bool((C < 0).any()):
            hint = "; C has negative entries: where g is +inf (x >= 0), the penalty must return inf"
        return Counterexample(_describe(case, params), f"F(Z) <= F(C) = {FC:.9g} at C = {fmt_value(C)} ({how}), "
                              f"where {OBJECTIVE}{hint}", f"Z = {fmt_value(Z)} with F(Z) = {F:.9g}")

    for C, how in _nearby(X64, Z64, gen):
        lower, FC = better(C)
        if not rec.check(PERTURB, not lower, lambda: counterexample(C, FC, how)):
            break
    if Z.numel() <= TINY_INPUT and Z.dtype == torch.float64:  # float32 is held to the nearby points
        C = _minimise(spec, X64, Z64, case.step, params)
        lower, FC = better(C)
        rec.check(MINIMISER, not lower, lambda: counterexample(C, FC, "Nelder-Mead"))


def _nearby(X64: torch.Tensor, Z64: torch.Tensor, gen: torch.Generator) -> list[tuple[torch.Tensor, str]]:
    """Points near ``Z``: each coordinate moved alone (also to 0 and to ``X``), random
    directions, and moves towards ``X`` and towards 0, at three scales."""
    rms = float(torch.sqrt(torch.mean(X64**2))) if X64.numel() else 0.0
    base = Z64.abs() + rms + 1e-300
    flat = Z64.reshape(-1)
    out = []
    for i in range(flat.numel()):
        for value, how in ((0.0, "0"), (float(X64.reshape(-1)[i]), "X")):
            C = flat.clone()
            C[i] = value
            out.append((C.reshape(Z64.shape), f"Z with entry {i} set to {how}"))
    for h in (0.3, 0.03, 0.003):
        for i in range(flat.numel()):
            for sign in (1.0, -1.0):
                C = flat.clone()
                C[i] += sign * h * float(base.reshape(-1)[i])
                out.append((C.reshape(Z64.shape), f"Z with entry {i} moved by {sign * h:+g} of its scale"))
        out.append((Z64 + h * (X64 - Z64), f"Z moved {h:g} of the way to X"))
        out.append((Z64 * (1 - h), f"Z scaled by {1 - h:g}"))
        for _ in range(3):
            direction = torch.randn(Z64.shape, generator=gen, dtype=torch.float64)
            out.append((Z64 + h * base * direction, f"Z plus a random move of {h:g} of its scale"))
    return out


def _minimise(spec: ProxSpec, X64: torch.Tensor, Z64: torch.Tensor, step: float,
              params: Mapping[str, Any]) -> torch.Tensor:
    """The best point scipy's Nelder-Mead finds for ``F`` from ``Z`` and from ``X`` (float64).

    Derivative-free, so it needs nothing of ``g`` but its values: nonsmooth, nonconvex or
    infinite outside a domain (the simplex then simply rejects those points)."""
    from scipy.optimize import minimize

    shape = Z64.shape

    def F(z: np.ndarray) -> float:
        value = _objective(spec, X64, torch.from_numpy(z).reshape(shape), step, params)[0]
        return value if math.isfinite(value) else 1e300

    best, best_F = Z64, F(Z64.reshape(-1).numpy())
    for start in (Z64, X64):
        res = minimize(F, start.reshape(-1).numpy(), method="Nelder-Mead",
                       options={"xatol": 1e-12, "fatol": 1e-14, "maxfev": 100 + 150 * Z64.numel(), "adaptive": True})
        if res.fun < best_F:
            best, best_F = torch.from_numpy(res.x).reshape(shape), float(res.fun)
    return best


# -------------------------------------------------------------------------------- projections


def _check_projection(rec: Recorder, spec: ProxSpec, case: Case, Z: torch.Tensor, params: Mapping[str, Any],
                      eps: float, points: list[torch.Tensor], gen: torch.Generator) -> None:
    what = lambda: _describe(case, params)  # noqa: E731
    other = case.step * 3 + 1 if case.step < 1e30 else 0.5
    Z2 = _quiet(spec, case.X, other, params)
    rec.check(STEP, Z2 is not None and _agree(Z2, Z, eps), lambda: Counterexample(
        what(), f"with step = {other:g} the same output {fmt_value(Z)}",
        "failed" if Z2 is None else fmt_value(Z2)))
    ZZ = _quiet(spec, Z, case.step, params)
    rec.check(IDEMPOTENT, ZZ is not None and _agree(ZZ, Z, eps), lambda: Counterexample(
        f"{what()}; Z = P(X) = {fmt_value(Z)}", "P(Z) = Z", "failed" if ZZ is None else f"P(Z) = {fmt_value(ZZ)}"))

    X64, Z64 = case.X.detach().double().cpu(), Z.detach().double().cpu()
    rms = float(torch.sqrt(torch.mean(Z64**2))) + 1e-300
    candidates = [(P.detach().double().cpu(), "another output of P") for P in points[:6]]
    for h in (0.1, 0.01):  # points of the set near Z, in random directions
        for _ in range(2):
            near = _quiet(spec, Z + (h * rms * torch.randn(Z.shape, generator=gen, dtype=torch.float64)).to(Z), 1.0, params)
            if near is not None:
                candidates.append((near.detach().double().cpu(), f"P(Z + a random move of {h:g} of its scale)"))
    distance = float(torch.sum((X64 - Z64) ** 2))
    for C, how in candidates:
        to_C = float(torch.sum((X64 - C) ** 2))
        size = float(torch.sum(X64**2) + torch.sum(C**2) + torch.sum(Z64**2))
        if not rec.check(NEAREST, distance <= to_C + TOL * eps * size, lambda: Counterexample(
                what(), f"||X - P(X)||^2 <= ||X - C||^2 = {to_C:.9g} for C = {fmt_value(C)} ({how})",
                f"P(X) = {fmt_value(Z)} with ||X - P(X)||^2 = {distance:.9g}")):
            break
        if spec.convex:
            angle = float(torch.sum((X64 - Z64) * (C - Z64)))
            # P(X) carries a rounding error of about eps ||P(X)||, whatever ||X - P(X)|| is
            bound = TOL * eps * float(torch.linalg.vector_norm(Z64)) * (
                math.sqrt(distance) + float(torch.linalg.vector_norm(C - Z64)))
            if not rec.check(OBTUSE, angle <= bound + 1e-300, lambda: Counterexample(
                    what(), f"<X - P(X), C - P(X)> <= 0 for C = {fmt_value(C)} ({how})",
                    f"P(X) = {fmt_value(Z)} with <X - P(X), C - P(X)> = {angle:.9g}")):
                break


def _check_firm(rec: Recorder, spec: ProxSpec, case: Case, Z: torch.Tensor, params: Mapping[str, Any],
                eps: float, gen: torch.Generator) -> None:
    """Against the input moved a little (a local pair) and a lot (a distant one)."""
    X = case.X
    rms = float(torch.sqrt(torch.mean(X.detach().double() ** 2))) + 1e-300
    for h in (1e-2, 1.0):
        Y = X + (h * rms * torch.randn(X.shape, generator=gen, dtype=torch.float64)).to(X)
        PY = _quiet(spec, Y, case.step, params)
        if PY is None:
            continue
        X64, Y64, PX, PY64 = (T.detach().double().cpu() for T in (X, Y, Z, PY))
        dP, dX = PX - PY64, X64 - Y64
        inner, square = float(torch.sum(dP * dX)), float(torch.sum(dP * dP))
        norm = lambda T: float(torch.linalg.vector_norm(T))  # noqa: E731
        bound = TOL * eps * (norm(PX) + norm(PY64)) * (norm(dX) + norm(dP))
        if not rec.check(FIRM, inner >= square - bound - 1e-300, lambda: Counterexample(
                f"{_describe(case, params)} and Y = {fmt_value(Y)}",
                "<P(X) - P(Y), X - Y> >= ||P(X) - P(Y)||^2",
                f"P(X) = {fmt_value(PX)}, P(Y) = {fmt_value(PY64)}: {inner:.9g} < {square:.9g}")):
            return


# --------------------------------------------------------------------------------- parameters


def _param_sets(rec: Recorder, spec: ProxSpec, given: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The resolved parameter sets to check: ``given``, or the defaults and the examples."""
    if given is None:
        for p in spec.params:
            ok, _ = rec.attempt(PARAMS, lambda p=p: p.coerce(p.default, f"prox {spec.name}"),
                                lambda p=p: f"the default {p.name}={p.default!r}",
                                "a value within its own declaration")
            if ok:
                rec.check(PARAMS, True, lambda: None)
        given = [{}, *spec.examples]
    out = []
    for values in given:
        ok, resolved = rec.attempt(PARAMS, lambda v=values: spec.resolve(v), lambda v=values: f"parameters {dict(v)}",
                                   "parameters that resolve")
        if ok:
            rec.check(PARAMS, True, lambda: None)
            out.append(resolved)
    return out


def _range_values(p: Param) -> list[Any]:
    """The values of ``p`` the range check tries: its bounds, its choices, both booleans."""
    if p.choices:
        return list(p.choices)
    if p.type is bool:
        return [True, False]
    values = [v for v in (p.low, p.high) if v is not None]
    if p.low is not None and p.high is not None:
        values.append((p.low + p.high) / 2)
    elif p.low is not None:
        values.append(p.low + 10)
    return [int(v) for v in values] if p.type is int else values


def _check_ranges(rec: Recorder, spec: ProxSpec, device: torch.device, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    inputs = [Case("random 4x3", (2 * torch.randn(4, 3, generator=gen, dtype=torch.float64)).to(device), 0.5),
              Case("random 5", (2 * torch.randn(5, generator=gen, dtype=torch.float64)).to(device, torch.float32), 0.5)]
    for p in spec.params:
        for value in _range_values(p):
            try:
                params = spec.resolve({p.name: value})
            except UserError as exc:
                rec.fail(RANGES, Counterexample(f"{p.describe()}, given {p.name}={value!r}",
                                                "the declared value resolves", describe_error(exc)))
                continue
            for case in inputs:
                what = lambda case=case, params=params: _describe(case, params)  # noqa: E731
                ok, Z = rec.attempt(RANGES, lambda case=case, params=params: spec.fn(case.X, case.step, **params), what)
                if ok:
                    rec.check(RANGES, isinstance(Z, torch.Tensor) and Z.shape == case.X.shape
                              and bool(torch.isfinite(Z).all()),
                              lambda case=case, Z=Z, what=what: Counterexample(
                                  what(), f"a finite tensor of shape {tuple(case.X.shape)}", _kind_of(Z)
                                  if not isinstance(Z, torch.Tensor) else f"Z = {fmt_value(Z)}"))
    rec.skip(RANGES, "no parameters declared")


def _skips(rec: Recorder, spec: ProxSpec) -> None:
    """Say which properties do not apply, and why."""
    if spec.acts_on == "tensor":
        rec.skip(BATCHED, "acts on the whole tensor (acts_on='tensor')")
    if spec.penalty is None:
        reason = "a projection: g is its set's indicator" if spec.projection else "no penalty declared"
        for name in (DOMAIN, PERTURB, MINIMISER):
            rec.skip(name, reason)
    if not spec.projection:
        for name in (STEP, IDEMPOTENT, NEAREST):
            rec.skip(name, "not declared a projection")
    if not (spec.projection and spec.convex):
        rec.skip(OBTUSE, "not a projection onto a convex set")
    if not spec.convex:
        rec.skip(FIRM, "not declared convex" + (" (an argmin, but not unique)" if spec.penalty is not None else ""))
    if spec.penalty is None and not spec.projection:
        rec.report.note = ("neither a projection nor a declared penalty: it minimises no stated objective, "
                           "so only the generic checks apply")
    elif not spec.convex:
        rec.report.note = "nonconvex: the output is checked to be an argmin; uniqueness and nonexpansiveness are not"


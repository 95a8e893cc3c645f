r"""Contract checks of a solver: :func:`check_solver`.

On a small seeded problem (12 x 9, rank 3, :math:`Y = W H + \text{noise}` with positive
factors) in float32 and float64, for every default variant of the solver and every example
of its spec, the checks run what the harness runs: ``factory(**params)``, ``init(problem,
W0, H0)`` from the harness's initial factors and a few ``step()`` calls (after
``torch.manual_seed(seed)``, as the harness does), and hold it to the contract of
:class:`~proxmf_bench.plugin.specs.Solver`:

- ``factors()`` after ``init`` and after each step: a pair of ``m x r`` and ``r x n`` tensors
  on the problem's device and dtype, finite on this well-posed problem;
- the problem's data (``Y``, ``W_true``, ``H_true``) is never modified: the harness shares one
  problem between the solvers of a grid;
- ``init`` and ``step`` read no clock, write no output and do not call ``Problem.loss``
  (the harness owns the clock and the loss); watched with ``sys.setprofile``, which sees a
  clock however it was imported;
- the same seed gives the same factors;
- the optional ``loss()`` agrees with ``Problem.loss`` at the current factors, to
  ``1000 eps`` relative to ``||Y||^2`` (on the fixed-W problem too);
- on a fixed-W (NNLS) problem ``W`` stays ``W_true``, or the solver refuses the problem with an
  exception that says why, in ``init`` or its first step.

A black-box solver (:class:`~proxmf_bench.solve.blackbox.BlackBoxSolver`) is held to its own
contract: ``solve(problem, W0, H0, n_iter)`` returns finite factors of the problem's shapes,
leaves the problem's data alone, is deterministic for one seed, honours its budget (1 and 5
iterations give different factors), and keeps ``W`` on a fixed-W problem or refuses it.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

import torch

from proxmf_bench.plugin.selection import Variant, format_label, select
from proxmf_bench.plugin.specs import SolverSpec, SpecLookup
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.solve.blackbox import is_black_box
from proxmf_bench.testing.report import (
    PLUGIN_FAILURES,
    CheckReport,
    Counterexample,
    Recorder,
    describe_error,
    fmt_value,
    needs_parameters,
)

DTYPES = (torch.float32, torch.float64)
SHAPE = (12, 9, 3)  # m, n, rank
STEPS = 5
LOSS_TOL = 1000.0  # loss() against Problem.loss, in eps of the dtype, relative to ||Y||^2 / 2
SAME_TOL = 100.0  # factors of two runs with one seed, in eps of the dtype

PARAMS = "defaults and examples are valid parameters"
BUILDS = "factory builds a solver"
RUNS = "init and step run"
SOLVE_RUNS = "solve() runs"
FACTORS = "factors(): m x r and r x n tensors on the problem's device and dtype"
SOLVE = "solve() returns m x r and r x n tensors"
FINITE = "factors finite on a small well-posed problem"
DATA = "problem data (Y, W_true, H_true) not modified"
QUIET = "init/step read no clock, write no output, do not call Problem.loss"
DETERMINISTIC = "deterministic for one seed"
LOSS = "loss() agrees with Problem.loss"
BUDGET = "solve() honours its iteration budget"
FIXED_W = "fixed-W (NNLS) problem: W kept, or refused with a message"
ORDER = (PARAMS, BUILDS, RUNS, SOLVE_RUNS, FACTORS, SOLVE, FINITE, DATA, QUIET, DETERMINISTIC, LOSS, BUDGET, FIXED_W)


def check_solver(
    spec: SolverSpec,
    registry: SpecLookup | None = None,
    *,
    params: Sequence[Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    dtypes: Sequence[torch.dtype] = DTYPES,
    seed: int = 0,
) -> CheckReport:
    """Check ``spec`` against the solver contract; see the module docstring for the properties.

    ``registry`` resolves parameters that name other plugins (the PGM family's ``prox_W``);
    by default the installed plugins'. ``params``: the parameter sets to check (as a
    selection gives them, ``[{"eps": "1e-8"}]``); by default every variant of the spec's
    grid and its ``examples``.
    """
    if registry is None:
        from proxmf_bench.plugin.registry import load_registry

        registry = load_registry()
    rec = Recorder("solver", spec.name, ORDER)
    if needs_parameters(rec, spec, params, BUILDS):
        return rec.finish()
    device = torch.device(device)
    black_box = is_black_box(spec.factory)
    for variant in _variants(rec, spec, registry, params):
        for dtype in dtypes:
            problem = _problem(dtype, device, fixed_W=False)
            if black_box:
                _check_black_box(rec, spec, variant, problem, seed)
            else:
                _check_stepped(rec, spec, variant, problem, seed)
            _check_fixed_W(rec, spec, variant, _problem(dtype, device, fixed_W=True), seed, black_box)
    if black_box:
        rec.report.note = "a black-box solver: checked through solve(problem, W0, H0, n_iter)"
    else:
        rec.skip(LOSS, "no loss() method")
    return rec.finish()


def _variants(rec: Recorder, spec: SolverSpec, registry: SpecLookup,
              given: Sequence[Mapping[str, Any]] | None) -> list[Variant]:
    table = {spec.name: spec}
    out: list[Variant] = []
    if given is None:
        ok, defaults = rec.attempt(PARAMS, lambda: select(spec.name, table, registry, "solver"),
                                   lambda: f"the default variants of {spec.name} (grid {dict(spec.grid)})",
                                   "parameters that resolve")
        out += defaults or []
        given = spec.examples
    for values in given:
        ok, resolved = rec.attempt(PARAMS, lambda v=values: spec.resolve(v, registry),
                                   lambda v=values: f"parameters {dict(v)}", "parameters that resolve")
        if ok:
            out.append(Variant(spec.name, resolved, format_label(spec.name, values)))
    for _ in out:
        rec.check(PARAMS, True, lambda: None)
    return out


def _problem(dtype: torch.dtype, device: torch.device, fixed_W: bool) -> Problem:
    """``Y = W H + 0.1 N(0, 1)`` clipped at 0, with ``W``, ``H`` uniform on [0.1, 1.1]."""
    m, n, r = SHAPE
    gen = torch.Generator().manual_seed(20240)
    W = 0.1 + torch.rand(m, r, generator=gen, dtype=torch.float64)
    H = 0.1 + torch.rand(r, n, generator=gen, dtype=torch.float64)
    Y = (W @ H + 0.1 * torch.randn(m, n, generator=gen, dtype=torch.float64)).clamp_min(0)
    return Problem(Y=Y, rank=r, W_true=W, H_true=H, fixed_W=fixed_W, name="check").to(device, dtype, copy=True)


def _where(variant: Variant, problem: Problem, when: str = "") -> str:
    kind = "fixed-W " if problem.fixed_W else ""
    text = f"{variant.label} on a {problem.shape[0]} x {problem.shape[1]} rank-{problem.rank} {kind}problem, " \
           f"{str(problem.dtype).removeprefix('torch.')} on {problem.device}"
    return f"{text}, {when}" if when else text


def _data(problem: Problem) -> list[tuple[str, torch.Tensor]]:
    return [(name, X) for name, X in (("Y", problem.Y), ("W_true", problem.W_true), ("H_true", problem.H_true))
            if X is not None]


def _check_data(rec: Recorder, variant: Variant, problem: Problem, copies: list[tuple[str, torch.Tensor]]) -> None:
    for (name, X), (_, before) in zip(_data(problem), copies):
        if not rec.check(DATA, torch.equal(X, before), lambda name=name, X=X, before=before: Counterexample(
                _where(variant, problem, f"{name} = {fmt_value(before)}"), f"{name} unchanged",
                f"{name} = {fmt_value(X)} afterwards")):
            return


def _check_factors(rec: Recorder, variant: Variant, problem: Problem, out: Any, when: str,
                   name: str = FACTORS, exact: bool = True) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The factors as a checked pair of copies, or ``None``."""
    m, n = problem.shape
    r = problem.rank
    good = isinstance(out, tuple) and len(out) == 2 and all(isinstance(X, torch.Tensor) for X in out)
    if good:
        W, H = out
        good = tuple(W.shape) == (m, r) and tuple(H.shape) == (r, n)
        if exact:
            good = good and all(X.dtype == problem.dtype and X.device == problem.device for X in out)
    what = f"(W, H) of shapes ({m}, {r}) and ({r}, {n})" + (f", {problem.dtype} on {problem.device}" if exact else "")
    if not rec.check(name, good, lambda: Counterexample(_where(variant, problem, when), what, _describe_pair(out))):
        return None
    W, H = (X.detach().clone() for X in out)
    rec.check(FINITE, bool(torch.isfinite(W).all() and torch.isfinite(H).all()), lambda: Counterexample(
        _where(variant, problem, when), "finite W and H", f"W = {fmt_value(W)}, H = {fmt_value(H)}"))
    return W, H


def _describe_pair(out: Any) -> str:
    if isinstance(out, tuple) and all(isinstance(X, torch.Tensor) for X in out):
        return ", ".join(f"a tensor of shape {tuple(X.shape)}, {X.dtype}, on {X.device}" for X in out)
    return f"{type(out).__name__} {out!r}"[:200]


# ------------------------------------------------------------------------------ stepped solvers


@dataclass
class _Run:
    """The factors after ``init`` and after each step, and what the watch saw."""

    factors: list[tuple[torch.Tensor, torch.Tensor]]
    seen: list[str]


def _run_stepped(rec: Recorder, spec: SolverSpec, variant: Variant, problem: Problem, seed: int) -> _Run | None:
    """init and ``STEPS`` steps as the harness runs them, the properties of each checked."""
    torch.manual_seed(seed)
    ok, solver = rec.attempt(BUILDS, lambda: spec.factory(**variant.params), lambda: _where(variant, problem))
    if not ok:
        return None
    rec.check(BUILDS, True, lambda: None)
    W0, H0 = initial_factors(problem, seed)
    run = _Run([], [])
    own_loss = getattr(solver, "loss", None)
    for k in range(STEPS + 1):
        when = "after init" if k == 0 else f"after step {k}"
        with _watch(run.seen, "init" if k == 0 else f"step {k}"):
            ok, _ = rec.attempt(RUNS, (lambda: solver.init(problem, W0, H0)) if k == 0 else solver.step,
                                lambda: _where(variant, problem, "in init" if k == 0 else f"in step {k}"))
        if not ok:
            return None
        rec.check(RUNS, True, lambda: None)
        ok, out = rec.attempt(FACTORS, solver.factors, lambda: _where(variant, problem, when))
        pair = _check_factors(rec, variant, problem, out, when) if ok else None
        if pair is None:
            return None
        run.factors.append(pair)
        if callable(own_loss):
            _check_loss(rec, variant, problem, own_loss, pair, when)
    return run


def _check_stepped(rec: Recorder, spec: SolverSpec, variant: Variant, problem: Problem, seed: int) -> None:
    copies = [(name, X.clone()) for name, X in _data(problem)]
    first = _run_stepped(rec, spec, variant, problem, seed)
    _check_data(rec, variant, problem, copies)
    if first is None:
        return
    rec.check(QUIET, not first.seen, lambda: Counterexample(
        _where(variant, problem), "no clock read, output or Problem.loss call in init and step",
        _summarise(first.seen)))
    second = _run_stepped(rec, spec, variant, problem, seed)
    if second is not None:
        _check_same(rec, variant, problem, first.factors[-1], second.factors[-1],
                    f"two runs with seed {seed}, after step {STEPS}")


def _check_loss(rec: Recorder, variant: Variant, problem: Problem, own_loss: Callable[[], Any],
                pair: tuple[torch.Tensor, torch.Tensor], when: str) -> None:
    ok, value = rec.attempt(LOSS, lambda: float(own_loss()), lambda: _where(variant, problem, f"loss() {when}"))
    if not ok:
        return
    reference = problem.loss(*pair)
    eps = torch.finfo(problem.dtype).eps
    bound = LOSS_TOL * eps * (0.5 * problem.Y_norm2 + abs(reference))
    rec.check(LOSS, abs(value - reference) <= bound, lambda: Counterexample(
        _where(variant, problem, when), f"loss() = Problem.loss(*factors()) = {reference:.9g} (to {bound:.2g})",
        f"loss() = {value:.9g}"))


def _check_same(rec: Recorder, variant: Variant, problem: Problem, a: tuple[torch.Tensor, ...],
                b: tuple[torch.Tensor, ...], when: str) -> None:
    eps = torch.finfo(problem.dtype).eps
    for name, A, B in zip("WH", a, b):
        close = A.shape == B.shape and torch.allclose(
            A.double().cpu(), B.double().cpu(), rtol=SAME_TOL * eps, atol=SAME_TOL * eps * float(A.abs().max()))
        if not rec.check(DETERMINISTIC, close, lambda name=name, A=A, B=B: Counterexample(
                _where(variant, problem, when), f"the same {name}", f"{name} = {fmt_value(A)} and {fmt_value(B)}")):
            return


# --------------------------------------------------------------------------- black-box solvers


def _check_black_box(rec: Recorder, spec: SolverSpec, variant: Variant, problem: Problem, seed: int) -> None:
    copies = [(name, X.clone()) for name, X in _data(problem)]
    torch.manual_seed(seed)
    ok, solver = rec.attempt(BUILDS, lambda: spec.factory(**variant.params), lambda: _where(variant, problem))
    if not ok:
        return
    rec.check(BUILDS, True, lambda: None)
    W0, H0 = initial_factors(problem, seed)
    results = {}
    for budget, tag in ((STEPS, "first"), (STEPS, "second"), (1, "short")):
        torch.manual_seed(seed)
        when = f"solve(problem, W0, H0, n_iter={budget})"
        ok, out = rec.attempt(SOLVE_RUNS, lambda b=budget: solver.solve(problem, W0.clone(), H0.clone(), b),
                              lambda w=when: _where(variant, problem, w))
        if not ok:
            break
        rec.check(SOLVE_RUNS, True, lambda: None)
        pair = _check_factors(rec, variant, problem, out, when, name=SOLVE, exact=False)
        if pair is None:
            break
        results[tag] = tuple(X.to(device=problem.device, dtype=problem.dtype) for X in pair)
    _check_data(rec, variant, problem, copies)
    if "second" in results:
        _check_same(rec, variant, problem, results["first"], results["second"], f"two calls with n_iter={STEPS}")
    if "short" in results:
        differ = any(not torch.equal(a, b) for a, b in zip(results["first"], results["short"]))
        rec.check(BUDGET, differ, lambda: Counterexample(
            _where(variant, problem), f"different factors after 1 and after {STEPS} iterations",
            f"the same W = {fmt_value(results['short'][0])}"))


# ------------------------------------------------------------------------------------- fixed W


def _check_fixed_W(rec: Recorder, spec: SolverSpec, variant: Variant, problem: Problem, seed: int,
                   black_box: bool) -> None:
    """W must stay W_true; a refusal must come at once (init, first step or solve) and say why."""
    torch.manual_seed(seed)
    try:
        solver = spec.factory(**variant.params)
    except PLUGIN_FAILURES:
        return  # reported by the main run
    W0, H0 = initial_factors(problem, seed)
    attempts: list[tuple[str, Callable[[], Any]]]
    if black_box:
        attempts = [("solve", lambda: solver.solve(problem, W0.clone(), H0.clone(), STEPS))]
    else:
        attempts = [("init", lambda: solver.init(problem, W0, H0))] + [
            (f"step {k}", solver.step) for k in range(1, STEPS + 1)]
    W_true = problem.W_true
    eps = torch.finfo(problem.dtype).eps
    own_loss = None if black_box or not callable(getattr(solver, "loss", None)) else solver.loss
    for k, (when, call) in enumerate(attempts):
        try:
            with _watch([], when):  # output is checked by the main run; here it is only kept quiet
                out = call()
            if not black_box:
                out = solver.factors()
        except PLUGIN_FAILURES as exc:
            message = str(exc).strip()
            at_once = k <= 1
            if rec.check(FIXED_W, at_once and bool(message), lambda exc=exc, when=when: Counterexample(
                    _where(variant, problem, when), "W kept, or refused in init (or the first step) with a message",
                    describe_error(exc))):
                rec.row(FIXED_W).detail = rec.row(FIXED_W).detail or f"refused: {message[:120]}"
            return
        W = out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else None
        kept = W is not None and W.shape == W_true.shape and torch.allclose(
            W.detach().to(W_true), W_true, rtol=SAME_TOL * eps, atol=SAME_TOL * eps * float(W_true.abs().max()))
        if not rec.check(FIXED_W, kept, lambda W=W, when=when: Counterexample(
                _where(variant, problem, f"after {when}"), f"W = W_true = {fmt_value(W_true)}",
                f"W = {fmt_value(W)}" if W is not None else _describe_pair(out))):
            return
        H = out[1] if len(out) == 2 and isinstance(out[1], torch.Tensor) else None
        if own_loss is not None and H is not None and all(
                X.dtype == problem.dtype and X.device == problem.device for X in (W, H)):
            _check_loss(rec, variant, problem, own_loss, (W.detach().clone(), H.detach().clone()), f"after {when}")


# ---------------------------------------------------------------------------------- the watch


def _summarise(seen: list[str]) -> str:
    """``where: what`` notes, each kind once with the first place it happened and a count."""
    first: dict[str, tuple[str, int]] = {}
    for note in seen:
        where, _, what = note.partition(": ")
        place, count = first.get(what, (where, 0))
        first[what] = (place, count + 1)
    return "; ".join(f"{place}: {what}" + (f" (and {count - 1} more)" if count > 1 else "")
                     for what, (place, count) in first.items())

_CLOCKS = {"time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns",
           "process_time", "process_time_ns", "thread_time", "thread_time_ns"}
_LOSS_CODE = Problem.loss.__code__
_LOG_CODE = logging.Logger._log.__code__


@contextmanager
def _watch(seen: list[str], where: str) -> Iterator[None]:
    """Note in ``seen`` each clock read, ``Problem.loss`` call, log record and write to
    stdout/stderr made inside the block (this thread)."""

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__module__", None) == "time" and arg.__name__ in _CLOCKS:
            seen.append(f"{where}: reads the clock (time.{arg.__name__})")
        elif event == "call" and frame.f_code is _LOSS_CODE:
            seen.append(f"{where}: calls Problem.loss")
        elif event == "call" and frame.f_code is _LOG_CODE:
            seen.append(f"{where}: logs")

    out, err = io.StringIO(), io.StringIO()
    previous = sys.getprofile()
    with redirect_stdout(out), redirect_stderr(err):
        sys.setprofile(profile)
        try:
            yield
        finally:
            sys.setprofile(previous)
    for name, stream in (("stdout", out), ("stderr", err)):
        if stream.getvalue():
            seen.append(f"{where}: writes {stream.getvalue()[:60]!r} to {name}")

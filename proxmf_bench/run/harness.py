"""The harness: one solver on one problem, timed, with its loss recorded on a schedule.

The harness owns the clock. Solver time is the sum of the durations of ``init`` and of each
``step``; on CUDA the device is synchronised before the clock is read. The loss is evaluated
between steps, outside the timed region, at the iterations of a geometric
:class:`~proxmf_bench.run.schedule.RecordSchedule` (always the first and the last); the
factors are copied there and their ground-truth metrics evaluated when the cell ends
(:class:`~proxmf_bench.problem.metrics.DeferredMetrics`).

Solvers without a per-iteration API (:class:`~proxmf_bench.solve.blackbox.BlackBoxSolver`)
are sampled with growing budgets instead, the way benchopt samples black-box solvers: for
each iteration ``k`` of the record schedule ``solve`` is called afresh with budget ``k`` from
the same initial factors as every other solver, and each call is timed on its own. The row
for ``k`` holds the duration of that call as ``time_s``: the time the solver needs to reach
iteration ``k`` from scratch, which is what the cumulative solver time of a stepped solver
means too. One untimed call with budget 1 comes first, as a warm-up: libraries set things up
lazily on their first call (torchnmf's first backward pass starts autograd's threads, about
0.7 s). Stopping rules read as for stepped solvers, with a call in place of an iteration.

Both loops record through one :class:`Recorder`, which also turns an exception in the
solver into an ``error`` row and Ctrl-C into an ``interrupted`` one. Plugin code that tries to
leave the process (``sys.exit()``, ``SystemExit``) or raises ``KeyboardInterrupt`` with no
signal having arrived fails its cell the same way (:func:`plugin_failure`); the grid goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from proxmf_bench.errors import describe_exception
from proxmf_bench.problem.metrics import DeferredMetrics
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import StartingPoint
from proxmf_bench.run.cells import Cell, CellObserver, CellResult, Limits
from proxmf_bench.run.interrupts import spurious_interrupt
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.solve.blackbox import BlackBoxSolver, is_black_box

clock = time.perf_counter  # module-level so that tests can drive the clock


class Interrupted(Exception):
    """Carries the partial result of the cell that was running at Ctrl-C."""

    def __init__(self, result: CellResult) -> None:
        super().__init__("interrupted")
        self.result = result


def plugin_failure(exc: BaseException, who: str) -> str | None:
    """The ``error`` message for ``exc`` raised by plugin code (``who``: "the solver"), or
    ``None`` for an exception that must propagate (a real Ctrl-C or SIGTERM)."""
    if isinstance(exc, SystemExit):
        return f"{who} tried to exit the process ({describe_exception(exc)})"
    if isinstance(exc, KeyboardInterrupt):
        return f"{who} raised {describe_exception(exc)} with no interrupt signal" if spurious_interrupt() else None
    return describe_exception(exc) if isinstance(exc, Exception) else None


class Recorder:
    """The record points of one cell: loss, metrics (deferred), the observer told of each."""

    def __init__(self, cell: Cell, problem: Problem, observer: CellObserver | None,
                 check: Callable[[], str | None] | None = None) -> None:
        self.cell = cell
        self.result = CellResult(cell)
        self.metrics = DeferredMetrics(problem)
        self.observer = observer
        self.check = check
        self.last_iteration = -1

    def record(self, iteration: int, time_s: float, W: torch.Tensor, H: torch.Tensor, loss: float) -> None:
        rec = {"iteration": iteration, "time_s": time_s, "loss": loss}
        self.metrics.add(rec, W, H)
        self.result.records.append(rec)
        self.last_iteration = iteration
        if self.observer is not None:
            self.observer.recorded(self.cell, iteration, time_s, loss)

    @contextmanager
    def guard(self, position: Callable[[], tuple[int, float]]) -> Iterator[None]:
        """Record an exception in the solver as ``error`` and Ctrl-C as ``interrupted``.

        ``position()`` gives the (iteration, solver time) reached, for the row such a cell
        keeps. The pending metrics are evaluated in every case (a stopped cell keeps its
        records). Unless interrupted, ``check()`` then says whether the solver broke a rule
        that fails its cell (it modified the problem data). The observer hears of the finished
        cell either way; Ctrl-C then raises :class:`Interrupted`, which stops the grid.
        """
        result = self.result
        try:
            yield
            self.metrics.flush()
        except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a solver may fail in any way
            error = plugin_failure(exc, "the solver")
            if error is None:  # Ctrl-C or SIGTERM: the grid stops
                self._stopped("interrupted", "interrupted by the user", position())
                if self.observer is not None:
                    self.observer.cell_finished(result)
                raise Interrupted(result) from None
            self._stopped("error", error, position())
        broken = self.check() if self.check is not None else None
        if broken is not None:
            failed = f"; it also failed: {result.error}" if result.stop_reason == "error" else ""
            result.stop_reason, result.error = "error", broken + failed
        if self.observer is not None:
            self.observer.cell_finished(result)

    def _stopped(self, reason: str, error: str, position: tuple[int, float]) -> None:
        """Mark the cell stopped; the metrics of its records so far are still evaluated (one
        that fails to evaluate now, or a second Ctrl-C, leaves the rest NaN in the table)."""
        self.result.stop_reason, self.result.error = reason, error
        self.result.ensure_row(*position)
        try:
            self.metrics.flush()
        except (Exception, KeyboardInterrupt):
            pass


def synchronizer(device: torch.device) -> Callable[[], None] | None:
    """What waits for ``device`` to finish its queued work before the clock is read (CUDA), or None."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def loss_stop_reason(previous: float, loss: float, tol: float | None) -> str | None:
    """``diverged`` for a non-finite loss, ``tol`` for a relative change of at most ``tol``."""
    if not math.isfinite(loss):
        return "diverged"
    if tol is not None and abs(previous - loss) <= tol * max(abs(previous), 1e-300):
        return "tol"
    return None


def run_cell(
    factory: Callable[..., Any],
    cell: Cell,
    problem: Problem,
    W0: torch.Tensor,
    H0: torch.Tensor,
    limits: Limits,
    schedule: RecordSchedule,
    observer: CellObserver | None = None,
    start: StartingPoint | None = None,
    check: Callable[[], str | None] | None = None,
) -> CellResult:
    """Run one solver on one problem from ``(W0, H0)`` until a stopping rule fires.

    ``factory(**cell.solver.params)`` builds the solver: a stepped one, or a black-box one
    (``factory.black_box``), which is sampled by budgets. ``start``, if given, is the
    starting point ``(W0, H0)`` were copied from: its loss, shared by the cells that start
    there, is then the loss at iteration 0. ``check``, if given, is called once the solver is
    done (outside the clock); a message from it fails the cell (see :class:`Recorder`).
    """
    recorder = Recorder(cell, problem, observer, check)
    loop = _sample_black_box if is_black_box(factory) else _step
    loop(recorder, factory, problem, W0, H0, limits, schedule, start)
    return recorder.result


def _step(
    recorder: Recorder, factory: Callable[..., Any], problem: Problem, W0: torch.Tensor, H0: torch.Tensor,
    limits: Limits, schedule: RecordSchedule, start: StartingPoint | None,
) -> None:
    result, record, now = recorder.result, recorder.record, clock
    sync = synchronizer(problem.device)
    elapsed = 0.0
    k = 0
    with recorder.guard(lambda: (k, elapsed)):
        torch.manual_seed(recorder.cell.seed)
        solver = factory(**recorder.cell.solver.params)
        if sync is not None:
            sync()
        tic = now()
        solver.init(problem, W0, H0)
        if sync is not None:
            sync()
        elapsed = now() - tic
        loss_of = _loss_function(solver, problem)
        W, H = solver.factors()
        loss = initial_loss(start, W, H, loss_of)
        record(0, elapsed, W, H, loss)
        next_record = schedule.next_after(0)
        # locals: this loop's own cost is what a solver step is compared with
        step, max_iter, tol = solver.step, limits.max_iter, limits.tol
        max_time = math.inf if limits.max_time is None else limits.max_time
        while True:
            if k >= max_iter:
                result.stop_reason = "max_iter"
                break
            if elapsed >= max_time:
                result.stop_reason = "max_time"
                break
            tic = now()
            step()
            if sync is not None:
                sync()
            elapsed += now() - tic
            k += 1
            if tol is None and k != next_record:
                continue
            previous = loss
            W, H = solver.factors()
            loss = loss_of(W, H)
            stop = loss_stop_reason(previous, loss, tol)
            if stop is not None:
                result.stop_reason = stop
                record(k, elapsed, W, H, loss)
                break
            if k == next_record:
                record(k, elapsed, W, H, loss)
                next_record = schedule.next_after(k)
        if recorder.last_iteration != k:
            W, H = solver.factors()
            record(k, elapsed, W, H, loss_of(W, H))


def _sample_black_box(
    recorder: Recorder, factory: Callable[..., BlackBoxSolver], problem: Problem, W0: torch.Tensor,
    H0: torch.Tensor, limits: Limits, schedule: RecordSchedule, start: StartingPoint | None,
) -> None:
    result, record, seed = recorder.result, recorder.record, recorder.cell.seed
    sync = synchronizer(problem.device) or (lambda: None)
    budget = 0
    call_time = 0.0
    with recorder.guard(lambda: (budget, call_time)):
        torch.manual_seed(seed)
        solver = factory(**recorder.cell.solver.params)
        if limits.max_iter > 0:  # warm-up, untimed (lazy set-up, autograd's threads)
            solver.solve(problem, W0.clone(), H0.clone(), 1)
        loss = initial_loss(start, W0, H0, problem.loss)
        record(0, call_time, W0, H0, loss)
        while budget < limits.max_iter:
            budget = min(schedule.next_after(budget), limits.max_iter)
            W_start, H_start = W0.clone(), H0.clone()
            torch.manual_seed(seed)
            sync()
            tic = clock()
            W, H = solver.solve(problem, W_start, H_start, budget)
            sync()
            call_time = clock() - tic
            W = W.to(device=problem.device, dtype=problem.dtype)
            H = H.to(device=problem.device, dtype=problem.dtype)
            previous, loss = loss, problem.loss(W, H)
            record(budget, call_time, W, H, loss)
            stop = loss_stop_reason(previous, loss, limits.tol)
            if stop is not None:
                result.stop_reason = stop
                break
            if limits.max_time is not None and call_time >= limits.max_time:
                result.stop_reason = "max_time"
                break


def initial_loss(
    start: StartingPoint | None, W: torch.Tensor, H: torch.Tensor, loss_of: Callable[..., float]
) -> float:
    """The loss at the factors a solver starts from: shared when they are ``start``'s."""
    shared = start.loss_at(W, H) if start is not None else None
    return loss_of(W, H) if shared is None else shared


def _loss_function(solver: Any, problem: Problem) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``loss(W, H)`` at the solver's current factors: its own ``loss()`` when it has one
    (from products it already holds), else :meth:`Problem.loss`."""
    own = getattr(solver, "loss", None)
    if callable(own):
        return lambda W, H: float(own())
    return problem.loss

"""The harness: one solver on one problem, timed, with its loss recorded on a schedule.

The harness owns the clock. Solver time is the sum of the durations of ``init`` and of each
``step``; on CUDA the device is synchronised before the clock is read. The loss, and the
objective (the loss plus the penalties of the solver's declared
:class:`~proxmf_bench.plugin.specs.Objective`), are evaluated between steps, outside the timed
region, at the iterations of a geometric :class:`~proxmf_bench.run.schedule.RecordSchedule`
(always the first and the last); the factors are copied there and their ground-truth metrics
evaluated when the cell ends (:class:`~proxmf_bench.problem.metrics.DeferredMetrics`).

**Warm-up.** Before the timed run, a solver built the same way runs ``init`` and
:data:`WARMUP_STEPS` step on the problem, untimed, and is discarded: first calls pay for lazy
imports, loading LAPACK, CUDA kernel selection and growing memory pools (the timed run reuses
the blocks the warm-up freed), which the timed run must not count. Only what is timed is
warmed up (no loss is evaluated); it costs one iteration of wall time per cell. A warm-up
that fails is ignored (the timed run fails the same way, where it is recorded).

**Repeats.** With ``repeat=K`` the cell is run ``K`` times from the same start. The first run
decides where it stops (its stopping rules); the others run exactly as many iterations. Each
run must reproduce the first one's iterates (the loss at every record point and the final
factors, bit for bit), else the cell ends in ``error``. At each record point ``time_s`` is
the median over the runs, ``time_s_min`` and ``time_s_max`` their range.

Solvers without a per-iteration API (:class:`~proxmf_bench.solve.blackbox.BlackBoxSolver`)
are sampled with growing budgets instead: for each iteration ``k`` of the record schedule
``solve`` is called again. A solver that declares ``continues = True`` continues from the
factors of its previous call for ``k - k_previous`` more iterations (giving the iterates of
one long run); its ``time_s`` is the sum of its calls' durations, like a stepped solver's,
less the library's fixed cost per call for every call after the first (:func:`call_overhead`,
fitted on the run's own calls), so that it estimates the duration of one call of ``k``
iterations.
Any other one restarts from the shared initial factors with budget ``k``, and ``time_s`` is
that call's duration, the time the solver needs to reach ``k`` from scratch; as such
durations are noisy, each time column is then made non-decreasing over budgets by a running
maximum. One untimed call with budget 1 comes first, as a warm-up: libraries set things up
lazily on their first call (torchnmf's first backward pass starts autograd's threads, about
0.7 s). Stopping rules read as for stepped solvers, with a call in place of an iteration.

Both loops record through one :class:`Recorder`, which also turns an exception in the
solver into an ``error`` row and Ctrl-C into an ``interrupted`` one. Plugin code that tries to
leave the process (``sys.exit()``, ``SystemExit``) or raises ``KeyboardInterrupt`` with no
signal having arrived fails its cell the same way (:func:`plugin_failure`); the grid goes on.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from proxmf_bench.errors import describe_exception
from proxmf_bench.plugin.specs import Objective
from proxmf_bench.problem.metrics import DeferredMetrics
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import StartingPoint
from proxmf_bench.run.cells import Cell, CellObserver, CellResult, Limits
from proxmf_bench.run.interrupts import spurious_interrupt
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.solve.blackbox import BlackBoxSolver, continues, is_black_box

clock = time.perf_counter  # module-level so that tests can drive the clock

# Untimed iterations before the timed run (see the module docstring).
WARMUP_STEPS = 1

# (iteration, solver time, loss) of one record point of one run
Point = tuple[int, float, float]


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


class NotReproducible(Exception):
    """A repeat of a cell did not reproduce its first run's iterates."""


class ProblemModified(Exception):
    """The solver modified the problem's data during its warm-up (the message says what)."""


class Recorder:
    """The record points of one cell: loss, objective, metrics (deferred), the observer told
    of each. ``labels`` are constant columns added to every record (the problem key)."""

    def __init__(self, cell: Cell, problem: Problem, observer: CellObserver | None,
                 objective: Objective | None = None, labels: Mapping[str, Any] | None = None,
                 check: Callable[[], str | None] | None = None) -> None:
        self.cell = cell
        self.result = CellResult(cell)
        self.metrics = DeferredMetrics(problem)
        self.observer = observer
        self.objective = objective or Objective()
        self.fixed_W = problem.fixed_W
        self.labels = dict(labels or {})
        self.check = check
        self.last_iteration = -1

    def record(self, iteration: int, time_s: float, W: torch.Tensor, H: torch.Tensor, loss: float) -> None:
        with torch.no_grad():
            objective = loss + self.objective.penalty(W, H, self.fixed_W)
        rec = {"iteration": iteration, "time_s": time_s, "loss": loss, "objective": objective, **self.labels}
        self.metrics.add(rec, W, H)
        self.result.records.append(rec)
        self.last_iteration = iteration
        if self.observer is not None:
            self.observer.recorded(self.cell, iteration, time_s, loss)

    def repeat_started(self, repeat: int, total: int) -> Callable[[int, float, float], None]:
        """Tell the observer that run ``repeat`` of ``total`` starts; what to call at its records."""
        observer, cell = self.observer, self.cell
        if observer is None:
            return lambda k, t, loss: None
        observer.repeat_started(cell, repeat, total)
        return lambda k, t, loss: observer.recorded(cell, k, t, loss)

    def merge_times(self, runs: list[list[Point]], monotone: bool = False) -> None:
        """Set ``time_s`` (median over runs), ``time_s_min`` and ``time_s_max`` of each record
        (the runs' points are those of the records, in order); ``monotone``: each column made
        non-decreasing by a running maximum."""
        highest = [-math.inf] * 3
        for i, rec in enumerate(self.result.records):
            times = [run[i][1] for run in runs]
            values = (statistics.median(times), min(times), max(times))
            if monotone:
                highest = [max(h, v) for h, v in zip(highest, values)]
                values = tuple(highest)
            rec["time_s"], rec["time_s_min"], rec["time_s_max"] = values

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
        except ProblemModified as exc:
            self._stopped("error", str(exc), position())
        except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a solver may fail in any way
            error = plugin_failure(exc, "the solver")
            if error is None:  # Ctrl-C or SIGTERM: the grid stops
                self._stopped("interrupted", "interrupted by the user", position())
                self._finished()
                raise Interrupted(result) from None
            self._stopped("error", error, position())
        broken = self.check() if self.check is not None else None
        if broken is not None:
            failed = f"; it also failed: {result.error}" if result.stop_reason == "error" else ""
            result.stop_reason, result.error = "error", broken + failed
        self._finished()

    def check_problem(self) -> None:
        """Raise :class:`ProblemModified` now if the solver has modified the problem's data:
        after the warm-up, so that the timed run never sees modified data (a modification
        done twice, such as a swap, could otherwise undo itself)."""
        broken = self.check() if self.check is not None else None
        if broken is not None:
            self.check = None  # found, and the problem dropped: nothing more to check
            raise ProblemModified(broken)

    def _finished(self) -> None:
        """Records not timed several times have the range of their one time; tell the observer."""
        for rec in self.result.records:
            rec.setdefault("time_s_min", rec["time_s"])
            rec.setdefault("time_s_max", rec["time_s"])
        if self.observer is not None:
            self.observer.cell_finished(self.result)

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
    *,
    objective: Objective | None = None,
    labels: Mapping[str, Any] | None = None,
    repeat: int = 1,
    check: Callable[[], str | None] | None = None,
) -> CellResult:
    """Run one solver on one problem from ``(W0, H0)`` until a stopping rule fires.

    ``factory(**cell.solver.params)`` builds the solver: a stepped one, or a black-box one
    (``factory.black_box``), which is sampled by budgets. ``(W0, H0)`` are never modified:
    each run gets copies. ``start``, if given, is the starting point ``(W0, H0)`` were copied
    from: its loss, shared by the cells that start there, is then the loss at iteration 0.
    ``objective`` is what the solver minimises (default: the nonnegative problem), recorded at
    every record point with ``labels`` (constant columns); ``repeat`` times the cell that many
    times (see the module docstring). ``check``, if given, is called once the solver is done
    (outside the clock); a message from it fails the cell (see :class:`Recorder`).
    """
    recorder = Recorder(cell, problem, observer, objective, labels, check)
    loop = _sample_black_box if is_black_box(factory) else _step
    loop(recorder, factory, problem, W0, H0, limits, schedule, start, repeat)
    return recorder.result


def _step(
    recorder: Recorder, factory: Callable[..., Any], problem: Problem, W0: torch.Tensor, H0: torch.Tensor,
    limits: Limits, schedule: RecordSchedule, start: StartingPoint | None, repeat: int,
) -> None:
    position = [0, 0.0]  # iteration and solver time reached, kept up to date on the way out of a run
    params, seed = recorder.cell.solver.params, recorder.cell.seed

    def build():
        torch.manual_seed(seed)
        return factory(**params)

    with recorder.guard(lambda: (position[0], position[1])):
        _warm_up(build, problem, W0, H0, limits)
        recorder.check_problem()
        first = _timed_steps(build(), problem, W0.clone(), H0.clone(), limits, schedule, start,
                             recorder.record, position)
        recorder.result.stop_reason, points, final = first
        if repeat > 1 and recorder.result.stop_reason in ("max_iter", "max_time", "tol"):
            fixed = Limits(max_iter=points[-1][0])
            runs = [points]
            for r in range(2, repeat + 1):
                shown = recorder.repeat_started(r, repeat)
                _, again, factors = _timed_steps(build(), problem, W0.clone(), H0.clone(), fixed, schedule, start,
                                                 lambda k, t, W, H, loss: shown(k, t, loss), [0, 0.0])
                _check_reproduced(points, again, final, factors, r, repeat)
                runs.append(again)
            recorder.merge_times(runs)


def _warm_up(build: Callable[[], Any], problem: Problem, W0: torch.Tensor, H0: torch.Tensor, limits: Limits) -> None:
    """``init`` and :data:`WARMUP_STEPS` steps of a throw-away solver (untimed)."""
    steps = WARMUP_STEPS if limits.max_iter is None else min(WARMUP_STEPS, limits.max_iter)
    try:
        solver = build()
        solver.init(problem, W0.clone(), H0.clone())
        for _ in range(steps):
            solver.step()
        sync = synchronizer(problem.device)
        if sync is not None:
            sync()
    except Exception:  # the timed run fails the same way, and is recorded there
        pass


def _timed_steps(
    solver: Any, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, limits: Limits, schedule: RecordSchedule,
    start: StartingPoint | None, record: Callable[..., None], position: list,
) -> tuple[str, list[Point], tuple[torch.Tensor, torch.Tensor]]:
    """One timed run: ``(stop reason, its record points, copies of its final factors)``.

    ``record(k, time, W, H, loss)`` is called at each record point; ``position`` holds the
    iteration and solver time reached when the run ends, also by an exception.
    """
    points: list[Point] = []

    def keep(k: int, t: float, W: torch.Tensor, H: torch.Tensor, loss: float) -> None:
        points.append((k, t, loss))
        record(k, t, W, H, loss)

    now = clock
    sync = synchronizer(problem.device)
    elapsed = 0.0
    k = 0
    last = -1
    try:
        if sync is not None:
            sync()
        tic = now()
        solver.init(problem, W0, H0)
        if sync is not None:
            sync()
        elapsed = now() - tic
        loss_of = loss_function(solver, problem)
        W, H = solver.factors()
        loss = initial_loss(start, W, H, loss_of)
        keep(0, elapsed, W, H, loss)
        last = 0
        next_record = schedule.next_after(0)
        # locals: this loop's own cost is what a solver step is compared with
        step, tol = solver.step, limits.tol
        max_iter = math.inf if limits.max_iter is None else limits.max_iter
        max_time = math.inf if limits.max_time is None else limits.max_time
        while True:
            if k >= max_iter:
                stop = "max_iter"
                break
            if elapsed >= max_time:
                stop = "max_time"
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
                keep(k, elapsed, W, H, loss)
                last = k
                break
            if k == next_record:
                keep(k, elapsed, W, H, loss)
                last = k
                next_record = schedule.next_after(k)
        W, H = solver.factors()
        if last != k:
            keep(k, elapsed, W, H, loss_of(W, H))
        return stop, points, (W.detach().clone(), H.detach().clone())
    finally:
        position[0], position[1] = k, elapsed


def _check_reproduced(first: list[Point], again: list[Point], final, factors, r: int, repeat: int) -> None:
    """Raise :class:`NotReproducible` unless run ``r`` gave the first run's iterates."""
    for (k, _, a), (j, _, b) in zip(first, again):
        if k != j or not (a == b or (math.isnan(a) and math.isnan(b))):
            raise NotReproducible(
                f"repeat {r} of {repeat} did not reproduce the first run (loss at iteration {k}: {a!r}, "
                f"then {b!r}): the solver is not deterministic, so its repeats cannot be timed as one run")
    if len(first) != len(again) or not all(torch.equal(x, y) for x, y in zip(final, factors)):
        raise NotReproducible(
            f"repeat {r} of {repeat} did not reproduce the first run's final factors: the solver is not "
            "deterministic, so its repeats cannot be timed as one run")


def _sample_black_box(
    recorder: Recorder, factory: Callable[..., BlackBoxSolver], problem: Problem, W0: torch.Tensor,
    H0: torch.Tensor, limits: Limits, schedule: RecordSchedule, start: StartingPoint | None, repeat: int,
) -> None:
    position = [0, 0.0]
    seed = recorder.cell.seed
    with recorder.guard(lambda: (position[0], position[1])):
        torch.manual_seed(seed)
        solver = factory(**recorder.cell.solver.params)
        if limits.max_iter is None or limits.max_iter > 0:  # warm-up, untimed (lazy set-up, autograd's threads)
            solver.solve(problem, W0.clone(), H0.clone(), 1)
            recorder.check_problem()
        loss0 = initial_loss(start, W0, H0, problem.loss)
        first = _sampled_run(solver, problem, W0, H0, loss0, limits, schedule, seed, recorder.record, position)
        recorder.result.stop_reason, points, final = first
        runs = [points]
        if repeat > 1 and recorder.result.stop_reason in ("max_iter", "max_time", "tol"):
            fixed = Limits(max_iter=points[-1][0])
            for r in range(2, repeat + 1):
                shown = recorder.repeat_started(r, repeat)
                _, again, factors = _sampled_run(solver, problem, W0, H0, loss0, fixed, schedule, seed,
                                                 lambda k, t, W, H, loss: shown(k, t, loss), [0, 0.0])
                _check_reproduced(points, again, final, factors, r, repeat)
                runs.append(again)
        if recorder.result.stop_reason != "error":
            recorder.merge_times(runs, monotone=not continues(solver))


def call_overhead(budgets: list[int], durations: list[float]) -> float:
    """The fixed cost of one call of a black-box solver (input checks, set-up), from the calls of
    a run: the intercept of the Theil-Sen line ``duration = c + t * budget`` (the median of the
    slopes between pairs of calls, then the median of ``duration - t * budget``), robust to the
    odd slow call; 0 when the calls cannot tell (all budgets equal), never above the shortest call."""
    slopes = [(durations[j] - durations[i]) / (budgets[j] - budgets[i])
              for i in range(len(budgets)) for j in range(i + 1, len(budgets)) if budgets[j] != budgets[i]]
    if not slopes:
        return 0.0
    slope = statistics.median(slopes)
    intercept = statistics.median(d - slope * b for b, d in zip(budgets, durations))
    return min(max(intercept, 0.0), min(durations))


def _sampled_run(
    solver: BlackBoxSolver, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, loss0: float, limits: Limits,
    schedule: RecordSchedule, seed: int, record: Callable[..., None], position: list,
) -> tuple[str, list[Point], tuple[torch.Tensor, torch.Tensor]]:
    """One sampled run of a black-box solver (see the module docstring); returns what
    :func:`_timed_steps` does. A continued solver's points carry the sum of its calls'
    durations less the fixed cost per call (:func:`call_overhead`, fitted on this run's calls)
    for every call after the first; the record callback and ``max_time`` see the plain sum."""
    points: list[Point] = [(0, 0.0, loss0)]
    record(0, 0.0, W0, H0, loss0)
    sync = synchronizer(problem.device) or (lambda: None)
    resume = continues(solver)
    max_iter = math.inf if limits.max_iter is None else limits.max_iter
    budget, done, total, loss = 0, 0, 0.0, loss0
    calls: list[tuple[int, float]] = []  # (iterations, duration) of each call
    W, H = W0, H0
    stop = "max_iter"
    if resume:
        torch.manual_seed(seed)  # once: a continued run draws from one stream, as one long call would
    try:
        while budget < max_iter:
            budget = min(schedule.next_after(budget), max_iter)
            if resume:
                start_W, start_H, n_iter = W.clone(), H.clone(), budget - done
            else:
                start_W, start_H, n_iter = W0.clone(), H0.clone(), budget
                torch.manual_seed(seed)
            sync()
            tic = clock()
            W, H = solver.solve(problem, start_W, start_H, n_iter)
            sync()
            duration = clock() - tic
            total = total + duration if resume else duration
            calls.append((budget - done, duration))
            done = budget
            W = W.to(device=problem.device, dtype=problem.dtype)
            H = H.to(device=problem.device, dtype=problem.dtype)
            previous, loss = loss, problem.loss(W, H)
            points.append((budget, total, loss))
            record(budget, total, W, H, loss)
            reason = loss_stop_reason(previous, loss, limits.tol)
            if reason is not None:
                stop = reason
                break
            if limits.max_time is not None and total >= limits.max_time:
                stop = "max_time"
                break
        if resume and len(calls) > 1:
            # the first call's fixed cost is the run's own (a single long call pays it too);
            # the others' are an artefact of sampling the run in calls
            budgets, durations = zip(*calls)
            overhead = call_overhead(list(budgets), list(durations))
            points = [*points[:2], *((k, t - overhead * i, f) for i, (k, t, f) in enumerate(points[2:], start=1))]
        return stop, points, (W.detach().clone(), H.detach().clone())
    finally:
        position[0], position[1] = budget, total  # a failed call: the budget it was asked for


def initial_loss(
    start: StartingPoint | None, W: torch.Tensor, H: torch.Tensor, loss_of: Callable[..., float]
) -> float:
    """The loss at the factors a solver starts from: shared when they are ``start``'s."""
    shared = start.loss_at(W, H) if start is not None else None
    return loss_of(W, H) if shared is None else shared


def loss_function(solver: Any, problem: Problem) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``loss(W, H)`` at the solver's current factors: its own ``loss()`` when it has one
    (from products it already holds) and that is accurate in the problem's dtype (float64:
    see :attr:`Problem.gram_loss_is_accurate`), else :meth:`Problem.loss`."""
    own = getattr(solver, "loss", None)
    if callable(own) and problem.gram_loss_is_accurate:
        return lambda W, H: float(own())
    return problem.loss

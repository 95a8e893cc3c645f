"""Black-box solvers: sampled at the schedule's budgets from the same start, each call timed."""

import math
import signal

import pandas as pd
import pytest
import torch
from support.clock import FakeClock

from proxmf_bench import SolverSpec, run_benchmark
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.specs import Param
from proxmf_bench.run import harness
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.solve.blackbox import BlackBoxSolver, is_black_box
from proxmf_bench.solvers.mu import MU

SMALL = "synthetic[m=30,n=20,rank=3]"


class CountingMU(BlackBoxSolver):
    """``n_iter`` MU steps from the given start; logs each call and what it started from."""

    calls: list = []

    def __init__(self, fail_at=0, blow_up_at=0, interrupt_at=0):
        self.fail_at, self.blow_up_at, self.interrupt_at = fail_at, blow_up_at, interrupt_at

    def solve(self, problem, W0, H0, n_iter):
        CountingMU.calls.append((n_iter, W0.clone(), H0.clone()))
        if n_iter == self.fail_at:
            raise RuntimeError("peer failed on purpose")
        if n_iter == self.interrupt_at:  # a real Ctrl-C: the run's handler raises KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)
        solver = MU()
        solver.init(problem, W0, H0)
        for _ in range(n_iter):
            solver.step()
        harness.clock.now += n_iter
        W, H = solver.factors()
        W0.fill_(-1.0)  # scribbling on its inputs must not leak into the next call
        return (W * math.inf, H) if n_iter == self.blow_up_at else (W, H)


@pytest.fixture
def counting(monkeypatch):
    registry = load_registry(use_entry_points=False)
    registry.solvers["counting"] = SolverSpec(
        name="counting", factory=CountingMU,
        params=(Param("fail_at", 0, int), Param("blow_up_at", 0, int), Param("interrupt_at", 0, int)),
    )
    monkeypatch.setattr(harness, "clock", FakeClock())
    CountingMU.calls = []
    return registry


def test_budgets_follow_the_schedule_and_each_call_is_timed_alone(counting, tmp_path):
    out = run_benchmark(solvers="counting,mu", datasets=SMALL, max_iter=40, registry=counting, out=tmp_path)
    rows = out.frame[out.frame.solver == "counting"]
    schedule = RecordSchedule()
    expected = [0]
    while expected[-1] < 40:
        expected.append(min(schedule.next_after(expected[-1]), 40))
    assert rows.iteration.tolist() == expected
    assert [n for n, _, _ in CountingMU.calls] == [1] + expected[1:]  # an untimed warm-up first
    # time_s is the duration of the call for that budget (n units on the fake clock), not a sum
    assert rows.time_s.tolist() == [float(k) for k in expected]
    assert set(rows.stop_reason) == {"max_iter"}
    # every call starts from the same initial factors, those every other solver gets
    _, W_first, H_first = CountingMU.calls[0]
    assert all(torch.equal(W, W_first) and torch.equal(H, H_first) for _, W, H in CountingMU.calls)
    mu = out.frame[out.frame.solver == "mu"].set_index("iteration").loss
    # n_iter MU steps from the shared start: the same losses as the stepped MU at those iterations
    assert rows.set_index("iteration").loss.loc[mu.index].tolist() == pytest.approx(mu.tolist(), rel=1e-12)


def test_max_time_stops_after_the_first_call_that_took_that_long(counting, tmp_path):
    out = run_benchmark(solvers="counting", datasets=SMALL, max_iter=1000, max_time=15,
                        registry=counting, out=tmp_path)
    last = out.frame.iloc[-1]
    assert last.stop_reason == "max_time"
    assert last.iteration == 16 and last.time_s == 16.0  # budgets ... 12, 14, 16


def test_tol_compares_consecutive_budgets(counting, tmp_path):
    out = run_benchmark(solvers="counting", datasets=SMALL, max_iter=5000, tol=1e-2,
                        registry=counting, out=tmp_path)
    loss = out.frame.loss.to_numpy()
    assert out.frame.stop_reason.iloc[-1] == "tol"
    assert abs(loss[-2] - loss[-1]) <= 1e-2 * loss[-2]
    assert all(abs(a - b) > 1e-2 * a for a, b in zip(loss[:-2], loss[1:-1]))


def test_divergence_and_errors_stop_the_cell_not_the_grid(counting, tmp_path):
    out = run_benchmark(solvers="counting[blow_up_at=4],counting[fail_at=6],mu", datasets=SMALL,
                        max_iter=20, registry=counting, out=tmp_path)
    last = out.frame.sort_values("iteration").groupby("solver").tail(1).set_index("solver")
    assert last.loc["counting[blow_up_at=4]", "stop_reason"] == "diverged"
    assert last.loc["counting[blow_up_at=4]", "iteration"] == 4
    failed = last.loc["counting[fail_at=6]"]
    assert failed.stop_reason == "error" and "peer failed on purpose" in failed.error
    assert failed.iteration == 6 and math.isnan(failed.loss)
    assert last.loc["mu", "stop_reason"] == "max_iter"


def test_ctrl_c_inside_a_call_keeps_what_was_sampled(counting, tmp_path):
    out = run_benchmark(solvers="mu,counting[interrupt_at=7],mu[eps=1e-9]", datasets=SMALL, max_iter=20,
                        registry=counting, out=tmp_path)
    assert out.interrupted
    rows = out.frame[out.frame.solver == "counting[interrupt_at=7]"]
    assert rows.iteration.tolist()[:-1] == list(range(7))
    assert rows.stop_reason.iloc[-1] == "interrupted"
    assert "mu[eps=1e-9]" not in set(out.frame.solver)


def test_black_box_marker():
    assert is_black_box(CountingMU)
    assert not is_black_box(MU)

    def factory():
        return CountingMU()

    factory.black_box = True
    assert is_black_box(factory)


def test_black_box_rows_carry_the_same_metrics_as_stepped_rows(counting, tmp_path):
    out = run_benchmark(solvers="counting,mu", datasets=SMALL, max_iter=5, registry=counting, out=tmp_path)
    columns = ["iteration", "loss", "rel_error", "sad_deg", "rmse_H", "fms"]
    counted = out.frame[out.frame.solver == "counting"][columns].reset_index(drop=True)
    stepped = out.frame[out.frame.solver == "mu"][columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(counted, stepped, rtol=1e-12)


class ContinuedMU(CountingMU):
    """CountingMU declaring that a call from the previous factors continues the run."""

    continues = True

    def solve(self, problem, W0, H0, n_iter):
        W, H = super().solve(problem, W0, H0, n_iter)
        return W.clone(), H.clone()


def test_a_continued_solver_adds_iterations_and_its_time_accumulates(counting, tmp_path):
    counting.solvers["continued"] = SolverSpec(name="continued", factory=ContinuedMU)
    out = run_benchmark(solvers="continued,counting", datasets=SMALL, max_iter=40, registry=counting, out=tmp_path)
    rows = out.frame[out.frame.solver == "continued"].sort_values("iteration")
    budgets = rows.iteration.tolist()
    calls = [n for n, _, _ in CountingMU.calls]
    continued_calls = calls[: len(budgets)]  # the continued cell ran first: warm-up, then its calls
    assert continued_calls == [1] + [b - a for a, b in zip(budgets, budgets[1:])]
    # time_s is cumulative: the iterations done so far, one unit each on the fake clock
    assert rows.time_s.tolist() == [float(k) for k in budgets]
    # each call started from the factors the previous one returned (not the shared start)
    _, W_start, _ = CountingMU.calls[1]
    _, W_second, _ = CountingMU.calls[2]
    assert not torch.equal(W_start, W_second)
    # and the losses are those of one long run, as the restarted sampling gives them
    restarted = out.frame[out.frame.solver == "counting"].set_index("iteration").loss
    assert rows.set_index("iteration").loss.tolist() == pytest.approx(restarted.loc[budgets].tolist(), rel=1e-12)


def test_max_time_of_a_continued_solver_reads_the_cumulative_time(counting, tmp_path):
    counting.solvers["continued"] = SolverSpec(name="continued", factory=ContinuedMU)
    out = run_benchmark(solvers="continued", datasets=SMALL, max_iter=1000, max_time=15, registry=counting,
                        out=tmp_path)
    last = out.frame.iloc[-1]
    assert last.stop_reason == "max_time" and last.iteration == 16 and last.time_s == 16.0


class SetUpCost(ContinuedMU):
    """A continued solver whose every call also pays a fixed set-up of 5 units."""

    def solve(self, problem, W0, H0, n_iter):
        harness.clock.now += 5.0
        return super().solve(problem, W0, H0, n_iter)


def test_the_fixed_cost_of_each_call_is_counted_once(counting, tmp_path):
    counting.solvers["setup"] = SolverSpec(name="setup", factory=SetUpCost)
    out = run_benchmark(solvers="setup", datasets=SMALL, max_iter=40, registry=counting, out=tmp_path)
    rows = out.frame.sort_values("iteration")
    # one call of k iterations would take 5 + k: the set-up of the later calls is not added up
    assert rows.time_s.tolist() == [0.0] + [5.0 + k for k in rows.iteration.iloc[1:]]


def test_call_overhead_is_the_intercept_of_a_robust_line():
    budgets = [1, 1, 1, 2, 3, 5, 8, 13]
    durations = [0.5 + 0.1 * b for b in budgets]
    durations[3] = 9.0  # one call disturbed by something else
    assert harness.call_overhead(budgets, durations) == pytest.approx(0.5)
    assert harness.call_overhead([4, 4], [1.0, 1.2]) == 0.0
    assert harness.call_overhead([1, 2], [1.0, 1.0]) == 1.0  # never above the shortest call

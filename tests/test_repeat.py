"""Timings that hold up: repeated cells with identical iterates, a warm-up outside the clock,
--max-time alone, and seeds given as lists or ranges."""

import io
import math

import numpy as np
import pandas as pd
import pytest
from support.clock import FakeClock

from proxmf_bench import SolverSpec, run_benchmark
from proxmf_bench.cli import main
from proxmf_bench.errors import UserError
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.specs import Param
from proxmf_bench.results.analysis import add_suboptimality, time_to_tolerance_per_seed
from proxmf_bench.run import harness
from proxmf_bench.run.cells import Limits
from proxmf_bench.run.grid import parse_seeds
from proxmf_bench.run.progress import ProgressBars
from proxmf_bench.solvers.mu import MU

SMALL = "synthetic[m=30,n=20,rank=3]"


class TimedMU(MU):
    """MU whose steps take, on the fake clock, ``costs[r]`` in the ``r``-th timed run of the
    process, and 100 in the very first step of all (a first-call cost)."""

    built = 0
    first_call = True

    def __init__(self, costs="1,3,2", noisy=False):
        super().__init__()
        TimedMU.built += 1
        self.run = TimedMU.built - 2  # the first solver built is the warm-up's
        self.costs = [float(c) for c in costs.split(",")]
        self.noisy = noisy

    def step(self):
        super().step()
        cost = 100.0 if TimedMU.first_call else self.costs[self.run % len(self.costs)]
        TimedMU.first_call = False
        harness.clock.now += cost
        if self.noisy and self.run == 1:  # the second timed run drifts: not reproducible
            self.H.mul_(1 + 1e-12)


@pytest.fixture
def timed(monkeypatch):
    registry = load_registry(use_entry_points=False)
    registry.solvers["timed"] = SolverSpec(
        name="timed", factory=TimedMU, params=(Param("costs", "1,3,2", str), Param("noisy", False, bool)))
    monkeypatch.setattr(harness, "clock", FakeClock())
    TimedMU.built, TimedMU.first_call = 0, True
    return registry


def test_repeats_report_the_median_and_range_of_identical_runs(timed, tmp_path):
    out = run_benchmark(solvers="timed", datasets=SMALL, max_iter=30, repeat=3, registry=timed, out=tmp_path)
    rows = out.frame.sort_values("iteration")
    assert set(rows.stop_reason) == {"max_iter"} and TimedMU.built == 4  # a warm-up and three timed runs
    k = rows.iteration.to_numpy(float)
    # per-step costs 1, 3, 2 in the three runs: the median run costs 2 per step, the range 1 to 3;
    # the warm-up took the first-call cost of 100, which no timed run counts
    assert rows.time_s.tolist() == (2.0 * k).tolist()
    assert rows.time_s_min.tolist() == (1.0 * k).tolist() and rows.time_s_max.tolist() == (3.0 * k).tolist()
    single = run_benchmark(solvers="mu", datasets=SMALL, max_iter=5, registry=timed, out=tmp_path / "one")
    assert (single.frame.time_s_min == single.frame.time_s).all() and (single.frame.time_s_max == single.frame.time_s).all()


def test_repeats_run_the_iterations_of_the_first_run(timed, tmp_path):
    # the first timed run (cost 1 per step) stops at 10 s of solver time; the others (3 and 2 per
    # step) run exactly as many iterations, so that their iterates are the same
    out = run_benchmark(solvers="timed", datasets=SMALL, max_iter=None, max_time=10, repeat=3, registry=timed,
                        out=tmp_path)
    rows = out.frame.sort_values("iteration")
    assert rows.iteration.iloc[-1] == 10 and rows.stop_reason.iloc[-1] == "max_time"
    assert rows.time_s_max.iloc[-1] == 30.0 and rows.time_s.iloc[-1] == 20.0


def test_a_repeat_that_changes_the_iterates_fails_the_cell(timed, tmp_path):
    out = run_benchmark(solvers="timed[noisy=true],mu", datasets=SMALL, max_iter=15, repeat=3, registry=timed,
                        out=tmp_path)
    last = out.frame.sort_values("iteration").groupby("solver").tail(1).set_index("solver")
    bad = last.loc["timed[noisy=true]"]
    assert bad.stop_reason == "error" and "repeat 2 of 3 did not reproduce the first run" in bad.error
    assert last.loc["mu", "stop_reason"] == "max_iter"


def test_the_warm_up_keeps_first_call_costs_out_of_every_cell(timed, tmp_path):
    out = run_benchmark(solvers="timed[costs=1]", datasets=SMALL, max_iter=12, registry=timed, out=tmp_path)
    rows = out.frame.sort_values("iteration")
    assert rows.time_s.tolist() == rows.iteration.astype(float).tolist()


def test_repeated_black_box_cells_and_real_solvers_give_identical_iterates(tmp_path):
    out = run_benchmark(solvers="mu,fista,sklearn_cd", datasets=SMALL, max_iter=40, repeat=2, out=tmp_path)
    assert set(out.frame.stop_reason) == {"max_iter"}
    assert (out.frame.time_s_min <= out.frame.time_s).all() and (out.frame.time_s <= out.frame.time_s_max).all()


def test_time_to_tolerance_per_seed_carries_the_spread_of_the_repeats():
    rows = []
    for seed, times in ((0, [(0.5, 0.4, 0.6), (1.0, 0.9, 1.5)]), (1, [(0.7, 0.6, 0.8), (2.0, 1.8, 2.2)])):
        for it, ((t, lo, hi), loss) in enumerate(zip(times, (3.0, 1.0))):
            rows.append({"run": "r", "solver": "a", "dataset": "d", "dtype": "float64", "device": "cpu",
                         "seed": seed, "iteration": it, "time_s": t, "time_s_min": lo, "time_s_max": hi,
                         "loss": loss + seed, "stop_reason": "max_iter", "error": ""})
    times = time_to_tolerance_per_seed(add_suboptimality(pd.DataFrame(rows)), (1e-2,)).set_index("seed")
    assert times.loc[0, ["time_s", "time_s_min", "time_s_max"]].tolist() == [1.0, 0.9, 1.5]
    assert times.loc[1, ["time_s", "time_s_min", "time_s_max"]].tolist() == [2.0, 1.8, 2.2]
    assert (times["iteration"] == 1).all()


class ClockedMU(MU):
    """MU whose every step takes 1 ms of (fake) solver time."""

    def step(self):
        super().step()
        harness.clock.now += 1e-3


def test_max_time_alone_has_no_iteration_cap(monkeypatch, tmp_path):
    registry = load_registry(use_entry_points=False)
    registry.solvers["clocked"] = SolverSpec(name="clocked", factory=ClockedMU)
    monkeypatch.setattr(harness, "clock", FakeClock())
    out = run_benchmark(solvers="clocked", datasets=SMALL, max_time=0.5, registry=registry, out=tmp_path)
    last = out.frame.sort_values("iteration").iloc[-1]
    assert last.stop_reason == "max_time" and last.iteration == 500  # beyond the default cap of 200
    assert out.meta["grid"]["max_iter"] is None
    capped = run_benchmark(solvers="clocked", datasets=SMALL, max_time=0.5, max_iter=200, registry=registry,
                           out=tmp_path / "capped")
    assert capped.frame.iteration.max() == 200
    with pytest.raises(UserError, match="needs --max-iter or --max-time"):
        Limits(max_iter=None)


def test_the_progress_bar_follows_solver_time_without_an_iteration_cap():
    stream = io.StringIO()
    bars = ProgressBars(1, Limits(max_iter=None, max_time=2.0), stream=stream)
    bars.cell_bar = None
    from proxmf_bench.plugin.selection import Variant
    from proxmf_bench.run.cells import Cell

    cell = Cell(Variant("mu", {}, "mu"), Variant("synthetic", {}, "synthetic"), "cpu", "float64", 0)
    bars.cell_started(cell, 0, 1)
    assert bars.cell_bar.total == 2.0
    bars.recorded(cell, 700, 1.5, 3.0)
    assert bars.cell_bar.n == 1.5
    bars.recorded(cell, 900, 2.4, 2.0)  # the last iteration overshoots the limit
    assert bars.cell_bar.n == 2.0
    bars.close()
    iterations = ProgressBars(1, Limits(max_iter=50), stream=io.StringIO())
    iterations.cell_started(cell, 0, 1)
    assert iterations.cell_bar.total == 50


@pytest.mark.parametrize("text, seeds", [
    ("3", (0, 1, 2)), (2, (0, 1)), ("0,3,7", (0, 3, 7)), ("10-12", (10, 11, 12)), ("0,10-12", (0, 10, 11, 12)),
    ("5-5", (5,)), ([4, 2], (4, 2)), (" 1 , 2 ", (1, 2)),
])
def test_seeds_are_a_count_a_list_or_a_range(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [
    ("0", "must be >= 1"), ("", "cannot read ''"), ("a", "cannot read 'a'"), ("3-1", "ends before it starts"),
    ("1,1", "lists the seed 1 twice"), ("-1", "cannot read '-1'"), ("1-", "cannot read '1-'"),
    ("1,,2", "cannot read ''"), ([1, -2], "seeds must be >= 0"), (True, "must be a count"),
])
def test_malformed_seeds_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        parse_seeds(text)


def test_seeds_are_recorded_and_resuming_keeps_them(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--seeds", "10-11,4", "--max-iter", "3",
                 "--out", str(run_dir)]) == 0
    frame = pd.read_parquet(run_dir / "results.parquet")
    assert sorted(frame.seed.unique()) == [4, 10, 11]
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert main(["run", "--resume", str(run_dir), "--seeds", "10-11,4"]) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--seeds", "10-12"]) == 2
    assert "cells added" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "1-x"], "--seeds '1-x' is not a count"),
    (["--repeat", "0"], "--repeat must be >= 1, got 0"),
    (["--repeat", "-2"], "--repeat must be >= 1, got -2"),
])
def test_bad_timing_flags_are_one_line_errors(flags, message, tmp_path, capsys):
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_repeat_is_part_of_the_grid_when_resuming(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--max-iter", "3", "--repeat", "2",
                 "--out", str(run_dir)]) == 0
    assert main(["run", "--resume", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--repeat", "3"]) == 2
    assert "repeat 2 -> 3" in capsys.readouterr().err


def test_restarted_black_box_times_never_go_backwards(monkeypatch, tmp_path):
    """A black-box solver that restarts each call: call durations that shrink (noise) do not
    make the time axis run backwards."""
    from proxmf_bench.solve.blackbox import BlackBoxSolver

    class Shrinking(BlackBoxSolver):
        calls = 0

        def solve(self, problem, W0, H0, n_iter):
            Shrinking.calls += 1
            harness.clock.now += n_iter * (1.0 if Shrinking.calls % 2 else 0.5)
            return W0, H0

    registry = load_registry(use_entry_points=False)
    registry.solvers["shrinking"] = SolverSpec(name="shrinking", factory=Shrinking)
    monkeypatch.setattr(harness, "clock", FakeClock())
    out = run_benchmark(solvers="shrinking", datasets=SMALL, max_iter=60, registry=registry, out=tmp_path)
    times = out.frame.sort_values("iteration").time_s.to_numpy()
    assert np.all(np.diff(times) >= 0)
    assert not math.isclose(times[-1], 0.0)

"""Performance profiles against a hand-computed example (the numbers below are worked out on paper)."""

import math

import pandas as pd
import pytest

from proxmf_bench.results.profiles import (
    compared_instances,
    instance_count,
    performance_profile,
    performance_ratios,
    profile_at,
    solve_times,
)

# (run, seed, solver) -> recorded (iteration, time_s, subopt)
POINTS = {
    ("first", 0, "x"): [(0, 0.0, 1.0), (1, 1.0, 0.5), (2, 2.0, 5e-3)],
    ("first", 0, "y"): [(0, 0.0, 1.0), (1, 4.0, 1e-3), (2, 8.0, 1e-5)],
    ("first", 0, "z"): [(0, 0.0, 1.0), (1, 3.0, 0.1)],
    ("first", 1, "x"): [(0, 0.0, 1.0), (1, 6.0, 1e-3)],
    ("first", 1, "y"): [(0, 0.0, 1.0), (1, 3.0, 1e-2)],  # at the tolerance counts as reached
    ("first", 1, "z"): [(0, 0.0, 1.0), (1, 1.5, 1e-5)],
    # the same problem in a second run directory is another instance; nobody solves it
    ("second", 0, "x"): [(0, 0.0, 1.0), (1, 1.0, 0.9)],
    ("second", 0, "y"): [(0, 0.0, 1.0), (5, 2.0, 0.2)],
    ("second", 0, "z"): [(0, 0.0, 1.0), (1, 1.0, math.nan)],  # a diverged run: failed
}


def long_table() -> pd.DataFrame:
    rows = []
    for (run, seed, solver), points in POINTS.items():
        for iteration, time_s, subopt in points:
            rows.append({"run": run, "dataset": "d", "dtype": "float64", "objective_name": "nonneg",
                         "problem": f"d|float64|seed {seed}|nonneg", "objective": 1.0 + subopt,
                         "objective_note": "", "device": "cpu", "solver": solver, "seed": seed,
                         "iteration": iteration, "time_s": time_s, "subopt": subopt, "loss": 1.0 + subopt})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def ratios():
    return performance_ratios(solve_times(long_table(), (1e-2, 1e-4)))


def test_ratios_match_hand_computation(ratios):
    got = ratios.set_index(["tol", "run", "seed", "solver"])["ratio"]
    inf = math.inf
    expected = {
        # 1e-2: run first seed 0, best x at 2 s; seed 1, best z at 1.5 s; run second: nobody
        (1e-2, "first", 0, "x"): 1.0, (1e-2, "first", 0, "y"): 2.0, (1e-2, "first", 0, "z"): inf,
        (1e-2, "first", 1, "x"): 4.0, (1e-2, "first", 1, "y"): 2.0, (1e-2, "first", 1, "z"): 1.0,
        (1e-2, "second", 0, "x"): inf, (1e-2, "second", 0, "y"): inf, (1e-2, "second", 0, "z"): inf,
        # 1e-4: only y on seed 0 (8 s) and z on seed 1
        (1e-4, "first", 0, "x"): inf, (1e-4, "first", 0, "y"): 1.0, (1e-4, "first", 0, "z"): inf,
        (1e-4, "first", 1, "x"): inf, (1e-4, "first", 1, "y"): inf, (1e-4, "first", 1, "z"): 1.0,
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert instance_count(ratios, 1e-2) == 3 == instance_count(ratios, 1e-4)


def test_profile_steps_match_hand_computation(ratios):
    profile = performance_profile(ratios)
    steps = {(tol, solver): [v for step in zip(part["tau"], part["fraction"]) for v in step]
             for (tol, solver), part in profile.groupby(["tol", "solver"])}
    assert steps[(1e-2, "x")] == pytest.approx([1.0, 1 / 3, 4.0, 2 / 3])
    assert steps[(1e-2, "y")] == pytest.approx([2.0, 2 / 3])
    assert steps[(1e-2, "z")] == pytest.approx([1.0, 1 / 3])
    assert steps[(1e-4, "y")] == pytest.approx([1.0, 1 / 3])
    assert steps[(1e-4, "x")] == [math.inf, 0.0]  # solved nothing
    assert set(profile["instances"]) == {3}


@pytest.mark.parametrize(("tau", "expected"), [
    (1.0, {"x": 1 / 3, "y": 0.0, "z": 1 / 3}),
    (1.99, {"x": 1 / 3, "y": 0.0, "z": 1 / 3}),
    (3.0, {"x": 1 / 3, "y": 2 / 3, "z": 1 / 3}),
    (math.inf, {"x": 2 / 3, "y": 2 / 3, "z": 1 / 3}),
])
def test_profile_at(ratios, tau, expected):
    at = profile_at(performance_profile(ratios), tau).xs(1e-2, level="tol").droplevel("device")
    assert at.to_dict() == pytest.approx(expected)


def test_zero_best_time_is_a_tie_not_a_division_by_zero():
    times = pd.DataFrame({"run": "r", "dataset": "d", "dtype": "float64", "objective_name": "nonneg", "seed": 0,
                          "device": "cpu", "solver": ["a", "b", "c"], "tol": 1e-2, "time_s": [0.0, 0.0, math.inf]})
    assert list(performance_ratios(times)["ratio"]) == [1.0, 1.0, math.inf]


def test_an_instance_with_one_solver_is_left_out():
    table = long_table()
    alone = table[(table["run"] == "first") & (table["seed"] == 0) & (table["solver"] == "x")]
    alone = alone.assign(objective_name="l1", problem="d|float64|seed 0|l1", solver="x[prox_H=l1]")
    times = solve_times(pd.concat([table, alone], ignore_index=True), (1e-2,))
    kept, left_out = compared_instances(times)
    assert left_out == ["x[prox_H=l1]"]
    assert instance_count(performance_ratios(kept), 1e-2) == 3
    assert instance_count(performance_ratios(times), 1e-2) == 4

"""``proxmf-bench compare``: paired statistics against independent computations, on results
tables written by hand (known paired differences) and on a real run."""

from __future__ import annotations

import csv
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from proxmf_bench.cli import main
from proxmf_bench.results.analysis import add_suboptimality, combine_runs, load_runs
from proxmf_bench.results.compare import (
    MIN_PAIRS_TEST,
    Comparison,
    Side,
    automatic_comparisons,
    bootstrap_median_ci,
    compare_runs,
    format_verdicts,
    match_solvers,
    resolve_comparisons,
    signed_rank_p,
    summarize,
    verdict_table,
)
from proxmf_bench.results.table import concat_frames, to_frame, write_results
from proxmf_bench.run.runner import run_benchmark


def cell_rows(solver, dataset, seed, points, objective_name="nonneg", device="cpu", params=None):
    """Rows of one cell: ``points`` are ``(iteration, time_s, objective, {metric: value})``."""
    problem = f"{dataset}|float64|{objective_name}|seed {seed}"
    return [{
        "solver": solver, "solver_name": solver.split("[")[0],
        "solver_params": params if params is not None else json.dumps({"label": solver}, sort_keys=True),
        "dataset": dataset, "dataset_name": dataset, "dataset_params": "{}", "device": device,
        "dtype": "float64", "seed": seed, "iteration": it, "time_s": t, "loss": f, "stop_reason": "max_iter",
        "error": "", "objective": f, "problem": problem, "objective_name": objective_name,
        "objective_note": "", "time_s_min": t, "time_s_max": t, **metrics,
    } for it, t, f, metrics in points]


def write_run(path, rows):
    write_results(path, concat_frames([to_frame(rows, "run", 1)]))
    return path


def frame_of(*paths):
    return add_suboptimality(combine_runs(load_runs(paths)))


def final_metric_rows(solver, values, metric="sad_deg", dataset="d", objective_name="nonneg"):
    """One cell per seed, two points each, the last with ``values[seed]`` of ``metric``."""
    rows = []
    for seed, value in enumerate(values):
        rows += cell_rows(solver, dataset, seed, [(0, 0.0, 10.0, {metric: 99.0}), (5, 1.0, 1.0, {metric: value})],
                          objective_name)
    return rows


def row(verdicts, dataset, metric):
    table = verdicts.table
    hit = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
    assert len(hit) == 1, table
    return hit.iloc[0]


def brute_signed_rank_p(d: np.ndarray) -> float:
    """Exact two-sided p of the signed-rank statistic by enumerating every sign assignment."""
    d = d[d != 0]
    ranks = np.empty(len(d))
    ranks[np.argsort(np.abs(d))] = np.arange(1, len(d) + 1)  # no ties in the data used
    observed = ranks[d > 0].sum()
    totals = np.array([ranks[list(signs)].sum() for signs in itertools.product([False, True], repeat=len(d))])
    return min(1.0, 2 * min(np.mean(totals <= observed), np.mean(totals >= observed)))


@pytest.mark.parametrize("n", [6, 7, 9, 11])
def test_signed_rank_p_is_the_exact_enumeration(n):
    rng = np.random.default_rng(n)
    d = rng.normal(0.4, 1.0, n)
    assert signed_rank_p(d) == pytest.approx(brute_signed_rank_p(d), rel=1e-12)


def test_bootstrap_interval_is_the_quantile_of_the_exact_bootstrap_distribution():
    d = np.array([-0.3, 0.1, 0.4, 0.9, 2.5])
    # every one of the 5^5 equally likely resamples, and its median
    medians = np.sort([np.median(d[list(idx)]) for idx in itertools.product(range(5), repeat=5)])
    cdf = {v: np.mean(medians <= v) for v in d}
    exact_low = min(v for v in d if cdf[v] >= 0.025)
    exact_high = min(v for v in d if cdf[v] >= 0.975)
    # the Monte-Carlo quantiles can only miss these if the exact CDF sits near 0.025 or 0.975
    assert all(abs(p - q) > 0.01 for p in cdf.values() for q in (0.025, 0.975))
    assert bootstrap_median_ci(d, seed=3) == (exact_low, exact_high)
    assert bootstrap_median_ci(d, seed=3) == bootstrap_median_ci(d, seed=3)


def test_known_paired_differences(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(5, 10, 8)
    delta = np.array([-1.5, -0.7, -2.0, 0.3, -0.9, -1.1, -0.4, -3.0])  # candidate lower (better) on 7 of 8
    path = write_run(tmp_path / "r", final_metric_rows("base", base) + final_metric_rows("cand", base + delta))
    verdicts = compare_runs([path], "base", "cand", ["sad_deg"])
    got = row(verdicts, "d", "sad_deg")
    assert (got.wins, got.ties, got.losses, got.n, got.pairs) == (7, 0, 1, 8, 8)
    assert got["median"] == pytest.approx(np.median(delta), rel=1e-9)
    assert got.p_value == pytest.approx(brute_signed_rank_p(delta), rel=1e-9)
    assert (got.ci_low, got.ci_high) == pytest.approx(bootstrap_median_ci((base + delta) - base, seed=0))
    assert got.ci_low <= got["median"] <= got.ci_high
    assert got.verdict == "better" and got.p_value < 0.05
    # fms is better higher: the same differences are losses there
    rows = final_metric_rows("base", base, "fms") + final_metric_rows("cand", base + delta, "fms")
    got = row(compare_runs([write_run(tmp_path / "f", rows)], "base", "cand", ["fms"]), "d", "fms")
    assert (got.wins, got.losses, got.verdict, got.better) == (1, 7, "worse", "higher")


def test_few_seeds_are_said_plainly(tmp_path):
    base = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    path = write_run(tmp_path / "r", final_metric_rows("base", base) + final_metric_rows("cand", base - 1))
    got = row(compare_runs([path], "base", "cand", ["sad_deg"]), "d", "sad_deg")
    assert (got.wins, got.n) == (5, 5) and math.isnan(got.p_value)
    assert got.verdict.startswith("not enough seeds") and str(MIN_PAIRS_TEST) in got.verdict
    assert got["median"] == pytest.approx(-1.0)


def test_identical_results_tie(tmp_path):
    base = np.linspace(1, 2, 7)
    path = write_run(tmp_path / "r", final_metric_rows("base", base) + final_metric_rows("cand", base.copy()))
    got = row(compare_runs([path], "base", "cand", ["sad_deg"]), "d", "sad_deg")
    assert (got.wins, got.ties, got.losses, got.verdict) == (0, 7, 0, "identical")


def curve(values, times):
    return [(i, t, f, {}) for i, (t, f) in enumerate(zip(times, values))]


def test_time_to_tolerance_is_within_each_solvers_own_problem(tmp_path):
    """The baseline solves problem A (f* = 1 from its best run), the candidate problem B (f* = 100,
    from a third solver on B): each reaches 1e-2 where it is within 1 % of its own f*."""
    rows = []
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    for seed in range(6):
        s = 1 + seed  # scales the times: ratios stay the same
        rows += cell_rows("base", "d", seed, curve([5, 2, 1.005, 1.0, 1.0], [t * s for t in times]), "A")
        rows += cell_rows("cand", "d", seed, curve([500, 100.5, 100.2, 100.1, 100.05], [t * s / 2 for t in times]), "B")
        rows += cell_rows("other", "d", seed, curve([500, 100.0], [0, 9]), "B")
    frame = frame_of(write_run(tmp_path / "r", rows))
    verdicts = verdict_table(frame, [Comparison(Side("base"), Side("cand"))], ["time_to_1e-2", "time_to_1e-4",
                                                                             "objective"])
    # base reaches 1e-2 at t = 2 s (1.005 <= 1.01), cand at 0.5 s (100.5 <= 101): ratio 1/4 on every seed
    got = row(verdicts, "d", "time_to_1e-02")
    assert got["median"] == pytest.approx(0.25) and got.scale == "ratio"
    assert (got.wins, got.n, got.verdict) == (6, 6, "better")
    # 1e-4: base at 3 s; cand never (100.05 > 100.01): a loss, outside the median
    got = row(verdicts, "d", "time_to_1e-04")
    assert (got.wins, got.losses, got.n) == (0, 6, 0) and math.isnan(got["median"])
    # different problems: no objective row, and the note says why
    assert "objective" not in set(verdicts.table["metric"])
    assert any("different problems" in n for n in verdicts.notes["cand vs base"])


def test_objective_compared_where_the_problem_is_the_same(tmp_path):
    rows = []
    gaps = [0.1, 0.2, 0.05, 0.3, 0.15, 0.25, 0.12]
    for seed, gap in enumerate(gaps):
        rows += cell_rows("base", "d", seed, curve([9, 2.0 + gap], [0, 1]))
        rows += cell_rows("cand", "d", seed, curve([9, 2.0], [0, 1]))  # the best: f* = 2
    verdicts = compare_runs([write_run(tmp_path / "r", rows)], "base", "cand", ["objective"])
    got = row(verdicts, "d", "objective")
    assert got["median"] == pytest.approx(-np.median(gaps) / 2.0)  # (F_c - F_b) / f*
    assert (got.wins, got.verdict) == (7, "better")


def test_overlapping_repeat_ranges_tie():
    b = np.array([1.0, 2.0, 3.0])
    c = np.array([1.1, 1.5, 2.0])
    out = summarize(b, c, ratio=True, tied=np.array([True, False, False]))
    assert (out.wins, out.ties, out.losses) == (2, 1, 0)
    never = summarize(np.array([np.inf, np.inf]), np.array([np.inf, 1.0]), ratio=True)
    assert (never.wins, never.ties, never.n) == (1, 1, 0)
    assert summarize(np.array([np.inf]), np.array([np.inf]), ratio=True).verdict == "neither reached it"


def test_several_datasets_pool_into_all(tmp_path):
    rows = final_metric_rows("base", [1, 2, 3, 4], dataset="x") + final_metric_rows("cand", [0, 1, 2, 3], dataset="x")
    rows += final_metric_rows("base", [1, 2, 3], dataset="y") + final_metric_rows("cand", [1.5, 2.5, 3.5], dataset="y")
    verdicts = compare_runs([write_run(tmp_path / "r", rows)], "base", "cand", ["sad_deg"])
    assert list(verdicts.table["dataset"]) == ["x", "y", "all"]
    got = row(verdicts, "all", "sad_deg")
    assert (got.wins, got.losses, got.n) == (4, 3, 7)
    assert got["median"] == pytest.approx(np.median([-1, -1, -1, -1, 0.5, 0.5, 0.5]))
    text = format_verdicts(verdicts)
    assert "cand vs base" in text and "4/0/3" in text and len(text.splitlines()) < 25


def test_two_run_directories_pair_the_same_solver(tmp_path):
    before = write_run(tmp_path / "before", final_metric_rows("mu", [1, 2, 3, 4, 5, 6]))
    after = write_run(tmp_path / "after", final_metric_rows("mu", [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]))
    verdicts = compare_runs([before, after], "mu")
    got = row(verdicts, "d", "sad_deg")
    assert got.comparison == "mu@after vs mu@before"
    assert (got.wins, got.n, got.verdict) == (6, 6, "better")
    assert compare_runs([before, after], "mu@before", f"mu@{after}").table.equals(verdicts.table)


def test_selection_matching(tmp_path):
    solvers = pd.DataFrame({
        "solver": ["pgm", "pgm[prox_H=l1_nonneg,lam_H=0.1]", "pgm[prox_H=l1_nonneg,lam_H=1]"],
        "solver_name": ["pgm"] * 3,
        "solver_params": [json.dumps({"prox_H": "nonneg", "lam_H": 0.1}),
                          json.dumps({"prox_H": "l1_nonneg", "lam_H": 0.1}),
                          json.dumps({"prox_H": "l1_nonneg", "lam_H": 1.0})],
    })
    assert match_solvers("pgm", solvers) == ["pgm"]
    assert match_solvers("pgm[lam_H=1.0]", solvers) == ["pgm[prox_H=l1_nonneg,lam_H=1]"]
    assert match_solvers("pgm[lam_H=0.10, prox_H=l1_nonneg]", solvers) == ["pgm[prox_H=l1_nonneg,lam_H=0.1]"]
    assert len(match_solvers("pgm[prox_H=l1_nonneg]", solvers)) == 2
    assert match_solvers("mu", solvers) == []
    resolved = [("pgm", json.dumps({"lam_H": 1.0, "prox_H": "l1_nonneg"}))]
    assert match_solvers("pgm[anything=1]", solvers, lambda item: resolved) == ["pgm[prox_H=l1_nonneg,lam_H=1]"]


@pytest.mark.parametrize("args, message", [
    (["--baseline", "bsae"], "matches no solver in the results; did you mean 'base'?"),
    (["--baseline", "base", "--candidate", "nope[x=1]"], "--candidate 'nope[x=1]' matches no solver"),
    (["--baseline", "base"], "baseline and candidate are both base"),
    (["--baseline", "base", "--candidate", "cand@elsewhere"], "@elsewhere: no such run"),
    (["--baseline", "base", "--candidate", "late"], "no instance (dataset, dtype, seed, run, device) in common"),
    (["--baseline", "base", "--candidate", "cand", "--metric", "rmse"], "unknown --metric 'rmse'"),
    (["--baseline", "base,cand", "--candidate", "cand,base,late"], "give as many, or one"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    rows = final_metric_rows("base", [1, 2]) + final_metric_rows("cand", [1, 2])
    rows += cell_rows("late", "d", 7, curve([2, 1], [0, 1]))
    path = write_run(tmp_path / "r", rows)
    assert main(["compare", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_unknown_run_directory(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing"), "--baseline", "mu"]) == 2
    assert "no results found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "run"
    run_benchmark(solvers="pgm,pgm[prox_H=l1_nonneg,lam_H=0.5],mu", datasets="synthetic[m=30,n=25,rank=3]",
                  seeds=6, max_iter=30, out=out)
    return out


def test_command_line_on_a_real_run(real_run, tmp_path, capsys):
    target = tmp_path / "verdicts.csv"
    # the candidate's parameters in another order than its label: found through the registry
    assert main(["compare", str(real_run), "--baseline", "pgm", "--candidate", "pgm[lam_H=0.5,prox_H=l1_nonneg]",
                 "--csv", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pgm[prox_H=l1_nonneg,lam_H=0.5] vs pgm  (6 paired instance(s)")
    assert "final objective not compared: the two solve different problems" in out
    for metric in ("sad_deg", "rmse_H", "fms (higher)", "time_to_1e-02", "time_per_iter"):
        assert metric in out
    with open(target, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {r["metric"] for r in table} >= {"sad_deg", "rmse_H", "fms", "time_to_1e-02", "time_per_iter"}
    assert all(int(r["wins"]) + int(r["ties"]) + int(r["losses"]) == int(r["pairs"]) == 6 for r in table)
    # recompute the sad_deg row from the results table by hand
    frame = pd.read_parquet(real_run / "results.parquet")
    last = frame.sort_values("iteration").groupby(["solver", "seed"]).tail(1).set_index(["solver", "seed"])["sad_deg"]
    d = (last["pgm[prox_H=l1_nonneg,lam_H=0.5]"] - last["pgm"]).sort_index().to_numpy()
    sad = next(r for r in table if r["metric"] == "sad_deg")
    assert float(sad["median"]) == pytest.approx(np.median(d), rel=1e-9, abs=1e-12)
    assert int(sad["wins"]) == int((d < 0).sum())
    assert float(sad["p_value"]) == pytest.approx(brute_signed_rank_p(d), rel=1e-9)


def test_same_problem_solvers_compare_objectives(real_run, capsys):
    assert main(["compare", str(real_run), "--baseline", "mu", "--candidate", "pgm", "--metric", "objective"]) == 0
    out = capsys.readouterr().out
    assert "objective" in out and "different problems" not in out


def test_automatic_comparisons(real_run, tmp_path):
    frame = frame_of(real_run)
    assert automatic_comparisons(frame) == [Comparison(Side("pgm"), Side("pgm[prox_H=l1_nonneg,lam_H=0.5]"))]
    two = frame_of(real_run, write_run(tmp_path / "other", final_metric_rows("mu", [1, 2])))
    first, second = pd.unique(two["run"])
    assert Comparison(Side("mu", first), Side("mu", second)) in automatic_comparisons(two)
    # the report leaves out comparisons without common instances (mu ran on other datasets there)
    assert verdict_table(two, [Comparison(Side("mu", first), Side("mu", second))], require_pairs=False).table.empty
    assert resolve_comparisons(frame, "pgm", "mu") == [Comparison(Side("pgm"), Side("mu"))]


def test_one_device_against_another_pairs_across_devices(tmp_path):
    """Two runs, one on the CPU and one on a GPU: each instance pairs across devices."""
    cpu_rows, gpu_rows = [], []
    for seed in range(6):
        cpu_rows += cell_rows("mu", "d", seed, [(0, 0.0, 9.0, {}), (10, 1.0 + seed, 1.0, {})], device="cpu")
        gpu_rows += cell_rows("mu", "d", seed, [(0, 0.0, 9.0, {}), (10, (1.0 + seed) / 8, 1.0, {})], device="cuda")
    cpu, gpu = write_run(tmp_path / "cpu", cpu_rows), write_run(tmp_path / "gpu", gpu_rows)
    verdicts = compare_runs([cpu, gpu], "mu", metrics=["time_per_iter", "objective"])
    got = row(verdicts, "d", "time_per_iter")
    assert got["median"] == pytest.approx(1 / 8) and (got.wins, got.n, got.verdict) == (6, 6, "better")
    assert row(verdicts, "d", "objective").verdict == "identical"  # the same problem, the same final value
    assert verdicts.notes["mu@gpu vs mu@cpu"][0] == "6 paired instance(s) on dataset, dtype, seed"


def test_rounding_differences_tie(tmp_path):
    """Another thread count reorders sums: objectives equal to 1e-13 relative tie, and so do
    metrics within the accuracy of their dtype, not a real difference."""
    rows = []
    for seed in range(6):
        rows += cell_rows("base", "d", seed, [(0, 0.0, 9.0, {"sad_deg": 3.0}), (5, 1.0, 2.0, {"sad_deg": 1.0})])
        rows += cell_rows("cand", "d", seed, [(0, 0.0, 9.0, {"sad_deg": 3.0}),
                                              (5, 1.0, 2.0 * (1 + (seed - 2.5) * 1e-13), {"sad_deg": 1.0 + 1e-12})])
        rows += cell_rows("best", "d", seed, [(0, 0.0, 9.0, {}), (5, 1.0, 1.9, {})])  # f* = 1.9: gaps of 0.05
    verdicts = compare_runs([write_run(tmp_path / "r", rows)], "base", "cand", ["objective", "sad_deg"])
    assert row(verdicts, "d", "objective").verdict == "identical"
    assert row(verdicts, "d", "sad_deg").verdict == "identical"
    assert summarize(np.full(6, 1.0), np.full(6, 1 + 3e-6), rtol=1e-5).verdict == "identical"  # float32
    assert summarize(np.full(6, 1.0), np.full(6, 1 + 3e-6), rtol=1e-8).wins == 0  # float64: a loss

"""The report's numbers on hand-made results tables, against their definitions computed here."""

import math

import numpy as np
import pandas as pd
import pytest

from proxmf_bench.errors import UserError
from proxmf_bench.results.analysis import (
    add_suboptimality,
    cell_summary,
    failed_cells,
    median_curves,
    metric_columns,
    run_labels,
    time_to_tolerance,
)


def _rows(solver, seed, points, run="r", device="cpu", dataset="d", dtype="float64", stop="max_iter", error=""):
    """Rows of one cell from ``[(iteration, time_s, loss), ...]``."""
    return [
        {"run": run, "solver": solver, "dataset": dataset, "dtype": dtype, "device": device, "seed": seed,
         "iteration": it, "time_s": t, "loss": loss, "stop_reason": stop, "error": error}
        for it, t, loss in points
    ]


def _frame(*cells):
    return pd.DataFrame([row for cell in cells for row in cell])


def test_f_star_is_the_best_loss_per_instance_over_solvers_devices_and_runs():
    frame = _frame(
        _rows("a", 0, [(0, 0.1, 10.0), (5, 1.0, 4.0)]),
        _rows("b", 0, [(0, 0.1, 10.0), (5, 2.0, 2.0)], run="other", device="cuda:0"),
        _rows("a", 1, [(0, 0.1, 8.0), (5, 1.0, 1.0)]),
        _rows("c", 1, [(0, 0.1, 8.0), (3, 1.0, math.nan)], stop="error"),
        _rows("a", 0, [(0, 0.1, 10.0), (5, 1.0, 0.5)], dtype="float32"),
    )
    out = add_suboptimality(frame)
    f64 = out[out["dtype"] == "float64"]
    assert set(f64.loc[f64["seed"] == 0, "f_star"]) == {2.0}
    assert set(f64.loc[f64["seed"] == 1, "f_star"]) == {1.0}
    assert set(out.loc[out["dtype"] == "float32", "f_star"]) == {0.5}
    row = out[(out["solver"] == "a") & (out["seed"] == 0) & (out["iteration"] == 5) & (out["dtype"] == "float64")]
    assert row["subopt"].item() == pytest.approx((4.0 - 2.0) / 2.0)
    assert out.loc[out["loss"].isna(), "subopt"].isna().all()


def test_suboptimality_is_the_absolute_gap_when_f_star_is_zero():
    out = add_suboptimality(_frame(_rows("a", 0, [(0, 0.1, 3.0), (1, 0.2, 0.0)])))
    assert list(out["subopt"]) == [3.0, 0.0]


def test_median_curves_match_numpy_and_drop_points_most_seeds_lack():
    losses = {0: [9.0, 5.0, 2.0], 1: [8.0, 4.0, 1.0], 2: [7.0, 6.0, 3.0]}
    cells = [_rows("a", s, [(k, 0.1 * (k + 1) + s, v) for k, v in enumerate(vals)]) for s, vals in losses.items()]
    cells.append(_rows("a", 3, [(0, 0.1, 10.0)]))  # a seed that stopped at once
    curves = median_curves(_frame(*cells), "loss", band=(0.25, 0.75))
    # iteration 0 has 4 seeds; iterations 1, 2 have 3 of 4 (more than half): all kept
    assert list(curves["iteration"]) == [0, 1, 2]
    for k in (1, 2):
        values = [losses[s][k] for s in losses]
        row = curves[curves["iteration"] == k].iloc[0]
        assert row["median"] == pytest.approx(np.median(values))
        assert row["lo"] == pytest.approx(np.quantile(values, 0.25))
        assert row["hi"] == pytest.approx(np.quantile(values, 0.75))
        assert row["time_s"] == pytest.approx(np.median([0.1 * (k + 1) + s for s in losses]))
        assert row["n"] == 3
    two_of_four = median_curves(_frame(*cells[:2], *[_rows("a", s, [(0, 0.1, 1.0)]) for s in (5, 6)]), "loss")
    assert list(two_of_four["iteration"]) == [0]


def test_median_curves_ignore_non_finite_values():
    frame = _frame(_rows("a", 0, [(0, 0.1, 5.0), (1, 0.2, math.inf), (2, 0.3, math.nan)]))
    assert list(median_curves(frame, "loss")["iteration"]) == [0]


def test_time_to_tolerance_is_the_first_recorded_time_below_it():
    frame = add_suboptimality(_frame(
        # seed 0: best is 1.0 (solver b); seed 1: best is 2.0 (solver b)
        _rows("a", 0, [(0, 0.5, 3.0), (1, 1.0, 1.001), (2, 2.0, 1.00001)]),
        _rows("b", 0, [(0, 0.5, 3.0), (1, 4.0, 1.0)]),
        _rows("a", 1, [(0, 0.5, 6.0), (1, 1.5, 2.5), (2, 3.0, 2.01)]),
        _rows("b", 1, [(0, 0.5, 6.0), (1, 8.0, 2.0)]),
    ))
    times = time_to_tolerance(frame, (1e-2, 1e-4)).set_index(["solver", "tol"])
    # a: seed 0 reaches 1e-2 at t=1.0 and 1e-4 at t=2.0; seed 1 reaches 1e-2 at t=3.0, 1e-4 never
    assert times.loc[("a", 1e-2), "time_s"] == pytest.approx(np.median([1.0, 3.0]))
    assert times.loc[("a", 1e-2), "reached"] == 2
    assert times.loc[("a", 1e-4), "time_s"] == math.inf  # median of (2.0, inf)
    assert times.loc[("a", 1e-4), "reached"] == 1
    assert times.loc[("b", 1e-4), "time_s"] == pytest.approx(np.median([4.0, 8.0]))
    assert (times["n_seeds"] == 2).all()


def test_cell_summary_reports_final_state_time_per_iteration_stops_and_errors():
    frame = add_suboptimality(_frame(
        _rows("a", 0, [(0, 0.5, 3.0), (10, 2.5, 1.0)]),
        _rows("a", 1, [(0, 0.7, 3.0), (20, 4.7, 2.0)], stop="tol"),
        _rows("bad", 0, [(0, 0.1, 3.0), (2, 0.3, math.nan)], stop="error", error="ValueError: no"),
        _rows("div", 0, [(0, 0.1, 3.0), (1, 0.2, math.inf)], stop="diverged"),
        _rows("div", 1, [(0, 0.1, 3.0), (1, 0.2, math.inf)], stop="diverged"),
    ))
    frame["sad_deg"] = 1.0
    summary = cell_summary(frame, ["sad_deg"]).set_index("solver")
    a = summary.loc["a"]
    assert a["seeds"] == 2
    assert a["loss"] == pytest.approx(1.5)
    assert a["iterations"] == 15
    assert a["time_s"] == pytest.approx(np.median([2.5, 4.7]))
    assert a["time_per_iter"] == pytest.approx(np.median([2.0 / 10, 4.0 / 20]))
    assert a["stop_reasons"] == "max_iter, tol"
    assert a["errors"] == ""
    assert summary.loc["bad", "stop_reasons"] == "error"
    assert summary.loc["bad", "errors"] == "ValueError: no"
    failed = failed_cells(frame).set_index("solver")
    assert sorted(failed.index) == ["bad", "div"]
    assert failed.loc["bad", "seeds"] == "0" and failed.loc["div", "seeds"] == "0, 1"
    assert failed.loc["div", "stop_reason"] == "diverged"


def test_metric_columns_skip_per_component_and_empty_columns():
    frame = _frame(_rows("a", 0, [(0, 0.1, 1.0)]))
    frame = frame.assign(sad_deg=1.0, sad_deg_0=1.0, sad_deg_1=1.0, rmse_H=0.5, custom_3=2.0, empty=np.nan,
                         solver_name="a", threads=1)
    assert metric_columns(frame) == ["sad_deg", "rmse_H", "custom_3"]


def test_run_labels_are_the_shortest_distinct_suffixes(tmp_path):
    assert run_labels([tmp_path / "x" / "run", tmp_path / "y" / "other"]) == ["run", "other"]
    assert run_labels([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == ["x/run", "y/run"]
    with pytest.raises(UserError, match="given twice"):
        run_labels([tmp_path / "run", tmp_path / "." / "run"])

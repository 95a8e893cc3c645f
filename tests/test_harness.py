"""The harness: stopping rules, stop reasons, record schedule, isolation of failures."""

from pathlib import Path

import numpy as np
import pytest
import torch

from proxmf_bench import run_benchmark
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.start import StartingPoint, initial_factors
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.harness import Interrupted, run_cell
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.solvers.mu import MU

BAD = str(Path(__file__).parent / "plugins" / "bad_things.py")
SMALL = "synthetic[m=30,n=20,rank=3]"


@pytest.fixture(scope="module")
def bad_registry():
    return load_registry([BAD], use_entry_points=False)


def _last(frame):
    return frame.sort_values("iteration").groupby("solver").tail(1).set_index("solver")


def test_schedule_is_geometric_and_records_first_and_last(tmp_path):
    out = run_benchmark(solvers="mu", datasets=SMALL, max_iter=137, out=tmp_path)
    its = out.frame.iteration.tolist()
    assert its[0] == 0 and its[-1] == 137
    assert its[:11] == list(range(11))
    assert its == sorted(set(its))
    gaps = np.diff(its[10:-1])
    assert np.all(gaps[1:] >= gaps[:-1])  # spacing only grows
    assert len(its) < 60
    schedule = RecordSchedule()
    assert all(schedule.is_record(k) for k in its[:-1])


def test_max_time_is_respected_within_one_iteration(tmp_path, bad_registry):
    out = run_benchmark(solvers="sleepy[seconds=0.05]", datasets=SMALL, max_iter=10_000, max_time=0.3,
                        out=tmp_path, registry=bad_registry)
    last = _last(out.frame).loc["sleepy[seconds=0.05]"]
    assert last.stop_reason == "max_time"
    # stopped after the first iteration that crossed the limit: at most one step beyond it
    assert 0.3 <= last.time_s < 0.3 + 0.05 * 4
    assert 6 <= last.iteration <= 8
    assert out.frame.time_s.is_monotonic_increasing


def test_stop_reasons_and_isolation(tmp_path, bad_registry):
    out = run_benchmark(solvers="mu,exploding,crashing[after=3]", datasets=SMALL, max_iter=40,
                        out=tmp_path, registry=bad_registry)
    last = _last(out.frame)
    assert last.loc["mu", "stop_reason"] == "max_iter" and last.loc["mu", "iteration"] == 40
    assert last.loc["exploding", "stop_reason"] == "diverged"
    assert not np.isfinite(last.loc["exploding", "loss"])
    crashed = last.loc["crashing[after=3]"]
    assert crashed.stop_reason == "error" and "blew up on purpose" in crashed.error
    assert crashed.iteration == 3
    assert any("crashing" in e for e in out.errors)
    # the records a failed cell keeps still get their ground-truth metrics
    kept = out.frame[(out.frame.solver == "crashing[after=3]") & (out.frame.iteration < 3)]
    assert len(kept) == 3 and kept.sad_deg.notna().all() and kept.rmse_H.notna().all()


def test_tol_stops_when_loss_stalls(tmp_path):
    out = run_benchmark(solvers="mu", datasets=SMALL, max_iter=100_000, tol=1e-6, out=tmp_path)
    last = _last(out.frame).loc["mu"]
    assert last.stop_reason == "tol"
    assert last.iteration < 100_000
    tail = out.frame.sort_values("iteration").loss.to_numpy()[-2:]
    assert tail[0] >= tail[1]


def test_every_solver_of_a_seed_starts_from_the_same_point(tmp_path):
    out = run_benchmark(solvers="mu,mu[eps=1e-6]", datasets=SMALL, seeds=2, max_iter=2, out=tmp_path)
    first = out.frame[out.frame.iteration == 0].pivot(index="seed", columns="solver", values="loss")
    assert np.allclose(first["mu"], first["mu[eps=1e-6]"], rtol=1e-9)
    assert first.loc[0, "mu"] != first.loc[1, "mu"]


def test_grid_over_dtypes_and_seeds(tmp_path):
    out = run_benchmark(solvers="mu", datasets=SMALL, dtypes="float32,float64", seeds=2, max_iter=5, out=tmp_path)
    cells = out.frame.groupby(["dtype", "seed"]).size()
    assert len(cells) == 4
    assert out.meta["cells"] == {"total": 4, "finished": 4, "stop_reasons": {"max_iter": 4}}


def test_failed_dataset_load_is_recorded_and_grid_goes_on(tmp_path, bad_registry, monkeypatch):
    real = bad_registry.datasets["bad"].load
    calls = {"n": 0}

    def flaky(params, seed, device, dtype):
        calls["n"] += 1
        if seed == 1 and calls["n"] > 1:  # the preflight load passes, seed 1 later fails
            raise OSError("disk went away")
        return real(params, seed, device, dtype)

    spec = bad_registry.datasets["bad"]
    monkeypatch.setitem(bad_registry.datasets, "bad", type(spec)(**{**spec.__dict__, "load": flaky}))
    out = run_benchmark(solvers="mu", datasets="bad", seeds=2, max_iter=3, out=tmp_path, registry=bad_registry)
    last = out.frame.groupby("seed").tail(1).set_index("seed")
    assert last.loc[0, "stop_reason"] == "max_iter"
    assert last.loc[1, "stop_reason"] == "error" and "disk went away" in last.loc[1, "error"]


def _small_cell(registry, solver="mu"):
    (variant,) = select(SMALL, registry.datasets, registry, "dataset")
    problem = registry.get_dataset(variant.name).load(variant.params, 0, torch.device("cpu"), torch.float64)
    cell = Cell(select(solver, registry.solvers, registry, "solver")[0], variant, "cpu", "float64", 0)
    return problem, cell


def test_the_loss_at_the_shared_start_is_computed_once(bad_registry, monkeypatch):
    problem, _ = _small_cell(bad_registry)
    W0, H0 = initial_factors(problem, 0)
    start = StartingPoint(problem, W0, H0)
    expected = problem.loss(W0, H0)
    calls = []
    monkeypatch.setattr(problem, "loss", lambda W, H: calls.append(1) or expected)
    assert start.loss_at(*start.copies()) == expected
    assert start.loss_at(*start.copies()) == expected
    assert len(calls) == 1
    assert start.loss_at(W0 * 2, H0) is None
    assert start.loss_at(W0.float(), H0.float()) is None


@pytest.mark.parametrize("eps, shared", [(1e-12, True), (0.5, False)])
def test_iteration_zero_uses_the_start_loss_only_for_the_start_itself(bad_registry, eps, shared):
    """MU floors its initial factors at eps: a floor that moves them gets its own loss."""
    problem, cell = _small_cell(bad_registry, f"mu[eps={eps}]")
    W0, H0 = initial_factors(problem, 0)
    start = StartingPoint(problem, W0, H0)
    start._loss = -1.0  # a value no loss can take, to see where iteration 0's comes from
    result = run_cell(MU, cell, problem, *start.copies(), Limits(max_iter=2),
                      RecordSchedule(), start=start)
    assert result.stop_reason == "max_iter", result.error
    first = result.records[0]["loss"]
    if shared:
        assert first == -1.0
    else:
        assert first == pytest.approx(problem.loss(W0.clamp_min(eps), H0.clamp_min(eps)), rel=1e-12)


def test_an_interrupted_cell_keeps_the_metrics_of_its_records(bad_registry):
    class CtrlCAfterFour(MU):
        def step(self):
            super().step()
            if self.steps == 4:
                raise KeyboardInterrupt
            self.steps += 1

        steps = 0

    problem, cell = _small_cell(bad_registry)
    W0, H0 = initial_factors(problem, 0)
    with pytest.raises(Interrupted) as stopped:
        run_cell(CtrlCAfterFour, cell, problem, W0, H0, Limits(max_iter=50), RecordSchedule())
    records = stopped.value.result.records
    assert stopped.value.result.stop_reason == "interrupted"
    assert [rec["iteration"] for rec in records] == [0, 1, 2, 3, 4]
    assert all(np.isfinite(rec["sad_deg"]) for rec in records if np.isfinite(rec["loss"]))
    assert sum("sad_deg" in rec for rec in records) == 5

"""Worker processes and dask: the same table as a serial run; a bad cell costs that cell only."""

from pathlib import Path

import pandas as pd
import pytest

from conftest import HSI_DATA, needs_hsi
from proxmf_bench import load_results, run_benchmark
from proxmf_bench.errors import UserError
from proxmf_bench.results.table import comparable

FAULTY = str(Path(__file__).parent / "plugins" / "faulty.py")
GRID = {"solvers": "mu[eps=[1e-12,1e-6]]", "datasets": "synthetic[m=24,n=18,rank=3,noise=[0.0,0.05]]",
        "dtypes": "float32,float64", "seeds": 2, "max_iter": 25}  # 16 cells


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return run_benchmark(**GRID, out=tmp_path_factory.mktemp("serial") / "run")


def test_jobs_give_the_serial_table(serial, tmp_path):
    out = run_benchmark(**GRID, jobs=2, out=tmp_path / "run")
    assert out.meta["cells"] == serial.meta["cells"] == {"total": 16, "finished": 16, "stop_reasons": {"max_iter": 16}}
    # bit for bit: which worker ran which cells, and in what order, changes nothing
    pd.testing.assert_frame_equal(comparable(out.frame), comparable(serial.frame), check_exact=True)
    pd.testing.assert_frame_equal(load_results(out.run_dir), out.frame)
    assert len(list((out.run_dir / "cells").glob("*.parquet"))) == 16
    assert out.meta["sessions"][-1]["jobs"] == 2


def test_dask_local_cluster_gives_the_serial_table(serial, tmp_path):
    pytest.importorskip("distributed")
    from dask.distributed import LocalCluster

    # A real scheduler on TCP loopback, reached by its address like a remote one.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        out = run_benchmark(**GRID, backend="dask", scheduler=address, out=tmp_path / "run")
    assert out.meta["cells"] == serial.meta["cells"]
    pd.testing.assert_frame_equal(comparable(out.frame), comparable(serial.frame), check_exact=True)
    assert out.meta["sessions"][-1]["scheduler"] == address


def test_faults_cost_one_cell_each(tmp_path):
    out = run_benchmark(
        solvers="mu,segfault,exiting,hanging,hog", datasets="synthetic[m=24,n=18,rank=3]", max_iter=20,
        plugin_files=[FAULTY], jobs=2, cell_timeout=8, max_memory="1G", out=tmp_path / "run",
    )
    last = out.frame.groupby("solver").tail(1).set_index("solver")
    assert last.loc["mu", "stop_reason"] == "max_iter" and last.loc["mu", "iteration"] == 20
    reasons = {
        "segfault": "killed by SIGSEGV (segmentation fault) while running this cell",
        "exiting": "exited with status 3 while running this cell",
        "hanging": "no result after 8 s of wall time (--cell-timeout)",
        "hog": "can't allocate memory",
    }
    for solver, reason in reasons.items():
        assert last.loc[solver, "stop_reason"] == "error", solver
        assert reason in last.loc[solver, "error"], (solver, last.loc[solver, "error"])
    assert out.meta["cells"]["finished"] == 5
    assert len(out.errors) == 4


def test_dask_isolates_faults_too(tmp_path):
    pytest.importorskip("distributed")
    out = run_benchmark(solvers="mu,exiting", datasets="synthetic[m=24,n=18,rank=3]", max_iter=10,
                        plugin_files=[FAULTY], backend="dask", jobs=1, out=tmp_path / "run")
    last = out.frame.groupby("solver").tail(1).set_index("solver")
    assert last.loc["mu", "stop_reason"] == "max_iter"
    assert "exited with status 3" in last.loc["exiting", "error"]


@pytest.mark.parametrize(("options", "message"), [
    ({"jobs": 0}, "--jobs must be >= 1"),
    ({"jobs": 10_000}, "timings would be distorted"),
    ({"scheduler": "tcp://127.0.0.1:1"}, "--scheduler needs --backend dask"),
    ({"backend": "spark"}, "unknown backend 'spark'"),
    ({"cell_timeout": 5}, "add --jobs N"),
    ({"jobs": 1, "cell_timeout": -1}, "--cell-timeout must be > 0"),
    ({"jobs": 1, "max_memory": "lots"}, "malformed size 'lots'"),
    ({"dask_timeout": 5}, "--dask-timeout and --dashboard need --backend dask"),
    ({"backend": "dask", "dask_timeout": 0}, "--dask-timeout must be > 0"),
    ({"backend": "dask", "dask_timeout": float("nan")}, "--dask-timeout must be > 0"),
    ({"backend": "dask", "scheduler": " ", "dask_timeout": 1}, "--scheduler is empty"),
    ({"backend": "dask", "scheduler": "tcp://127.0.0.1:1", "dashboard": "127.0.0.1:8787"}, "--dashboard is for"),
])
def test_bad_execution_options_are_refused_before_running(options, message, tmp_path):
    with pytest.raises(UserError, match=message):
        run_benchmark(solvers="mu", datasets="synthetic[m=10,n=8,rank=2]", max_iter=2, out=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


@needs_hsi
def test_workers_read_dataset_files_from_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PROXMF_BENCH_DATA", raising=False)
    common = {"solvers": "mu", "datasets": "samson", "max_iter": 3, "data_dir": HSI_DATA}
    serial = run_benchmark(**common, out=tmp_path / "serial")
    isolated = run_benchmark(**common, jobs=1, out=tmp_path / "jobs")
    assert set(isolated.frame.stop_reason) == {"max_iter"}
    pd.testing.assert_frame_equal(comparable(isolated.frame), comparable(serial.frame))

"""Results: parquet round-trip with the public columns, meta.json, atomic writes, bad files."""

import json
import os

import pandas as pd
import pytest

from proxmf_bench import load_results, run_benchmark
from proxmf_bench.errors import UserError
from proxmf_bench.results.analysis import metric_columns
from proxmf_bench.results.table import COLUMNS, atomic_write_bytes, write_frame


def test_parquet_round_trip_has_every_design_column(tmp_path):
    out = run_benchmark(solvers="mu", datasets="synthetic[m=30,n=20,rank=3]", seeds=2, max_iter=10,
                        out=tmp_path / "run", command=["proxmf-bench", "run", "--solvers", "mu"])
    frame = load_results(tmp_path / "run")
    for column in COLUMNS + ("sad_deg", "rmse_H"):
        assert column in frame.columns
    pd.testing.assert_frame_equal(frame, out.frame)
    assert frame.run_id.nunique() == 1 and frame.run_id.iloc[0] == out.meta["run_id"]
    assert set(frame.seed) == {0, 1}
    assert json.loads(frame.solver_params.iloc[0]) == {"eps": 1e-12}
    assert json.loads(frame.dataset_params.iloc[0])["m"] == 30
    assert list(tmp_path.joinpath("run").iterdir()) and not list(tmp_path.joinpath("run").glob(".*tmp"))


def test_meta_json_records_the_environment(tmp_path):
    run_benchmark(solvers="mu", datasets="synthetic[m=30,n=20,rank=3]", max_iter=3, threads=1,
                  out=tmp_path, command=["proxmf-bench", "run"])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["command"] == ["proxmf-bench", "run"]
    assert meta["threads"] == 1
    for key in ("python", "torch", "numpy"):
        assert meta["versions"][key]
    assert meta["cpu"] and "gpus" in meta and "git_commit" in meta
    assert meta["peak_memory"]["rss_bytes"] > 0
    assert meta["grid"]["solvers"] == ["mu"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # not bytes: the write fails midway
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_corrupt_or_foreign_results_are_clear_errors(tmp_path):
    (tmp_path / "results.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="not a readable results file"):
        load_results(tmp_path)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "results.parquet")
    with pytest.raises(UserError, match="lacks the columns"):
        load_results(tmp_path)
    with pytest.raises(UserError, match="no results found"):
        load_results(tmp_path / "nowhere")


def test_existing_non_empty_output_dir_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="exists and is not empty"):
        run_benchmark(solvers="mu", datasets="synthetic[m=30,n=20,rank=3]", max_iter=3, out=tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_unwritable_output_is_a_clear_error_before_solving(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="exists and is not a directory"):
        run_benchmark(solvers="mu", datasets="synthetic[m=30,n=20,rank=3]", max_iter=3, out=blocker)
    with pytest.raises(UserError, match="cannot create output directory"):
        run_benchmark(solvers="mu", datasets="synthetic[m=30,n=20,rank=3]", max_iter=3, out=blocker / "sub")


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_flat_parameter_columns_match_the_json_ones(tmp_path):
    out = run_benchmark(solvers="pgm,pgm[prox_H=l1_nonneg,lam_H=0.25],fista[restart=[function,gradient]]",
                        datasets="synthetic[m=20,n=15,rank=2]", max_iter=3, out=tmp_path / "run")
    frame = load_results(tmp_path / "run")
    pd.testing.assert_frame_equal(frame, out.frame)
    on_disk = pd.read_parquet(tmp_path / "run" / "results.parquet")  # written to the file, not only on load
    assert [c for c in on_disk.columns if c.startswith("p_")] == [c for c in frame.columns if c.startswith("p_")]
    for source, prefix in (("solver_params", "p_solver_"), ("dataset_params", "p_dataset_")):
        names = {k for text in frame[source].unique() for k in json.loads(text)}
        assert {c[len(prefix):] for c in frame.columns if c.startswith(prefix)} == names
        for _, row in frame.drop_duplicates(source).iterrows():
            params = json.loads(row[source])
            for name in names:
                value = row[prefix + name]
                if name not in params:
                    assert pd.isna(value)
                elif isinstance(params[name], float):
                    assert value == pytest.approx(params[name])
                else:
                    assert value == params[name]
    assert frame["p_solver_lam_H"].dtype == "float64" and frame["p_dataset_m"].dtype == "Int64"
    assert frame["p_solver_prox_H"].dtype == "string" and frame["p_solver_backtracking"].dtype == "boolean"
    # the flat columns are neither metrics nor in the way of the public ones
    assert not any(c.startswith("p_") for c in metric_columns(frame))
    assert list(frame.columns[:len(COLUMNS)]) == list(COLUMNS)


def test_results_written_before_flat_columns_still_load(tmp_path):
    run_benchmark(solvers="mu", datasets="synthetic[m=20,n=15,rank=2]", max_iter=3, out=tmp_path / "run")
    old = pd.read_parquet(tmp_path / "run" / "results.parquet")
    old = old.drop(columns=[c for c in old.columns if c.startswith("p_")])
    write_frame(tmp_path / "old" / "results.parquet", old)
    frame = load_results(tmp_path / "old")
    assert frame["p_solver_eps"].tolist() == [1e-12] * len(frame)
    assert frame["p_dataset_m"].tolist() == [20] * len(frame)
    # a table another tool wrote, with parameters that are not JSON objects, loads without them
    write_frame(tmp_path / "foreign" / "results.parquet", old.assign(solver_params="eps=1e-12", dataset_params="[1]"))
    assert not any(c.startswith("p_") for c in load_results(tmp_path / "foreign").columns)

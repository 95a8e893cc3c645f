"""Resuming a run: finished cells kept, the rest run, a changed grid explained, damage detected."""

import json

import pandas as pd
import pytest

from proxmf_bench import load_results, run_benchmark
from proxmf_bench.cli import main
from proxmf_bench.errors import UserError
from proxmf_bench.results.table import comparable, read_frame, write_frame

GRID = {"solvers": "mu[eps=[1e-12,1e-6]]", "datasets": "synthetic[m=20,n=15,rank=3]", "seeds": 3, "max_iter": 15}


@pytest.fixture
def finished(tmp_path):
    """A complete run and its cell files, by cell id."""
    out = run_benchmark(**GRID, out=tmp_path / "run")
    cells = {c["id"]: c for c in json.loads((out.run_dir / "grid.json").read_text())["cells"]}
    return out, cells


def _cell_files(run_dir):
    return sorted((run_dir / "cells").glob("*.parquet"))


def test_each_cell_is_on_disk_and_results_are_their_union(finished):
    out, cells = finished
    files = _cell_files(out.run_dir)
    assert [f.stem for f in files] == sorted(cells)
    union = pd.concat([read_frame(f) for f in files])
    assert len(union) == len(out.frame)
    manifest = json.loads((out.run_dir / "grid.json").read_text())
    assert manifest["grid"]["seeds"] == [0, 1, 2] and manifest["run_id"] == out.meta["run_id"]


def test_resume_runs_only_missing_cells_and_rebuilds_the_same_table(finished):
    out, _ = finished
    files = _cell_files(out.run_dir)
    kept = {f: f.read_bytes() for f in files[:2]}
    for f in files[2:]:
        f.unlink()
    (out.run_dir / "results.parquet").unlink()
    (out.run_dir / "cells" / ".abc.parquet.x.tmp").write_bytes(b"half a file")  # left by a kill

    again = run_benchmark(resume=out.run_dir)
    assert again.meta["run_id"] == out.meta["run_id"]
    assert again.meta["cells"] == out.meta["cells"]
    assert again.meta["sessions"][-1]["cells_run"] == len(files) - 2
    assert all(f.read_bytes() == data for f, data in kept.items())  # untouched, not rerun
    pd.testing.assert_frame_equal(comparable(load_results(out.run_dir)), comparable(out.frame))
    assert not list(out.run_dir.rglob("*.tmp"))


def test_resume_of_a_finished_run_runs_nothing(finished):
    out, _ = finished
    again = run_benchmark(resume=out.run_dir)
    assert again.meta["sessions"][-1]["cells_run"] == 0
    pd.testing.assert_frame_equal(again.frame, out.frame)


def test_interrupted_and_damaged_cells_run_again(finished, capsys):
    out, _ = finished
    first, second = _cell_files(out.run_dir)[:2]
    frame = read_frame(first)
    frame["stop_reason"] = "interrupted"
    write_frame(first, frame)
    second.write_bytes(second.read_bytes()[:100])  # truncated

    assert main(["run", "--resume", str(out.run_dir)]) == 0
    captured = capsys.readouterr()
    assert "will run again" in captured.err and "not a readable results file" in captured.err
    final = load_results(out.run_dir)
    assert set(final.stop_reason) == {"max_iter"}
    pd.testing.assert_frame_equal(comparable(final), comparable(out.frame))


def test_a_cell_file_of_another_cell_is_not_trusted(finished):
    out, _ = finished
    first, second = _cell_files(out.run_dir)[:2]
    second.write_bytes(first.read_bytes())
    again = run_benchmark(resume=out.run_dir)
    assert any("holds a different cell" in w for w in again.warnings)
    pd.testing.assert_frame_equal(comparable(again.frame), comparable(out.frame))


@pytest.mark.parametrize(("change", "message"), [
    ({"max_iter": 30}, "max-iter 15 -> 30"),
    ({"seeds": 4}, "2 cells added (mu[eps=1e-12] on synthetic[m=20,n=15,rank=3], cpu, float64, seed 3"),
    ({"solvers": "mu[eps=1e-12]"}, "3 cells removed"),
    ({"dtypes": "float32"}, "6 cells added"),
])
def test_a_changed_grid_is_explained(finished, change, message):
    out, _ = finished
    with pytest.raises(UserError) as info:
        run_benchmark(resume=out.run_dir, **change)
    assert message in str(info.value)
    assert "changed since it started" in str(info.value) and "\n" not in str(info.value)


def test_same_grid_spelled_differently_resumes(finished):
    out, _ = finished
    again = run_benchmark(resume=out.run_dir, solvers="mu[eps=[1e-6,1e-12]]", seeds=3, max_iter=15)
    assert again.meta["sessions"][-1]["cells_run"] == 0


def test_resume_needs_a_run_directory(tmp_path, finished):
    out, _ = finished
    with pytest.raises(UserError, match="nothing to resume at .*: no grid.json"):
        run_benchmark(resume=tmp_path / "nowhere")
    (out.run_dir / "grid.json").write_text("{ not json")
    with pytest.raises(UserError, match="grid.json is corrupt: not valid JSON"):
        run_benchmark(resume=out.run_dir)
    (out.run_dir / "grid.json").write_text('{"format": 2, "cells": []}')
    with pytest.raises(UserError, match="not a proxmf-bench grid manifest"):
        run_benchmark(resume=out.run_dir)
    with pytest.raises(UserError, match="name different directories"):
        run_benchmark(resume=out.run_dir, out=tmp_path / "elsewhere")


def test_a_new_run_in_a_run_directory_points_to_resume(finished):
    out, _ = finished
    with pytest.raises(UserError, match="to continue that run: proxmf-bench run --resume"):
        run_benchmark(**GRID, out=out.run_dir)


def test_corrupt_results_are_never_silently_misread(finished):
    out, _ = finished
    path = out.run_dir / "results.parquet"
    data = path.read_bytes()
    positions = range(4, len(data) - 8, max(1, len(data) // 150))
    caught = 0
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x20
        path.write_bytes(bytes(damaged))
        try:
            frame = load_results(out.run_dir)
        except UserError as exc:
            assert str(path) in str(exc)
            caught += 1
        else:  # an undetected flip must have changed nothing (padding, unused statistics)
            pd.testing.assert_frame_equal(frame, out.frame)
    assert caught > len(positions) // 2
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable results file"):
        load_results(out.run_dir)

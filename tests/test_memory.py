"""Memory of dense runs: one copy of Y per process, the Yt policy, no float64 intermediates.

Peak memory is measured in fresh processes (the peak resident set size the kernel reports),
never timed; sizes are chosen so that the old behaviour (a float64 build, a cached copy, a
row-major Y^T) would exceed each bound several times over.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from proxmf_bench.datasets import synthetic
from proxmf_bench.errors import UserError
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem import problem as problem_module
from proxmf_bench.problem.integrity import ProblemSeal
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import StartingPoint, initial_factors
from proxmf_bench.run import shared
from proxmf_bench.run.cells import Cell, CellResult
from proxmf_bench.run.runner import run_benchmark

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
F32_EPS = torch.finfo(torch.float32).eps
CPU = torch.device("cpu")


def _memory_table():
    spec = importlib.util.spec_from_file_location("bench_script_memory_table", BENCHMARKS / "memory_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("given", [
    {"m": "300", "n": "200", "rank": "6"},
    {"m": "250", "n": "310", "rank": "5", "noise": "0.3", "sparsity": "0.5", "abundances": "dirichlet"},
    {"m": "120", "n": "90", "rank": "4", "cond": "50", "noise": "0"},
])
def test_float32_generation_is_the_float64_generation_rounded(given, monkeypatch):
    monkeypatch.setattr(synthetic, "_NOISE_BLOCK", 1000)  # many row blocks
    params = synthetic.resolve(given)
    p64 = synthetic.make_synthetic(params, 5, torch.float64)
    p32 = synthetic.make_synthetic(params, 5, torch.float32)
    assert p32.Y.dtype == torch.float32 and p64.Y.dtype == torch.float64
    torch.testing.assert_close(p32.Y, p64.Y.to(torch.float32), rtol=F32_EPS, atol=0.0)
    torch.testing.assert_close(p32.W_true, p64.W_true, rtol=0.0, atol=0.0)
    torch.testing.assert_close(p32.H_true, p64.H_true, rtol=0.0, atol=0.0)
    assert p32.metadata["snr_db"] == pytest.approx(p64.metadata["snr_db"], rel=1e-12)


def test_noise_level_comes_from_the_factors_as_the_full_product_would_give(monkeypatch):
    params = synthetic.resolve({"m": "400", "n": "300", "rank": "7"})
    p = synthetic.make_synthetic(params, 2)
    WH = p.W_true @ p.H_true  # the independent definition: the full product in float64
    power, std = synthetic._product_moments(p.W_true, p.H_true)
    assert power == pytest.approx(float(WH.pow(2).sum()), rel=1e-12)
    assert std == pytest.approx(float(WH.std()), rel=1e-10)


# Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
_GENERATE = """\
import sys, torch
from pathlib import Path
from proxmf_bench.datasets import synthetic

def hwm():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

synthetic._NOISE_BLOCK = 1 << 15
dtype = getattr(torch, sys.argv[1])
synthetic.make_synthetic(synthetic.resolve({"m": "40", "n": "30", "rank": "3"}), 0, dtype)  # warm-up
Path("/proc/self/clear_refs").write_text("5")
before = hwm()
problem = synthetic.make_synthetic(synthetic.resolve({"m": "4000", "n": "3000", "rank": "10"}), 0, dtype)
print(hwm() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_float32_generation_allocates_one_float32_y_and_no_float64_copy():
    grown = int(subprocess.run([sys.executable, "-c", _GENERATE, "float32"], capture_output=True, text=True,
                               check=True).stdout.split()[-1])
    data = 4 * 4000 * 3000  # 46 MiB; a float64 product alone would be twice that
    assert 0.9 * data <= grown <= 1.25 * data


@pytest.mark.slow
def test_a_run_peaks_at_one_copy_of_y_above_the_interpreter(tmp_path):
    table = _memory_table()

    def peak(size, k):
        command = table.run_command(size, 10, "float32", 2, None, ["--yt=skip"], tmp_path / f"r{k}")
        return table.measure(command)[0]

    base = peak("50x40", 0)
    grown = peak("8000x6000", 1) - base
    data = 4 * 8000 * 6000  # 183 MiB: the old preflight alone held 4 float64 copies of it
    assert grown <= 1.5 * data


def _problem(m=30, n=20, r=3, policy="auto", dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    Y = torch.rand(m, n, generator=gen, dtype=dtype)
    return Problem(Y=Y, rank=r, yt=policy)


def test_yt_policies_and_the_auto_threshold(monkeypatch):
    kept, skipped = _problem(policy="keep"), _problem(policy="skip")
    assert kept.holds_Yt_copy and kept.data_layout == "Y+Yt" and kept.Yt.is_contiguous()
    assert kept.Yt.untyped_storage().data_ptr() != kept.Y.untyped_storage().data_ptr()
    assert not skipped.holds_Yt_copy and skipped.data_layout == "Y"
    assert skipped.Yt.untyped_storage().data_ptr() == skipped.Y.untyped_storage().data_ptr()
    torch.testing.assert_close(kept.Yt, skipped.Yt, rtol=0.0, atol=0.0)
    monkeypatch.setattr(problem_module, "YT_AUTO_MAX_BYTES", 30 * 20 * 8)
    assert _problem().holds_Yt_copy and not _problem(m=31).holds_Yt_copy
    assert _problem(m=31, dtype=torch.float32).holds_Yt_copy  # the bytes count, not the entries
    with pytest.raises(UserError, match="unknown Yt policy 'never'"):
        _problem(policy="never")


def test_setting_the_policy_drops_a_copy_made_under_another():
    problem = _problem(policy="keep")
    assert problem.Yt.is_contiguous()
    problem.set_yt_policy("skip")
    assert problem.Yt.untyped_storage().data_ptr() == problem.Y.untyped_storage().data_ptr()
    assert problem.to("cpu", torch.float32).yt == "skip"


def test_a_write_through_the_yt_view_is_a_change_of_y():
    problem = _problem(policy="skip")
    W0, H0 = initial_factors(problem, 0)
    start = StartingPoint(problem, W0, H0)
    seal = ProblemSeal(problem, start)
    assert seal.changed(problem, start) == []
    problem.Yt[2, 1] += 1.0
    assert seal.changed(problem, start) == ["Y"]


SOLVERS = "mu,pgm,fista,adaprox,pgm_torch,hals,nalmu"


def test_yt_kept_or_skipped_gives_the_same_iterates(tmp_path):
    runs = {policy: run_benchmark(solvers=SOLVERS, datasets="synthetic[m=60,n=45,rank=4]", max_iter=15,
                                  yt=policy, out=tmp_path / policy).frame for policy in ("keep", "skip")}
    assert set(runs["keep"].data_layout) == {"Y+Yt"} and set(runs["skip"].data_layout) == {"Y"}
    assert (runs["keep"].stop_reason == "max_iter").all()
    keys = ["solver", "iteration"]
    kept, skipped = (runs[p].set_index(keys).sort_index().loss for p in ("keep", "skip"))
    assert list(kept.index) == list(skipped.index) and kept.index.get_level_values(0).nunique() >= 7
    torch.testing.assert_close(torch.tensor(skipped.to_numpy()), torch.tensor(kept.to_numpy()), rtol=1e-10, atol=0.0)


def test_auto_policy_is_recorded_per_problem_size(tmp_path, monkeypatch):
    monkeypatch.setattr(problem_module, "YT_AUTO_MAX_BYTES", 50 * 40 * 8)
    out = run_benchmark(solvers="mu", datasets="synthetic[m=50,n=40,rank=3],synthetic[m=51,n=40,rank=3]",
                        max_iter=2, out=tmp_path)
    layout = out.frame.groupby("dataset").data_layout.first()
    assert layout.to_dict() == {"synthetic[m=50,n=40,rank=3]": "Y+Yt", "synthetic[m=51,n=40,rank=3]": "Y"}
    assert out.meta["grid"]["yt"] == "auto"


def test_bad_yt_option_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--yt must be one of auto, keep, skip"):
        run_benchmark(solvers="mu", datasets="synthetic", yt="sometimes", out=tmp_path / "r")


def _recording(registry, monkeypatch, calls):
    spec = registry.datasets["synthetic"]
    real = spec.load

    def load(params, seed, device, dtype):
        calls.append((str(device), dtype))
        return real(params, seed, device, dtype)

    monkeypatch.setitem(registry.datasets, "synthetic", type(spec)(**{**spec.__dict__, "load": load}))


def test_the_check_before_the_run_loads_in_the_runs_smallest_dtype_and_builds_once(registry, tmp_path, monkeypatch):
    calls, built = [], []
    _recording(registry, monkeypatch, calls)
    real_make = synthetic.make_synthetic
    monkeypatch.setattr(synthetic, "make_synthetic", lambda *a: built.append(a[2]) or real_make(*a))
    out = run_benchmark(solvers="mu,pgm", datasets="synthetic[m=40,n=30,rank=3]", dtypes="float32,float64",
                        max_iter=2, out=tmp_path, registry=registry)
    assert calls[0] == ("cpu", torch.float32)
    assert out.meta["cells"]["finished"] == 4
    # the check's float32 problem was kept for the first cell (float32), then forgotten
    assert built == [torch.float32, torch.float64]
    assert synthetic._kept is None
    # float64 cells first: the kept float32 problem is dropped at their first load, not held
    calls.clear(), built.clear()
    run_benchmark(solvers="mu", datasets="synthetic[m=40,n=30,rank=3]", dtypes="float64,float32", max_iter=2,
                  out=tmp_path / "b", registry=registry)
    assert calls[0] == ("cpu", torch.float32) and built == [torch.float32, torch.float64, torch.float32]
    assert synthetic._kept is None


def test_a_plain_load_keeps_nothing(registry):
    spec = registry.get_dataset("synthetic")
    spec.load(spec.resolve({"m": "40", "n": "30", "rank": "3"}, registry), 0, torch.device("cpu"), torch.float32)
    assert synthetic._kept is None


def _cpu_cell(registry, dataset="synthetic[m=40,n=30,rank=3]", solver="mu", seed=0, dtype="float32", device="cpu"):
    (variant,) = select(dataset, registry.datasets, registry, "dataset")
    return Cell(select(solver, registry.solvers, registry, "solver")[0], variant, device, dtype, seed)


def _mapped_files() -> dict[int, str]:
    """Start address -> file of this process's file mappings (``/proc/self/maps``)."""
    out = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6:
            start, end = (int(v, 16) for v in fields[0].split("-"))
            out[(start, end)] = fields[5]
    return out


@pytest.mark.skipif(not shared.sharing_available() or not Path("/proc/self/maps").exists(),
                    reason="needs fcntl locks and /proc/self/maps")
def test_workers_map_one_file_per_problem_built_once(registry, tmp_path):
    spec = registry.get_dataset("synthetic")
    cell = _cpu_cell(registry)
    built = []

    def build():
        built.append(1)
        return spec.load(cell.dataset.params, cell.seed, torch.device("cpu"), torch.float32)

    first, second = shared.SharedProblems(tmp_path), shared.SharedProblems(tmp_path)  # two workers
    a, b = first.load(cell, build), second.load(cell, build)
    assert built == [1]
    reference = build()
    for p in (a, b):
        torch.testing.assert_close(p.Y, reference.Y, rtol=0.0, atol=0.0)
        torch.testing.assert_close(p.W_true, reference.W_true, rtol=0.0, atol=0.0)
        assert (p.rank, p.name, p.metadata) == (reference.rank, reference.name, reference.metadata)
        address = p.Y.data_ptr()
        (path,) = [f for (lo, hi), f in _mapped_files().items() if lo <= address < hi]
        assert Path(path) == tmp_path / f"{shared.problem_key(cell)}.npy"
    a.Y[0, 0] += 1.0  # copy-on-write: the file and the other worker's problem are unchanged
    torch.testing.assert_close(b.Y, reference.Y, rtol=0.0, atol=0.0)
    torch.testing.assert_close(second.load(cell, build).Y, reference.Y, rtol=0.0, atol=0.0)
    gpu_cell = _cpu_cell(registry, device="cuda")
    assert shared.problem_key(gpu_cell) == shared.problem_key(cell)
    assert shared.problem_key(_cpu_cell(registry, solver="pgm")) == shared.problem_key(cell)
    assert shared.problem_key(_cpu_cell(registry, seed=1)) != shared.problem_key(cell)


def test_the_main_process_deletes_a_problems_files_after_its_last_cell(registry, tmp_path):
    cells = [_cpu_cell(registry, solver=s) for s in ("mu", "pgm")] + [_cpu_cell(registry, seed=1)]
    with shared.SharedDir(cells, [0, 1, 2]) as directory:
        root = directory.path
        spec = registry.get_dataset("synthetic")
        for cell in (cells[0], cells[2]):
            shared.SharedProblems(root).load(cell, lambda c=cell: spec.load(c.dataset.params, c.seed, CPU,
                                                                            torch.float32))
        assert len(list(root.glob("*.npy"))) == 2
        directory.finished(CellResult(cells[0]))
        assert len(list(root.glob("*.npy"))) == 2  # pgm still needs it
        directory.finished(CellResult(cells[1]))
        assert [p.stem for p in root.glob("*.npy")] == [shared.problem_key(cells[2])]
    assert not root.exists()


@pytest.mark.skipif(not shared.sharing_available(), reason="needs fcntl locks")
def test_jobs_share_the_data_and_give_the_serial_iterates(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    grid = {"solvers": "mu,pgm,hals", "datasets": "synthetic[m=50,n=40,rank=3]", "dtypes": "float32", "max_iter": 5}
    serial = run_benchmark(**grid, out=tmp_path / "serial").frame
    parallel = run_benchmark(**grid, jobs=2, out=tmp_path / "jobs").frame
    keys = ["solver", "iteration"]
    a, b = (f.set_index(keys).sort_index().loss for f in (serial, parallel))
    assert list(a.index) == list(b.index)
    torch.testing.assert_close(torch.tensor(b.to_numpy()), torch.tensor(a.to_numpy()), rtol=1e-6, atol=0.0)
    assert list((tmp_path / "tmp").iterdir()) == []  # the shared directory is gone


def test_a_file_that_fits_only_in_float32_runs_in_float32(tmp_path, monkeypatch):
    import numpy as np

    from proxmf_bench.datasets import file as file_dataset
    from proxmf_bench.errors import DataError
    from proxmf_bench.run import resources

    path = tmp_path / "y.npy"
    np.save(path, np.random.default_rng(0).random((400, 300), dtype=np.float32))
    need32 = file_dataset._BLOCK + 4 * 400 * 300
    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": need32 + 300 * 400)
    dataset = f"file[path={path},rank=3]"
    out = run_benchmark(solvers="mu", datasets=dataset, dtypes="float32,float64", max_iter=2, out=tmp_path / "a")
    last = out.frame.groupby("dtype").tail(1).set_index("dtype")
    assert last.loc["float32", "stop_reason"] == "max_iter"
    assert last.loc["float64", "stop_reason"] == "error" and "more than the" in last.loc["float64", "error"]
    with pytest.raises(DataError, match=r"in float64\) needs about"):
        run_benchmark(solvers="mu", datasets=dataset, dtypes="float64", max_iter=2, out=tmp_path / "b")


def test_a_problem_that_cannot_be_written_stays_the_workers_own(registry, tmp_path):
    spec = registry.get_dataset("synthetic")
    cell = _cpu_cell(registry)
    built = spec.load(cell.dataset.params, cell.seed, CPU, torch.float32)
    built.metadata = {"handle": lambda: None}  # a plugin's metadata that pickle cannot hold
    problem = shared.SharedProblems(tmp_path).load(cell, lambda: built)
    assert problem is built
    assert [p.suffix for p in tmp_path.iterdir()] == [".lock"]

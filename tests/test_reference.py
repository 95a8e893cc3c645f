"""Reference optima: exact where the problem is convex, below every solver elsewhere, cached once
(also under concurrent writers), and an f* that adding a run does not move."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import nnls

from proxmf_bench import run_benchmark
from proxmf_bench.cli import main
from proxmf_bench.plugin.data_files import ENV_CACHE
from proxmf_bench.plugin.selection import select
from proxmf_bench.results.analysis import combine_runs, f_star_table, known_optima, load_runs
from proxmf_bench.run import reference
from proxmf_bench.run.cells import Cell
from proxmf_bench.run.reference import Budget, cached_reference, grid_references

SMALL = "synthetic[m=30,n=20,rank=3]"
NNLS = "nnls_toy[n=60]"


def _cells(registry, solvers, datasets, seeds=(0,), dtype="float64"):
    solver_variants = select(solvers, registry.solvers, registry, "solver")
    data_variants = select(datasets, registry.datasets, registry, "dataset")
    return [Cell(s, d, "cpu", dtype, seed) for d in data_variants for seed in seeds for s in solver_variants]


def _load(registry, cell):
    return registry.get_dataset(cell.dataset.name).load(cell.dataset.params, cell.seed, torch.device("cpu"),
                                                        getattr(torch, cell.dtype))


def test_nnls_reference_is_the_exact_optimum(registry, tmp_path):
    (ref,) = grid_references(registry, _cells(registry, "mu", NNLS), cache_dir=tmp_path)
    problem = _load(registry, _cells(registry, "mu", NNLS)[0])
    W, Y = problem.W_true.numpy(), problem.Y.numpy()
    H = np.column_stack([nnls(W, Y[:, j])[0] for j in range(Y.shape[1])])
    assert ref.f_star == pytest.approx(0.5 * np.linalg.norm(Y - W @ H) ** 2, rel=1e-12)
    assert ref.converged and "nnls" in ref.method
    # a tight-tolerance projected gradient run agrees with it
    assert reference.solve_reference(registry, problem, reference.Objective(H=None), problem.W_true,
                                     torch.ones_like(problem.H_true), Budget())["f_star"] >= ref.f_star * (1 - 1e-12)


def test_the_penalised_nnls_reference_is_below_what_any_solver_reaches(registry, tmp_path):
    selection = "pgm[prox_H=l1_nonneg,lam_H=0.5]"
    (ref,) = grid_references(registry, _cells(registry, selection, NNLS), cache_dir=tmp_path)
    out = run_benchmark(solvers=f"{selection},fista[restart=function,prox_H=l1_nonneg,lam_H=0.5]", datasets=NNLS,
                        max_iter=3000, out=tmp_path / "run", registry=registry)
    best = out.frame.objective.min()
    assert ref.converged
    assert ref.f_star <= best * (1 + 1e-9) and best <= ref.f_star * (1 + 1e-6)  # a convex problem: all meet


def test_nmf_reference_converges_below_the_solvers_from_the_shared_start(registry, tmp_path):
    cells = _cells(registry, "mu,pgm", SMALL)
    (ref,) = grid_references(registry, cells, cache_dir=tmp_path)
    assert ref.converged and ref.problem == cells[0].problem_key("nonneg")
    out = run_benchmark(solvers="mu,pgm,fista[restart=function]", datasets=SMALL, max_iter=2000,
                        out=tmp_path / "run", registry=registry)
    assert out.frame.objective.min() >= ref.f_star * (1 - 1e-8)


def test_references_are_cached_and_computed_again_for_other_data(registry, tmp_path, monkeypatch):
    cells = _cells(registry, "mu", SMALL)
    first = grid_references(registry, cells, cache_dir=tmp_path)[0]
    assert not first.cached and len(list((tmp_path / "references").glob("*.json"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(reference, "solve_reference", fail)
    again = grid_references(registry, cells, cache_dir=tmp_path)[0]
    assert again.cached and again.f_star == first.f_star
    other = _load(registry, cells[0]).to("cpu", torch.float64, copy=True)
    other.Y[0, 0] += 1.0  # the same problem key, other data: the cache entry does not apply
    with pytest.raises(AssertionError, match="computed again"):
        cached_reference(registry, other, 0, first.problem, reference.Objective(), cache=tmp_path)


def test_an_unconverged_entry_is_computed_again_with_a_larger_budget(registry, tmp_path):
    cells = _cells(registry, "mu", SMALL)
    short = grid_references(registry, cells, Budget(max_iter=3), cache_dir=tmp_path)[0]
    assert not short.converged
    assert grid_references(registry, cells, Budget(max_iter=3), cache_dir=tmp_path)[0].cached
    longer = grid_references(registry, cells, cache_dir=tmp_path)[0]
    assert not longer.cached and longer.converged and longer.f_star < short.f_star


CONCURRENT = textwrap.dedent("""
    import fcntl, sys, torch
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.run import reference
    from proxmf_bench.run.cells import Cell

    registry = load_registry(use_entry_points=False)
    computed = []
    real = reference.solve_reference
    reference.solve_reference = lambda *a, **k: computed.append(1) or real(*a, **k)
    (solver,) = select("mu", registry.solvers, registry, "solver")
    (data,) = select(sys.argv[1], registry.datasets, registry, "dataset")
    print("waiting", flush=True)
    (ref,) = reference.grid_references(registry, [Cell(solver, data, "cpu", "float64", 0)], cache_dir=sys.argv[2])
    print("computed" if computed else "cached", repr(ref.f_star), flush=True)
""")


def test_two_processes_asking_for_one_reference_compute_it_once(registry, tmp_path):
    """Both processes find no entry and wait on the lock this test holds; once it is released
    one computes, the other reads its result (without the lock both would compute)."""
    import fcntl

    cells = _cells(registry, "mu", SMALL)
    problem = _load(registry, cells[0])
    key = cells[0].problem_key("nonneg")
    root = tmp_path / "references"
    root.mkdir()
    lock = reference._entry_path(root, key, reference.data_fingerprint(problem).digest).with_suffix(".lock")
    script = tmp_path / "ask.py"
    script.write_text(CONCURRENT)
    with open(lock, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        procs = [subprocess.Popen([sys.executable, str(script), SMALL, str(tmp_path)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        for proc in procs:
            assert proc.stdout.readline().strip() == "waiting"
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    outputs = [proc.communicate(timeout=300)[0].split() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sorted(o[0] for o in outputs) == ["cached", "computed"]
    assert outputs[0][1] == outputs[1][1]
    assert len(list(root.glob("*.json"))) == 1


def test_f_star_does_not_move_when_a_run_is_added(registry, tmp_path, capsys):
    first, second = tmp_path / "mu", tmp_path / "pgm"
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--seeds", "2", "--max-iter", "30", "--out",
                 str(first), "--reference"]) == 0
    assert main(["run", "--solvers", "pgm,fista", "--datasets", SMALL, "--seeds", "2", "--max-iter", "60",
                 "--out", str(second)]) == 0
    capsys.readouterr()

    def table(*dirs):
        runs = load_runs(dirs)
        return f_star_table(combine_runs(runs), known_optima(runs)).set_index("problem").sort_index()

    alone, both = table(first), table(first, second)
    pd.testing.assert_series_equal(alone["f_star"], both["f_star"])
    assert both["f_star_source"].str.startswith("reference (").all()
    # without the reference, adding the second run moves f* (its solvers get lower)
    runs = load_runs([first, second])
    moved = f_star_table(combine_runs(runs)).set_index("problem").sort_index()
    plain = f_star_table(combine_runs(load_runs([first]))).set_index("problem").sort_index()
    assert (moved["f_star"] < plain["f_star"]).all()
    saved = pd.read_csv(first / "reference.csv")
    assert set(saved["problem"]) == set(alone.index)


def test_a_run_below_the_reference_replaces_it_and_says_so(registry, tmp_path):
    out = run_benchmark(solvers="mu", datasets=SMALL, max_iter=20, out=tmp_path / "run", registry=registry)
    frame = combine_runs(load_runs([out.run_dir]))
    key = frame["problem"].iloc[0]
    best = frame["objective"].min()
    known = pd.DataFrame({"problem": [key], "f_star": [best * 1.01], "source": ["file x.csv"]})
    chosen = f_star_table(frame, known).iloc[0]
    assert chosen.f_star == best and chosen.f_star_source == "best run: mu"
    # within the accuracy of the recorded objective a known optimum is kept
    known["f_star"] = best * (1 + 1e-12)
    assert f_star_table(frame, known).iloc[0].f_star_source == "file x.csv"


def test_user_f_star_files_are_used_and_bad_ones_refused(registry, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--max-iter", "10", "--out", str(run_dir)]) == 0
    key = pd.read_parquet(run_dir / "results.parquet")["problem"].iloc[0]
    good = tmp_path / "f.csv"
    pd.DataFrame({"problem": [key], "f_star": [0.001]}).to_csv(good, index=False)
    assert main(["report", str(run_dir), "--f-star", str(good), "--formats", "png"]) == 0
    table = pd.read_csv(run_dir / "figures" / "f_star.csv")
    assert table["f_star"].iloc[0] == 0.001 and table["f_star_source"].iloc[0] == "file f.csv"
    capsys.readouterr()
    bad = {
        "missing.csv": None,
        "nocolumn.csv": "problem,value\nx,1\n",
        "nan.csv": pd.DataFrame({"problem": [key], "f_star": ["abc"]}).to_csv(index=False),
        "unquoted.csv": f"problem,f_star\n{key},1\n",
        "twice.csv": "problem,f_star\nx,1\nx,2\n",
        "empty.csv": "problem,f_star\n",
        "binary.csv": b"\xff\xfe\x00",
        "nokey.csv": "problem,f_star\n ,1\n",
    }
    messages = {"missing.csv": "does not exist", "nocolumn.csv": "lacks the column(s) f_star",
                "nan.csv": "row 2: f_star 'abc' is not a finite number", "twice.csv": "two different values",
                "empty.csv": "has no rows", "binary.csv": "cannot be read", "unquoted.csv": "quote them",
                "nokey.csv": "row 2: the problem key is empty"}
    for name, content in bad.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        for argv in (["report", str(run_dir), "--f-star", str(path)],
                     ["run", "--solvers", "mu", "--datasets", SMALL, "--f-star", str(path), "--out",
                      str(tmp_path / f"never-{name}")]):
            assert main(argv) == 2, (name, argv[0])
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and messages[name] in err, err
        assert not (tmp_path / f"never-{name}").exists()


def test_run_f_star_is_saved_with_the_run(registry, tmp_path, capsys):
    first = tmp_path / "a"
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--max-iter", "5", "--out", str(first)]) == 0
    key = pd.read_parquet(first / "results.parquet")["problem"].iloc[0]
    table = tmp_path / "known.csv"
    pd.DataFrame({"problem": [key], "f_star": [0.5], "source": ["a paper"]}).to_csv(table, index=False)
    second = tmp_path / "b"
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--max-iter", "5", "--out", str(second),
                 "--f-star", str(table), "--report"]) == 0
    assert pd.read_csv(second / "known_f_star.csv")["source"].tolist() == ["a paper"]
    assert "a paper" in (second / "report.html").read_text()


def test_reference_command(registry, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    out = tmp_path / "f.csv"
    assert main(["reference", "--solvers", "mu,pgm[prox_H=unity]", "--datasets", NNLS, "--seeds", "0,2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("exact NNLS") == 2 and printed.count("no reference: prox unity") == 2
    assert "computed in" in printed
    table = pd.read_csv(out)
    assert len(table) == 2 and table["source"].str.startswith("reference (exact NNLS").all()
    assert main(["reference", "--solvers", "mu", "--datasets", NNLS, "--seeds", "0,2"]) == 0
    assert capsys.readouterr().out.count("cached") == 2
    run_dir = tmp_path / "run"
    assert main(["run", "--solvers", "mu", "--datasets", NNLS, "--seeds", "2", "--max-iter", "5",
                 "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["reference", str(run_dir)]) == 0
    assert f"-> {run_dir / 'reference.csv'}" in capsys.readouterr().out
    assert len(pd.read_csv(run_dir / "reference.csv")) == 2
    assert main(["reference", str(run_dir), "--seeds", "3"]) == 2
    assert "give either RUN_DIR or a selection" in capsys.readouterr().err


def test_reference_cache_location_follows_the_environment(monkeypatch, tmp_path):
    from proxmf_bench.plugin.data_files import cache_dir, default_data_dir

    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(ENV_CACHE)
    assert cache_dir() == default_data_dir()


def test_saved_references_do_not_need_the_cache(registry, tmp_path, monkeypatch):
    """The run directory keeps its f*: a report works after the cache is gone."""
    cache = tmp_path / "cache"
    out = run_benchmark(solvers="mu", datasets=SMALL, max_iter=10, out=tmp_path / "run", registry=registry,
                        reference=True, cache_dir=cache)
    import shutil

    shutil.rmtree(cache)
    runs = load_runs([out.run_dir])
    table = f_star_table(combine_runs(runs), known_optima(runs))
    assert table["f_star_source"].str.startswith("reference").all()
    assert Path(out.run_dir / "reference.csv").is_file()

"""The side-by-side scripts in benchmarks/: what they compute, checked on known inputs."""

import importlib.util
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peer_table = _script("peer_table")
floor = _script("compare_mu_floor")
floor_table = _script("floor_table")


def _rows(solver, name, points):
    return [{"dataset": "p", "solver": solver, "solver_name": name, "iteration": k, "time_s": t,
             "loss": f, "stop_reason": "max_iter"} for k, t, f in points]


def test_peer_table_per_iteration_time_and_time_to_target():
    frame = pd.DataFrame(
        _rows("fast", "fast", [(0, 0.5, 10.0), (10, 1.5, 2.0), (20, 2.5, 1.00005), (40, 4.5, 1.0)])
        + _rows("slow", "peer_x", [(0, 0.0, 10.0), (100, 3.0, 1.5), (200, 9.0, 1.2)])
    )
    summary = peer_table.summarise(frame, peers=["peer_x"]).set_index("solver")
    fast, slow = summary.loc["fast"], summary.loc["slow"]
    assert fast.ms_per_iter == pytest.approx(100.0)  # (4.5 - 2.5) / (40 - 20): set-up excluded
    assert fast["time_0.0001"] == 2.5 and fast["iters_0.0001"] == 20  # 5e-5 <= 1e-4
    assert fast["time_1e-06"] == 4.5 and fast["iters_1e-06"] == 40  # f* itself
    assert fast["sets_f_star_1e-06"] and not fast["sets_f_star_0.0001"]
    assert fast.kind == "proxmf-bench" and slow.kind == "peer"
    assert slow.ms_per_iter == pytest.approx(60.0)
    assert math.isnan(slow["time_0.0001"]) and slow.best_subopt == pytest.approx(0.2)
    table = peer_table.to_markdown(summary.reset_index(), max_time=5)
    lines = [line for line in table.splitlines() if line.startswith("| `")]
    assert lines[0].startswith("| `fast` | proxmf-bench | 100.000 | 2.500 s | 20 | 4.500 s (its last point, which sets f*) | 40 |")
    assert "not reached in 5 s (best 2.0e-01)" in lines[1]


def test_peer_table_quick_mode_runs(capsys):
    peer_table.main(["--quick"])
    table = capsys.readouterr().out
    assert "f* is the lowest loss any solver reached" in table
    solvers = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert {"mu", "hals", "fista[restart=function]"} <= solvers


def test_peer_table_rewrites_only_its_block():
    text = "intro\n<!-- peer-table -->\nold\n<!-- /peer-table -->\noutro\n"
    assert peer_table.replace_block(text, "new") == "intro\n<!-- peer-table -->\nnew\n<!-- /peer-table -->\noutro\n"
    with pytest.raises(SystemExit, match="no <!-- peer-table -->"):
        peer_table.replace_block("no markers", "new")


@pytest.mark.parametrize("name", ["mu", "pgm", "fista", "adaprox"])
def test_floor_loops_compute_the_solvers_iterates(name):
    """The bare loop is a fair floor only if it does the solver's own arithmetic."""
    gen = torch.Generator().manual_seed(0)
    problem = Problem(Y=torch.rand(30, 20, generator=gen, dtype=torch.float64), rank=4)
    _assert_bare_loop_computes_the_solvers_iterates(name, problem, floor_table.BARE[name])


def _assert_bare_loop_computes_the_solvers_iterates(name, problem, bare_loop, iters=25):
    registry = load_registry(use_entry_points=False)
    W0, H0 = initial_factors(problem, 0)
    solver = registry.get_solver(name).factory(**floor.select_solver(registry, name).params)
    solver.init(problem, W0.clone(), H0.clone())
    for _ in range(iters):
        solver.step()
    W, H = solver.factors()
    Wb, Hb = bare_loop(problem.Y, problem.Yt, W0.clone(), H0.clone(), iters)
    assert torch.allclose(W, Wb, rtol=1e-9, atol=1e-12) and torch.allclose(H, Hb, rtol=1e-9, atol=1e-12)


def test_floor_table_quick_mode_runs(capsys):
    floor_table.main(["--quick", "--repeats", "1", "--solvers", "mu,nalmu,pgm,fista,adaprox,pgm_torch,hals,sklearn_mu"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("tiny")]
    solvers = {row[2] for row in rows}
    assert {"mu", "nalmu", "pgm", "fista", "adaprox", "pgm_torch", "hals", "sklearn_mu"} <= solvers
    assert len(rows) == 2 * len(solvers)  # float64 and float32
    for row in rows:
        if row[3].startswith("bare"):
            floor_ms, solver_ms, ratio = float(row[5]), float(row[6]), float(row[7])
            # the times are printed to 0.001 ms and the ratio to 0.01, each rounded on its own
            rounding = 0.0005 / floor_ms + 0.0005 / solver_ms
            assert floor_ms > 0 and solver_ms > 0
            expected = solver_ms / floor_ms
            assert abs(ratio - expected) <= (rounding + 0.001) * expected + 0.0051
    route_lines = [line for line in out.splitlines() if "two optimizer rounds alone" in line]
    assert len(route_lines) == 2  # one per dtype
    for line in route_lines:
        route, direct, added = (float(x) for x in re.findall(r"([0-9.]+) ms", line)[:3])
        assert route > 0 and direct > 0 and added == pytest.approx(route - direct, abs=0.0011)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_gpu_check_without_cuda_says_so_and_exits_0():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=BENCHMARKS.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no CUDA device") and "nothing to check" in out.stdout


continuation = _script("peer_continuation")


def test_peer_continuation_script_compares_chained_calls_with_one_call(registry):
    pytest.importorskip("sklearn")
    variant = floor.select_solver(registry, "sklearn_cd")
    factory = registry.get_solver("sklearn_cd").factory
    problem = Problem(Y=torch.rand(30, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64), rank=3)
    W0, H0 = initial_factors(problem, 0)
    assert continuation.same_iterates(factory(**variant.params), problem, W0, H0, 30) == 0.0
    assert continuation.restarted(factory).continues is False and factory.continues is True


sparse_table = _script("sparse_table")


@pytest.mark.parametrize("name", ["mu", "fista"])
def test_sparse_bare_loops_compute_the_solvers_iterates(name):
    """The sparse bare loops do the solvers' arithmetic, with sparse products."""
    gen = torch.Generator().manual_seed(0)
    dense = torch.rand(40, 30, generator=gen, dtype=torch.float64)
    dense[dense < 0.7] = 0.0
    problem = Problem(Y=dense.to_sparse_csr(), rank=4)
    _assert_bare_loop_computes_the_solvers_iterates(name, problem, sparse_table.BARE[name])


def test_sparse_table_quick_mode_runs(capsys):
    sparse_table.main(["--quick"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| mu") or line.startswith("| fista")}
    assert {"mu", "fista", "fista[restart=function]"} <= set(rows)
    peak = rows["mu"]  # the last table's row for mu: CSR, bound, peak rise, ratio
    assert float(peak[1]) > 2 * float(peak[0]) > 0 and float(peak[2]) > 0


ASV_PREFIXES = ("time_", "timeraw_", "mem_", "peakmem_", "track_")


def test_scripts_define_nothing_that_asv_would_take_for_a_benchmark():
    """asv collects every ``time_*``/``track_*``/... function of every module under benchmarks/,
    so a side-by-side script's helper with such a name breaks ``asv check`` (and CI)."""
    import ast

    found = []
    for path in sorted(BENCHMARKS.glob("*.py")):
        if path.name.startswith(("bench_", "pr_")):
            continue
        for node in ast.parse(path.read_text()).body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []
            if isinstance(node, ast.ClassDef):
                names += [f"{node.name}.{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)]
            found += [f"{path.name}:{n}" for n in names if n.split(".")[-1].startswith(ASV_PREFIXES)]
    assert not found

"""Fuzzing: random command lines and random small matrices. No traceback, no half-written file.

Seeded, so a failure reproduces; the failing argument list is in the assertion message.
"""

import os
import random
from pathlib import Path

import pytest
import torch

from proxmf_bench import load_results
from proxmf_bench.cli import main
from proxmf_bench.errors import DataError
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.run.cells import STOP_REASONS, Cell, Limits
from proxmf_bench.run.harness import run_cell
from proxmf_bench.run.schedule import RecordSchedule

PLUGINS = Path(__file__).parent / "plugins"

VALUES = {
    "--solvers": ["mu", "mu[eps=1e-8]", "mu[eps=[1e-12,1e-6]]", "all", "mux", "mu[", "mu[eps=x]", "mu[eps=-1]",
                  "mu,,mu", "sleepy[seconds=0]", "crashing[after=1]", "exploding", "[]", "mu[eps=\udcff]", ""],
    "--datasets": ["synthetic[m=8,n=6,rank=2]", "synthetic[m=5,n=4,rank=4,noise=0]", "synthetic[m=0]",
                   "synthetic[rank=0]", "synthetic[m=3,n=3,rank=4]", "bad[kind=nan]", "bad[kind=negative]",
                   "bad[kind=ok,rank=2]", "synthetic[m=99999999,n=99999999]", "nope", "synthetic[noise=-1]",
                   "synthetic[m=6,n=5,rank=2,abundances=dirichlet,sparsity=0.5]", "synthetic[abundances=uniform]"],
    "--devices": ["cpu", "cpu,cpu", "cuda:7", "tpu", "", ",", "cpu,"],
    "--dtypes": ["float32", "float64", "float32,float64", "float16", "", "int"],
    "--seeds": ["1", "2", "0", "-3", "x", "1e3", "99999999999"],
    "--max-iter": ["0", "1", "3", "-1", "abc", "", "2.5"],
    "--max-time": ["0.01", "0", "-1", "nan", "inf", "x", "1e-9"],
    "--tol": ["1e-3", "-1", "nan", "inf", "0"],
    "--threads": ["1", "0", "-1", "100000", "x"],
    "--jobs": ["0", "-1", "x", "100000"],
    "--backend": ["local", "spark", ""],
    "--scheduler": ["tcp://127.0.0.1:1", "garbage"],
    "--cell-timeout": ["-1", "0", "x", "5"],
    "--max-memory": ["1G", "lots", "-1", "0"],
    "--plugin": [str(PLUGINS / "bad_things.py"), str(PLUGINS / "broken_import.py"), "/nonexistent/p.py",
                 str(PLUGINS / "hostile_data.py"), "\udcff.py"],
}
SWITCHES = ["--strict-plugins", "--help", "--nope", "-x", "\udcff", "--", "--max-iter"]
COMMANDS = ["run"] * 8 + ["list", "plugins", "nope", "", "--version"]


def random_argv(rng: random.Random, workdir: Path, case: int) -> list[str]:
    command = rng.choice(COMMANDS)
    argv = [command] if command else []
    if command == "run":
        # Always bounded work: a tiny iteration count and a dataset from the list.
        argv += ["--max-iter", rng.choice(["0", "1", "2", "3", "3", "x"]),
                 "--datasets", rng.choice(VALUES["--datasets"])]
    for flag in rng.sample(sorted(VALUES), rng.randint(0, 4)):
        argv += [flag, rng.choice(VALUES[flag])]
    if rng.random() < 0.15:
        argv.append(rng.choice(SWITCHES))
    if rng.random() < 0.2:
        argv += ["--resume", rng.choice([str(workdir / "nothing-here"), str(workdir / "a-file"), str(workdir)])]
    if command == "run" and rng.random() < 0.9:
        argv += ["--out", str(workdir / f"out-{case}")]
    rng.shuffle(argv[1:]) if rng.random() < 0.1 else None
    return argv


def test_random_command_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a run without --out writes results/ here
    (tmp_path / "a-file").write_text("not a run directory")
    rng = random.Random(20240917)
    statuses = {}
    for case in range(300):
        argv = random_argv(rng, tmp_path, case)
        try:
            status = main(argv)
        except SystemExit as exit_info:  # argparse: --help, --version, unknown flags
            status = exit_info.code
        captured = capsys.readouterr()
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (0, 2), (argv, status, captured.err)
        assert "Traceback" not in captured.err and "internal error" not in captured.err, (argv, captured.err)
        if status == 2 and captured.err.startswith("proxmf-bench: error: "):
            assert captured.err.count("\n") == 1, (argv, captured.err)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    runs = [p.parent for p in tmp_path.rglob("results.parquet")]
    for run_dir in runs:
        load_results(run_dir)  # every results file left behind is complete and verifies
    assert statuses.get(0, 0) >= 20 and statuses.get(2, 0) >= 150 and runs  # both paths exercised


def random_problem_input(rng: random.Random):
    """Keyword arguments for Problem: mostly small valid matrices, often broken in one way."""
    m, n = (rng.randint(0, 6) if rng.random() < 0.1 else rng.randint(2, 6) for _ in range(2))
    odd_dtypes = [torch.int64, torch.bool, torch.complex64, torch.float16]
    dtype = rng.choice(odd_dtypes) if rng.random() < 0.15 else rng.choice([torch.float32, torch.float64])
    Y = torch.rand(m, n, generator=torch.Generator().manual_seed(rng.randrange(1 << 30)), dtype=torch.float64)
    shape_change = rng.random()
    if shape_change < 0.05:
        Y = Y.reshape(-1)
    elif shape_change < 0.1:
        Y = Y[None]
    if Y.numel() and rng.random() < 0.2:
        Y.view(-1)[rng.randrange(Y.numel())] = rng.choice([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e300])
    Y = Y.to(dtype)
    rank = rng.choice([1, 2]) if rng.random() < 0.7 else rng.choice([0, 3, 7, -1, 2.0, True, "2"])
    return {"Y": Y, "rank": rank, "nonneg": rng.random() < 0.8}


def test_random_matrices_at_the_harness():
    registry = load_registry(use_entry_points=False)
    mu = registry.get_solver("mu")
    rng = random.Random(7)
    outcomes = {"refused": 0, "ran": 0}
    for _ in range(250):
        kwargs = random_problem_input(rng)
        try:
            problem = Problem(**kwargs)
        except DataError as exc:
            assert "\n" not in str(exc) and str(exc)
            outcomes["refused"] += 1
            continue
        W0, H0 = initial_factors(problem, 0)
        dataset = Variant("matrix", {}, "matrix")
        cell = Cell(Variant("mu", {"eps": 1e-12}, "mu"), dataset, "cpu", str(problem.dtype).removeprefix("torch."), 0)
        result = run_cell(mu.factory, cell, problem, W0, H0, Limits(max_iter=3), RecordSchedule())
        assert result.stop_reason in STOP_REASONS and result.records
        assert result.stop_reason != "error", result.error
        outcomes["ran"] += 1
    assert outcomes["refused"] > 50 and outcomes["ran"] > 30


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_as_results_files_are_refused(tmp_path, seed):
    from proxmf_bench.errors import UserError

    rng = random.Random(seed)
    data = b"PAR1" + os.urandom(rng.randint(0, 2000)) + rng.choice([b"PAR1", b""])
    (tmp_path / "results.parquet").write_bytes(data)
    with pytest.raises(UserError, match="not a readable results file"):
        load_results(tmp_path)

"""Hostile and bad input: each case is one clear line on stderr, exit status 2, nothing written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxmf_bench.cli import main
from proxmf_bench.errors import DataError, UserError
from proxmf_bench.run.resources import check_memory, format_bytes, parse_size

PLUGINS = Path(__file__).parent / "plugins"
HOSTILE = str(PLUGINS / "hostile_data.py")
TINY = "synthetic[m=10,n=8,rank=2]"


def run_cli(args, tmp_path, capsys):
    """``proxmf-bench run`` in-process with ``args``; returns (status, stderr)."""
    code = main(["run", "--plugin", HOSTILE, "--solvers", "mu", "--datasets", TINY, "--max-iter", "2",
                 "--out", str(tmp_path / "run"), *args])
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, message):
    assert code == 2, err
    assert err.startswith("proxmf-bench: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert "Traceback" not in err


DATA_CASES = [
    ("inf", "1 NaN or infinite entries"),
    ("int", "data must be floating point, got torch.int64"),
    ("empty", "data is empty (shape 0 x 5)"),
    ("vector", "data must be a 2-D matrix, got shape (5,)"),
    ("cube", "data must be a 2-D matrix, got shape (1, 6, 5)"),
    ("rank0", "rank must be a positive integer, got 0"),
    ("rank_big", "rank 6 is larger than min(m, n) = 5"),
    ("not_tensor", "data must be a torch.Tensor, got list"),
    ("crash", "dataset hostile[kind=crash]: loading failed: ZeroDivisionError: plugin bug"),
]


@pytest.mark.parametrize(("kind", "message"), DATA_CASES)
def test_bad_data_is_refused_before_any_solver_runs(kind, message, tmp_path, capsys):
    code, err = run_cli(["--datasets", f"hostile[kind={kind}]"], tmp_path, capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("dataset", "message"), [
    ("synthetic[m=0]", "parameter m=0 is below its minimum 1"),
    ("synthetic[rank=0]", "parameter rank=0 is below its minimum 1"),
    ("synthetic[m=10,n=8,rank=9]", "rank 9 is larger than min(m, n) = 8"),
    ("synthetic[m=x]", "parameter m='x' is not a valid int"),
    ("synthetic[m=2.5]", "parameter m='2.5' is not a valid int"),
    ("synthetic[m=10000000,n=10000000]", "needs about 727.6 TiB of memory on cpu, more than the"),
    ("synthetic[m=" + "9" * 40 + "]", "of memory on cpu, more than the"),
    ("synthetiq", "unknown dataset 'synthetiq'; did you mean 'synthetic'?"),
])
def test_bad_dataset_parameters(dataset, message, tmp_path, capsys):
    code, err = run_cli(["--datasets", dataset], tmp_path, capsys)
    assert_one_line_error(code, err, message)


MALFORMED = [
    ("mu[", "unbalanced '['"),
    ("mu]", "unbalanced ']'"),
    ("[", "unbalanced '['"),
    ("mu[eps=1]x", "expected name[key=value,...]"),
    ("mu[=1]", "expected key=value"),
    ("mu[eps=]", "expected key=value"),
    ("mu[eps=[]]", "empty list for 'eps'"),
    ("mu,,mu", "empty item in solver selection"),
    ("mu[eps=1,eps=2]", "parameter 'eps' given twice"),
    ("1mu", "'1mu' is not a valid name"),
    ("mu[eps=[[1]]]", "parameter eps='[1]' is not a valid float"),
    ("mu[eps=nan]", "parameter eps must not be NaN"),
    ("mu[eps=-1]", "below its minimum"),
    ("mu[epz=1]", "unknown parameter 'epz'; did you mean 'eps'?"),
    (" ", "empty solver selection"),
    ("mu[eps=\udcff]", "not valid UTF-8"),
    ("mux", "unknown solver 'mux'; did you mean 'mu'?"),
]


@pytest.mark.parametrize(("selection", "message"), MALFORMED)
def test_malformed_variant_strings(selection, message, tmp_path, capsys):
    code, err = run_cli(["--solvers", selection], tmp_path, capsys)
    assert_one_line_error(code, err, message)


def test_enormous_grid_is_refused_before_it_is_built(tmp_path, capsys):
    code, err = run_cli(["--seeds", "1000000000"], tmp_path, capsys)
    assert_one_line_error(code, err, "--seeds 1000000000 is more than the 1,000,000 seeds a grid may have")
    code, err = run_cli(["--seeds", "0-999999999"], tmp_path, capsys)
    assert_one_line_error(code, err, "gives more than 1,000,000 seeds")
    code, err = run_cli(["--seeds", "1000000", "--dtypes", "float32,float64"], tmp_path, capsys)
    assert_one_line_error(code, err, "the grid has 2,000,000 cells")


def test_absurd_thread_count_is_refused(tmp_path, capsys):
    code, err = run_cli(["--threads", "100000"], tmp_path, capsys)
    assert_one_line_error(code, err, "--threads 100000 is more than the")


@pytest.mark.parametrize("name", ["with space", "new\nline", "ünïcödé-結果", "-leading-dash", "semi;colon$HOME"])
def test_odd_output_paths_work(name, tmp_path, capsys):
    code, err = run_cli(["--out", str(tmp_path / name / "run")], tmp_path, capsys)
    assert code == 0, err
    assert (tmp_path / name / "run" / "results.parquet").is_file()


def test_non_utf8_paths(tmp_path, capsys):
    raw = os.fsencode(tmp_path) + b"/caf\xe9-\xff"
    out = os.fsdecode(raw)  # how Python hands such a command-line argument to us
    code, err = run_cli(["--out", out], tmp_path, capsys)
    assert code == 0, err
    assert os.path.isfile(raw + b"/results.parquet")
    code = main(["run", "--resume", os.fsdecode(raw + b"-missing")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "nothing to resume at")
    assert "\\udcff" in err  # shown escaped, not a UnicodeEncodeError


def test_non_utf8_path_printed_by_a_real_process(tmp_path):
    out = os.fsencode(tmp_path) + b"/r\xff"
    proc = subprocess.run([sys.executable, "-m", "proxmf_bench.cli", "run", "--solvers", "mu", "--datasets", TINY,
                           "--max-iter", "2", "--out", out], capture_output=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert os.path.isfile(out + b"/results.parquet")


def test_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = run_cli(["--out", str(tmp_path / "file")], tmp_path, capsys)
    assert_one_line_error(code, err, "exists and is not a directory")


def test_plugin_files_with_odd_paths_or_content(tmp_path, capsys):
    latin1 = tmp_path / "latin1_plugin.py"
    latin1.write_bytes(b"# caf\xe9\nx = '\xff'\n")
    missing = os.fsdecode(os.fsencode(tmp_path) + b"/missing-\xff.py")
    code = main(["plugins", "--plugin", str(latin1), "--plugin", missing])
    captured = capsys.readouterr()
    assert code == 0
    assert "SyntaxError" in captured.out and "plugin file not found" in captured.out
    assert "Traceback" not in captured.err
    code = main(["run", "--strict-plugins", "--plugin", missing, "--solvers", "mu", "--datasets", TINY])
    assert_one_line_error(code, capsys.readouterr().err, "plugin file not found")


def test_memory_check_and_sizes():
    with pytest.raises(DataError, match="needs about 1.0 PiB of memory on cpu"):
        check_memory(1 << 50, "a test matrix")
    check_memory(1024, "a tiny matrix")
    assert parse_size("512M") == 512 << 20 and parse_size("1.5GiB") == 3 << 29 and parse_size("2048") == 2048
    for bad in ("", "G", "-1G", "1X", "0"):
        with pytest.raises(UserError):
            parse_size(bad)
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(10) == "10 B"


# ---- bad input that used to get through: one line, exit 2, nothing on disk ------------------


@pytest.mark.parametrize(("size", "message"), [
    ("99999999999999999999999999999T", "is larger than any memory (at most 8 EiB)"),
    ("9" * 400 + "T", "is larger than any memory"),
    ("9" * 5000, "is larger than any memory"),
    ("1K", "--max-memory 1K is below what a worker process can run with: give 512.0 MiB to 8 EiB"),
    ("100M", "is below what a worker process can run with"),
])
def test_absurd_memory_limits(size, message, tmp_path, capsys):
    code, err = run_cli(["--jobs", "1", "--max-memory", size], tmp_path, capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--solvers", "mu[eps=inf]"], "solver mu: parameter eps='inf' is not a finite number"),
    (["--solvers", "mu[eps=1e400]"], "solver mu: parameter eps='1e400' is not a finite number"),
    (["--solvers", "mu[eps=[1e-9,Infinity]]"], "parameter eps='Infinity' is not a finite number"),
    (["--solvers", "pgm[prox_H=l1,lam_H=-inf]"], "solver pgm: prox l1 on H: parameter lam='-inf' is not a finite"),
    (["--datasets", "synthetic[m=10,n=8,rank=2,noise=inf]"], "parameter noise='inf' is not a finite number"),
    (["--max-time", "inf"], "--max-time must be finite, got inf"),
    (["--max-time", "1e400"], "--max-time must be finite, got inf"),
    (["--tol", "1e400"], "--tol must be finite, got inf"),
    (["--jobs", "1", "--cell-timeout", "inf"], "--cell-timeout must be > 0 seconds and finite, got inf"),
])
def test_non_finite_numbers_are_refused(args, message, tmp_path, capsys):
    code, err = run_cli(args, tmp_path, capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "run").exists()


def test_a_parameter_that_allows_infinity_is_written_as_standard_json(tmp_path):
    from proxmf_bench import Param, SolverSpec, load_results, run_benchmark
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.solvers.mu import MU

    class CappedMU(MU):
        def __init__(self, cap=float("inf"), eps=1e-12):
            super().__init__(eps=eps)

    registry = load_registry(use_entry_points=False)
    registry.solvers["capped"] = SolverSpec(name="capped", factory=CappedMU, params=(
        Param("cap", float("inf"), float, allow_infinite=True), Param("eps", 1e-12, float, low=0)))
    out = run_benchmark(solvers="capped[cap=[inf,-1e400,2]]", datasets=TINY, max_iter=3, registry=registry,
                        out=tmp_path / "run")

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))

    params = [strict(p)["cap"] for p in load_results(out.run_dir).drop_duplicates("solver").solver_params]
    assert params == ["inf", "-inf", 2.0]
    for name in ("grid.json", "meta.json"):
        strict((out.run_dir / name).read_text())


def test_an_output_path_longer_than_the_file_system_allows(tmp_path, capsys):
    long = tmp_path / ("x" * 300) / "run"
    code, err = run_cli(["--out", str(long)], tmp_path, capsys)
    assert_one_line_error(code, err, "cannot use output directory")
    assert "File name too long" in err
    assert list(tmp_path.iterdir()) == []
    deep = tmp_path / "/".join(["y" * 200] * 25)  # every name fits, the whole path does not
    code, err = run_cli(["--out", str(deep)], tmp_path, capsys)
    assert_one_line_error(code, err, "name too long")
    assert list(tmp_path.iterdir()) == []
    code = main(["run", "--resume", str(long)])
    assert_one_line_error(code, capsys.readouterr().err, "name too long")

"""The command line: help, summaries, and one-line errors with exit status 2 for bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from proxmf_bench.cli import main

BAD = str(Path(__file__).parent / "plugins" / "bad_things.py")
SMALL = "synthetic[m=30,n=20,rank=3]"


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["plugins"], ["reference"]])
def test_help_explains(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: proxmf-bench" in capsys.readouterr().out


def test_run_help_documents_selection_syntax(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--solvers", "--datasets", "--devices", "--dtypes", "--seeds", "--max-iter", "--max-time",
                 "--tol", "--threads", "--out", "--plugin", "--strict-plugins", "--debug", "name[key=value",
                 "--repeat", "--reference", "--f-star", "a range 10-19", "no cap when --max-time"):
        assert flag in " ".join(out.split())


def test_run_prints_summary_and_writes_results(tmp_path, capsys):
    assert main(["run", "--solvers", "mu", "--datasets", SMALL, "--max-iter", "10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "max_iter" in out and f"-> {tmp_path}" in out
    assert (tmp_path / "results.parquet").is_file() and (tmp_path / "meta.json").is_file()


def test_list_shows_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mu  - " in out and "eps=1e-12 (float" in out and "synthetic" in out and "nonneg" in out


BAD_INPUTS = [
    (["--solvers", "mux"], "unknown solver 'mux'; did you mean 'mu'?"),
    (["--datasets", "synthetik"], "unknown dataset 'synthetik'; did you mean 'synthetic'?"),
    (["--solvers", "mu[eps=1"], "unbalanced '['"),
    (["--solvers", "mu[eps]"], "expected key=value"),
    (["--datasets", "synthetic[m=5,n=8,rank=6]"], "rank 6 is larger than min(m, n) = 5"),
    (["--datasets", "bad[kind=negative]"], "negative entries"),
    (["--datasets", "bad[kind=nan]"], "NaN or infinite"),
    (["--dtypes", "float16"], "unknown dtype 'float16'"),
    (["--devices", "tpu"], "unknown device 'tpu'"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--max-time", "-1"], "--max-time must be > 0"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((["--devices", "cuda"], "CUDA is not available"))


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_error_exit_2(args, message, tmp_path, capsys):
    argv = ["run", "--plugin", BAD, "--solvers", "mu", "--datasets", SMALL, "--max-iter", "3",
            "--out", str(tmp_path / "run")]
    code = main(argv + args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("proxmf-bench: error: ")
    assert not (tmp_path / "run").exists()  # nothing ran


def test_debug_shows_traceback():
    proc = subprocess.run([sys.executable, "-m", "proxmf_bench.cli", "run", "--solvers", "nope", "--debug"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "unknown solver 'nope'" in proc.stderr


def test_error_without_debug_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "proxmf_bench.cli", "run", "--solvers", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_all_solvers_on_default_datasets_out_of_the_box(tmp_path, capsys):
    assert main(["run", "--solvers", "all", "--out", str(tmp_path)]) == 0
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "results.parquet")
    from proxmf_bench.plugin.registry import load_registry

    assert set(frame.solver_name) == set(load_registry().solvers)
    assert set(frame.stop_reason) == {"max_iter"}

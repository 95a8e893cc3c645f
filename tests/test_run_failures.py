"""A run that failed says so: exit status 3, plugin code that tries to leave the process, and
solvers that modify the problem data in place. Real processes, real files."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import needs_hsi
from proxmf_bench import load_results, run_benchmark
from proxmf_bench.cli import EXIT_CELL_ERRORS, main
from proxmf_bench.results.table import comparable

PLUGINS = Path(__file__).parent / "plugins"
BAD = str(PLUGINS / "bad_things.py")
ROGUE = str(PLUGINS / "rogue.py")
TINY = "synthetic[m=20,n=15,rank=3]"


def cli(*args, env=None):
    """``proxmf-bench`` in a process of its own: (status, stdout, stderr)."""
    env = {**os.environ, **(env or {})}
    env.pop("PROXMF_BENCH_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-m", "proxmf_bench.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _last(frame):
    return frame.sort_values("iteration", kind="stable").groupby("solver", sort=False).tail(1).set_index("solver")


# ---- exit status --------------------------------------------------------------------------


def test_a_cell_in_error_gives_status_3_after_writing_everything(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", "--plugin", BAD, "--solvers", "mu,crashing", "--datasets", TINY,
                               "--max-iter", "5", "--out", str(out))
    assert code == EXIT_CELL_ERRORS == 3, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line == (f"proxmf-bench: 1 of 2 cells ended in error (exit status 3): crashing on {TINY} "
                         f"(cpu, float64, seed 0)")
    assert "Traceback" not in stderr
    frame = load_results(out)
    assert _last(frame).loc["crashing", "stop_reason"] == "error"
    assert json.loads((out / "meta.json").read_text())["cells"]["finished"] == 2


def test_allow_errors_keeps_status_0(tmp_path, capsys):
    code = main(["run", "--plugin", BAD, "--solvers", "mu,crashing", "--datasets", TINY, "--max-iter", "5",
                 "--out", str(tmp_path / "run"), "--allow-errors"])
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    assert stderr.strip().splitlines()[-1].startswith("proxmf-bench: 1 of 2 cells ended in error (--allow-errors")


def test_a_run_without_errors_exits_0_even_with_a_diverged_cell(tmp_path, capsys):
    assert main(["run", "--plugin", BAD, "--solvers", "mu,exploding", "--datasets", TINY, "--max-iter", "5",
                 "--out", str(tmp_path / "run")]) == 0
    assert "ended in error" not in capsys.readouterr().err


def test_many_failures_stay_one_line_naming_the_first(tmp_path, capsys):
    code = main(["run", "--plugin", BAD, "--solvers", "crashing[after=[0,1,2,3,4]]", "--datasets", TINY,
                 "--seeds", "2", "--max-iter", "6", "--out", str(tmp_path / "run")])
    assert code == 3
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("proxmf-bench: 10 of 10 cells ended in error (exit status 3): "
                                f"crashing[after=0] on {TINY} (cpu, float64, seed 0); ")
    assert last_line.endswith("; and 7 more")


def test_errors_of_an_earlier_session_still_fail_the_resumed_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--plugin", BAD, "--solvers", "mu,crashing", "--datasets", TINY, "--max-iter", "5",
                 "--out", str(out)]) == 3
    assert main(["run", "--plugin", BAD, "--resume", str(out)]) == 3
    assert "1 of 2 cells ended in error" in capsys.readouterr().err


def test_the_exit_status_is_documented(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "--allow-errors" in help_text and "3 the run" in " ".join(help_text.split())
    import proxmf_bench.cli as cli_module

    assert "3 ``run`` finished but some cells ended in ``error``" in " ".join(cli_module.__doc__.split())
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "--allow-errors" in readme and "exit status 3" in readme


# ---- plugin code that tries to leave the process (serial mode) ---------------------------


@pytest.mark.parametrize(("how", "reason"), [
    ("exit", "the solver tried to exit the process (SystemExit: 3 at rogue.py"),
    ("systemexit", "the solver tried to exit the process (SystemExit: bye at rogue.py"),
    ("keyboard", "the solver raised KeyboardInterrupt at rogue.py"),
])
def test_a_solver_that_exits_fails_its_cell_and_the_grid_goes_on(how, reason, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--plugin", ROGUE, "--solvers", f"mu,quitter[how={how}],mu[eps=1e-9]", "--datasets", TINY,
            "--max-iter", "5", "--out", str(out)]
    if how == "exit":  # in a process of its own: it does not exit with the solver's status
        code, _, stderr = cli(*args)
    else:
        code, stderr = main(args), capsys.readouterr().err
    assert code == 3, stderr
    last = _last(load_results(out))
    failed = last.loc[f"quitter[how={how}]"]
    assert failed.stop_reason == "error" and reason in failed.error and failed.iteration == 1
    assert last.loc["mu[eps=1e-9]", "stop_reason"] == "max_iter"  # the cell after it ran
    assert (out / "meta.json").is_file() and "Traceback" not in stderr
    if how == "keyboard":
        assert "with no interrupt signal" in failed.error


def test_a_dataset_that_exits_for_one_seed_fails_those_cells_only(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--plugin", ROGUE, "--solvers", "mu", "--datasets", "quitting[how=[exit,systemexit,keyboard]]",
                 "--seeds", "2", "--max-iter", "4", "--out", str(out)])
    assert code == 3, capsys.readouterr().err
    frame = load_results(out)
    ends = frame.groupby(["dataset", "seed"]).tail(1).set_index(["dataset", "seed"])
    for how in ("exit", "systemexit", "keyboard"):
        assert ends.loc[(f"quitting[how={how}]", 0), "stop_reason"] == "max_iter"
        failed = ends.loc[(f"quitting[how={how}]", 1)]
        assert failed.stop_reason == "error" and failed.error.startswith("loading dataset failed: the dataset ")
    assert (out / "meta.json").is_file()


def test_a_dataset_that_exits_while_checked_is_bad_input(tmp_path, capsys):
    code = main(["run", "--plugin", ROGUE, "--solvers", "mu", "--datasets", "quitting[how=exit,seed=0]",
                 "--out", str(tmp_path / "run")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert re.fullmatch(r"proxmf-bench: error: dataset quitting\[how=exit,seed=0\]: loading failed: the dataset tried "
                        r"to exit the process \(SystemExit: 3 at rogue.py:\d+\)\n", stderr), stderr
    assert not (tmp_path / "run").exists()


def test_a_worker_tells_a_plugins_keyboard_interrupt_from_ctrl_c(tmp_path):
    out = run_benchmark(solvers="quitter[how=keyboard],mu", datasets=TINY, max_iter=4, jobs=1, plugin_files=[ROGUE],
                        out=tmp_path / "run")
    assert not out.interrupted
    last = _last(out.frame)
    assert last.loc["quitter[how=keyboard]", "stop_reason"] == "error"
    assert last.loc["mu", "stop_reason"] == "max_iter"


# ---- solvers that modify the problem data in place ---------------------------------------


GT = "synthetic[m=30,n=25,rank=3,noise=0.05]"


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """mu alone on each problem: what it must get after any solver that ran before it."""
    return run_benchmark(solvers="mu", datasets=GT, seeds=2, max_iter=30, out=tmp_path_factory.mktemp("alone") / "r")


@pytest.mark.parametrize(("mutation", "changed"), [
    ("mutating", "Y"),                                  # torch in-place ops: the version counter
    ("mutating[via=numpy]", "Y"),                       # a NumPy view: the checksum
    ("mutating[via=data]", "Y"),                        # .data has a version counter of its own
    ("mutating[via=swap]", "Y"),                        # two entries exchanged: every sum unchanged
    ("mutating[target=W_true]", "W_true"),
    ("mutating[target=H_true,via=numpy]", "H_true"),
])
@pytest.mark.parametrize("jobs", [None, 1])
def test_a_solver_that_modifies_the_problem_cannot_corrupt_the_next(alone, mutation, changed, jobs, tmp_path):
    out = run_benchmark(solvers=f"{mutation},mu", datasets=GT, seeds=2, max_iter=30, plugin_files=[ROGUE],
                        jobs=jobs, out=tmp_path / "run")
    ends = out.frame.groupby(["solver", "seed"]).tail(1)
    bad = ends[ends.solver == mutation]
    assert (bad.stop_reason == "error").all()
    assert bad.error.str.startswith(f"the solver modified the problem data in place ({changed})").all()
    mu = out.frame[out.frame.solver == "mu"].reset_index(drop=True)
    pd.testing.assert_frame_equal(comparable(mu), comparable(alone.frame))
    assert len(out.failed_cells) == 2


def test_a_dataset_that_hands_out_its_cache_cannot_be_repaired(tmp_path):
    out = run_benchmark(solvers="mutating,mu", datasets="sharing", max_iter=5, plugin_files=[ROGUE],
                        out=tmp_path / "run")
    last = _last(out.frame)
    assert last.loc["mutating", "error"].startswith("the solver modified the problem data in place (Y)")
    assert last.loc["mu", "stop_reason"] == "error"
    assert "returned the data an earlier solver modified in place" in last.loc["mu", "error"]


def test_a_well_behaved_grid_has_no_false_alarm(tmp_path):
    # every built-in solver family, a black-box peer, ground truth and fixed-W problems, float32
    out = run_benchmark(solvers="mu,pgm,fista,adaprox,nalmu,pgm_torch", datasets=f"{GT},nnls_toy[n=40]",
                        dtypes="float32,float64", max_iter=5, out=tmp_path / "run")
    assert out.failed_cells == [], out.errors
    peer = run_benchmark(solvers="sklearn_mu", datasets=GT, max_iter=5, out=tmp_path / "peer")
    assert peer.failed_cells == [], peer.errors


@needs_hsi
def test_the_issue_case_on_samson(tmp_path):
    """``--solvers "mutating,mu"`` on Samson: mu gets the SAD it gets alone."""
    mixed = run_benchmark(solvers="mutating,mu", datasets="samson", max_iter=40, plugin_files=[ROGUE],
                          out=tmp_path / "mixed")
    single = run_benchmark(solvers="mu", datasets="samson", max_iter=40, out=tmp_path / "alone")
    assert _last(mixed.frame).loc["mu", "sad_deg"] == _last(single.frame).loc["mu", "sad_deg"]
    assert _last(mixed.frame).loc["mutating", "stop_reason"] == "error"


def test_a_plugin_file_that_exits_while_imported_is_reported_not_obeyed(tmp_path, capsys):
    plugin = tmp_path / "leaving.py"
    plugin.write_text("import sys\nsys.exit(4)\n")
    assert main(["plugins", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "leaving  [FAILED]" in out and "error: SystemExit: 4 at leaving.py:2" in out

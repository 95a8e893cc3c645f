"""A run directory has one writer, cells that say under which limits they ran, runs only code
named on the command line, and refuses damage with one line. Real processes, signals, files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proxmf_bench import load_results, run_benchmark
from proxmf_bench.cli import main
from proxmf_bench.errors import UserError
from proxmf_bench.plugin.selection import Variant
from proxmf_bench.results.table import read_frame, write_frame
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.schedule import RecordSchedule
from proxmf_bench.run.store import RunStore

BAD = str(Path(__file__).parent / "plugins" / "bad_things.py")
TINY = "synthetic[m=20,n=15,rank=3]"


def _env(**extra):
    env = dict(os.environ)
    env.pop("PROXMF_BENCH_PLUGINS", None)
    return {**env, **extra}


def cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "proxmf_bench.cli", *args], capture_output=True, text=True,
                          env=env or _env(), timeout=300)
    return proc.returncode, proc.stderr


def assert_one_line_error(code, err, *parts):
    assert code == 2, err
    assert err.startswith("proxmf-bench: error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for part in parts:
        assert part in err, err


def _start_long_run(out: Path, *extra):
    """A run of slow cells in its own process, returned once its first cell is on disk."""
    proc = subprocess.Popen([sys.executable, "-m", "proxmf_bench.cli", "run", "--plugin", BAD, "--solvers",
                             "sleepy[seconds=0.02]", "--datasets", TINY, "--seeds", "200", "--max-iter", "25",
                             "--out", str(out), *extra], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("cells/*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(out.glob("cells/*.parquet")), proc.communicate()
    return proc


# ---- one writer -----------------------------------------------------------------------------


def test_a_second_run_on_an_active_run_directory_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    first = _start_long_run(out)
    try:
        for args in (["--plugin", BAD, "--resume", str(out)],
                     ["--plugin", BAD, "--solvers", "mu", "--datasets", TINY, "--max-iter", "3", "--out", str(out)]):
            code, err = cli("run", *args)
            assert_one_line_error(code, err, f"{out} is in use by another run (process {first.pid})")
    finally:
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    # the refused runs changed nothing: one session, every cell file of the one grid
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["sessions"]) == 1 and meta["grid"]["max_iter"] == 25
    assert set(load_results(out).iteration.groupby(load_results(out).seed).max()) <= set(range(26))


def test_a_run_killed_outright_leaves_a_lock_that_is_taken_over(tmp_path):
    out = tmp_path / "run"
    first = _start_long_run(out, "--jobs", "1", "--seeds", "6")
    first.kill()  # SIGKILL: no handler runs, the lock file keeps the dead run's PID
    first.wait()
    assert (out / ".lock").read_text().strip() == str(first.pid)
    code, err = cli("run", "--plugin", BAD, "--resume", str(out))  # at once, its worker may still be exiting
    assert code == 0, err
    frame = load_results(out)
    assert frame.groupby("seed").iteration.max().eq(25).all() and len(set(frame.seed)) == 6


def test_the_lock_is_not_inherited_by_child_processes(tmp_path):
    """A worker process outliving a killed run (a C call holding the GIL) must not keep its
    directory locked: the lock's descriptor is closed on exec, even with close_fds=False."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys, time
        from pathlib import Path
        from proxmf_bench.run.store import RunStore
        RunStore(Path({str(run_dir)!r})).lock()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], close_fds=False)
        print(child.pid, flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    child_pid = int(holder.stdout.readline())
    try:
        with pytest.raises(UserError, match=f"in use by another run \\(process {holder.pid}\\)"):
            RunStore(run_dir).lock()
        holder.kill()
        holder.wait()
        os.kill(child_pid, 0)  # still alive
        store = RunStore(run_dir)
        store.lock()
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())
        store.unlock()
    finally:
        os.kill(child_pid, signal.SIGKILL)
        holder.stdout.close()


def test_two_writers_in_one_process_are_refused_too(tmp_path):
    first = RunStore(tmp_path)
    first.lock()
    try:
        with pytest.raises(UserError, match=f"in use by another run \\(process {os.getpid()}\\)"):
            RunStore(tmp_path).create({"format": 2})
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
    finally:
        first.unlock()


def test_a_failed_creation_leaves_nothing_that_blocks_a_rerun(tmp_path):
    """The manifest cannot be written (a file-size limit fails the write as a full disk does)."""
    out = tmp_path / "a" / "b" / "run"
    args = ["run", "--solvers", "mu", "--datasets", TINY, "--max-iter", "3", "--out", str(out)]
    limited = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        from proxmf_bench.cli import main
        sys.exit(main({args!r}))
    """)], capture_output=True, text=True, env=_env(), timeout=300)
    assert_one_line_error(limited.returncode, limited.stderr, f"cannot create the run directory {out}: File too large")
    assert list(tmp_path.iterdir()) == []
    assert main(args) == 0
    assert (out / "results.parquet").is_file()


# ---- a cell's identity covers its limits ------------------------------------------------------


def test_a_cell_id_covers_the_stopping_limits_and_the_schedule():
    mu, data = Variant("mu", {"eps": 1e-12}, "mu"), Variant("synthetic", {"m": 5}, "synthetic")
    base = Cell(mu, data, "cpu", "float64", 0)
    others = [Cell(mu, data, "cpu", "float64", 0, limits) for limits in
              (Limits(max_iter=100), Limits(max_time=2.0), Limits(tol=1e-6))]
    others.append(Cell(mu, data, "cpu", "float64", 0, schedule=RecordSchedule(per_decade=10)))
    assert len({c.id for c in [base, *others]}) == 5
    assert Cell(mu, data, "cpu", "float64", 0, Limits(max_time=2)).id == \
        Cell(mu, data, "cpu", "float64", 0, Limits(max_time=2.0)).id


def test_resume_never_accepts_a_cell_made_under_other_limits(tmp_path):
    short = run_benchmark(solvers="mu", datasets=TINY, seeds=2, max_iter=5, out=tmp_path / "short")
    long = run_benchmark(solvers="mu", datasets=TINY, seeds=2, max_iter=50, out=tmp_path / "long")
    short_files = sorted((short.run_dir / "cells").glob("*.parquet"), key=lambda f: read_frame(f).seed[0])
    long_files = sorted((long.run_dir / "cells").glob("*.parquet"), key=lambda f: read_frame(f).seed[0])
    for src, dst in zip(short_files, long_files):  # a cell of the other run, under this run's name
        shutil.copyfile(src, dst)
    again = run_benchmark(resume=long.run_dir)
    assert len(again.warnings) == 2
    assert all("holds a different cell (made under other limits, or renamed)" in w for w in again.warnings)
    assert again.meta["sessions"][-1]["cells_run"] == 2
    assert load_results(long.run_dir).groupby("seed").iteration.max().tolist() == [50, 50]


def test_a_cell_made_with_other_threads_is_not_accepted(tmp_path):
    out = run_benchmark(solvers="mu", datasets=TINY, max_iter=5, out=tmp_path / "run")
    (path,) = (out.run_dir / "cells").glob("*.parquet")
    frame = read_frame(path)
    frame["threads"] = 2
    write_frame(path, frame, tags={"cell_id": path.stem})
    again = run_benchmark(resume=out.run_dir)
    assert again.warnings == [f"cell file {path.name} was made with 2 threads, not 1; the cell mu on {TINY} "
                              f"(cpu, float64, seed 0) will run again"]


def test_a_changed_limit_is_said_once(tmp_path):
    out = run_benchmark(solvers="mu", datasets=TINY, seeds=2, max_iter=5, out=tmp_path / "run")
    with pytest.raises(UserError) as info:
        run_benchmark(resume=out.run_dir, max_iter=6, tol=1e-3)
    assert "changed since it started: max-iter 5 -> 6, tol none -> 0.001; resume with" in str(info.value)
    assert "cells added" not in str(info.value)


def test_a_run_directory_of_the_previous_format_is_refused_clearly(tmp_path, capsys):
    out = run_benchmark(solvers="mu", datasets=TINY, max_iter=3, out=tmp_path / "run")
    manifest = json.loads((out.run_dir / "grid.json").read_text())
    manifest["format"] = 1
    del manifest["record_schedule"]
    (out.run_dir / "grid.json").write_text(json.dumps(manifest))
    assert_one_line_error(main(["run", "--resume", str(out.run_dir)]), capsys.readouterr().err,
                          "grid.json was written by an older proxmf-bench (format 1", "start a new run")


# ---- only code named on the command line runs -------------------------------------------------


def _marking_plugin(path: Path, marker: Path) -> Path:
    path.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from proxmf_bench import SolverSpec, hookimpl
        from proxmf_bench.solvers.mu import MU

        with open({str(marker)!r}, "a") as fh:  # importing this file leaves a mark
            fh.write("imported\\n")

        @hookimpl
        def proxmf_register_solvers(register):
            register(SolverSpec(name="marked_{path.stem}", factory=MU))
    """))
    return path


@pytest.mark.parametrize("via", ["--plugin", "PROXMF_BENCH_PLUGINS"])
def test_resume_loads_no_plugin_file_named_only_in_the_run_directory(via, tmp_path):
    marker = tmp_path / "marker"
    plugin = _marking_plugin(tmp_path / "plug.py", marker)
    out = tmp_path / "run"
    first = ["run", "--solvers", "marked_plug", "--datasets", TINY, "--max-iter", "3", "--out", str(out)]
    if via == "--plugin":
        code, err = cli(*first, "--plugin", str(plugin))
    else:
        code, err = cli(*first, env=_env(PROXMF_BENCH_PLUGINS=str(plugin)))
    assert code == 0 and marker.read_text() == "imported\n", err
    marker.unlink()
    (out / "results.parquet").unlink()

    code, err = cli("run", "--resume", str(out))
    assert_one_line_error(code, err, f"the run in {out} used plugin files {plugin}: pass them again with --plugin")
    assert not marker.exists()

    code, err = cli("run", "--resume", str(out), "--plugin", str(plugin))  # named again: loaded
    assert code == 0 and marker.read_text() == "imported\n", err


def test_a_plugin_file_written_into_grid_json_is_never_imported(tmp_path):
    out = run_benchmark(solvers="mu", datasets=TINY, max_iter=3, out=tmp_path / "run")
    marker = tmp_path / "marker"
    planted = [_marking_plugin(tmp_path / name, marker) for name in ("evil.py", "worse.py")]
    manifest = json.loads((out.run_dir / "grid.json").read_text())
    manifest["plugin_files"], manifest["env_files"] = [str(planted[0])], [str(planted[1])]
    (out.run_dir / "grid.json").write_text(json.dumps(manifest))
    code, err = cli("run", "--resume", str(out.run_dir))
    assert_one_line_error(code, err, f"used plugin files {planted[0]}, {planted[1]}: pass them again with --plugin")
    assert not marker.exists()


# ---- damaged run directories ----------------------------------------------------------------


def _edit_manifest(edit):
    def damage(run_dir: Path) -> None:
        manifest = json.loads((run_dir / "grid.json").read_text())
        edit(manifest)
        (run_dir / "grid.json").write_text(json.dumps(manifest))
    return damage


def _first_cell(run_dir: Path) -> Path:
    return sorted((run_dir / "cells").glob("*.parquet"))[0]


def _cell_is_a_directory(run_dir):
    path = _first_cell(run_dir)
    path.unlink()
    path.mkdir()


def _cells_is_a_file(run_dir):
    shutil.rmtree(run_dir / "cells")
    (run_dir / "cells").write_text("x")


DAMAGE = [
    ("a cell path is a directory", _cell_is_a_directory, "is not a file (a directory or a dangling link)"),
    ("cells/ is a file", _cells_is_a_file, "cells is not a directory: the run directory is damaged"),
    ("seeds is a string", _edit_manifest(lambda m: m["grid"].update(seeds="10")),
     'grid.json: seeds must be a count or a non-empty list of integers, got a string ("10")'),
    ("max_iter is null", _edit_manifest(lambda m: m["grid"].update(max_iter=None)),
     "grid.json: max_iter and max_time are both null: the run would never stop"),
    ("solvers is a number", _edit_manifest(lambda m: m["grid"].update(solvers=123)),
     "grid.json: solvers must be a selection string, got an integer (123)"),
    ("devices is a string", _edit_manifest(lambda m: m["grid"].update(devices="cpu")),
     'grid.json: devices must be a non-empty list of device names, got a string ("cpu")'),
    ("max_time is Infinity", _edit_manifest(lambda m: m["grid"].update(max_time=float("inf"))),
     "grid.json: max_time must be null or a finite number > 0"),
    ("threads is true", _edit_manifest(lambda m: m["grid"].update(threads=True)),
     "grid.json: threads must be an integer >= 1, got a boolean (true)"),
    ("the grid is a list", _edit_manifest(lambda m: m.update(grid=[1])), "grid.json: the grid is a list ([1])"),
    ("cells is a number", _edit_manifest(lambda m: m.update(cells=5)),
     "grid.json: cells must be a list of objects with an id"),
    ("plugin_files is a string", _edit_manifest(lambda m: m.update(plugin_files="x.py")),
     "grid.json: plugin_files must be a list of paths"),
    ("the record schedule is broken", _edit_manifest(lambda m: m.update(record_schedule={"dense": 0})),
     "grid.json: record_schedule must be"),
    ("grid.json is a list", lambda d: (d / "grid.json").write_text("[]"), "grid.json is not a proxmf-bench grid manifest"),
    ("grid.json is a directory", lambda d: ((d / "grid.json").unlink(), (d / "grid.json").mkdir()),
     "grid.json is a directory, not a grid manifest"),
    ("meta.json is a list", lambda d: (d / "meta.json").write_text("[1, 2]"),
     "meta.json is damaged: it holds a list, not an object; it records the earlier sessions"),
    ("meta.json is truncated", lambda d: (d / "meta.json").write_bytes((d / "meta.json").read_bytes()[:300]),
     "meta.json is damaged: not valid JSON"),
    ("meta.json lost its sessions", lambda d: (d / "meta.json").write_text('{"sessions": 3}'),
     "meta.json is damaged: its sessions are not a list of sessions"),
]


@pytest.fixture(scope="module")
def resumed_twice(tmp_path_factory):
    """A finished run directory that was resumed once (two sessions in meta.json)."""
    out = run_benchmark(solvers="mu[eps=[1e-12,1e-6]]", datasets=TINY, seeds=2, max_iter=5,
                        out=tmp_path_factory.mktemp("good") / "run")
    run_benchmark(resume=out.run_dir)
    return out.run_dir


@pytest.mark.parametrize(("what", "damage", "message"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_run_directory_is_one_line_naming_the_file(what, damage, message, resumed_twice, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(resumed_twice, run_dir)
    damage(run_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    code = main(["run", "--resume", str(run_dir)])
    assert_one_line_error(code, capsys.readouterr().err, str(run_dir), message)
    # nothing was changed: in particular a damaged meta.json keeps the record of the earlier sessions
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"} == before


def test_a_cell_file_that_is_a_directory_is_reported_by_report_too(resumed_twice, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(resumed_twice, run_dir)
    (run_dir / "results.parquet").unlink()
    (run_dir / "results.parquet").mkdir()
    assert_one_line_error(main(["report", str(run_dir)]), capsys.readouterr().err, "results.parquet")

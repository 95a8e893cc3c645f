"""dask clusters that fail, with real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

A scheduler killed mid-run, every worker killed, no worker at all, a worker that cannot
import proxmf-bench: each ends the run within ``--dask-timeout`` seconds with one line and
exit status 75, keeps every finished cell and writes results.parquet and meta.json. Cells
end when their client is killed; a cell's worker process killed from outside is
``worker_lost``. The local cluster listens on 127.0.0.1 only and serves no dashboard.
"""

import functools
import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.processes import alive as _alive
from support.processes import wait_for

from proxmf_bench import run_benchmark
from proxmf_bench.cli import EXIT_INCOMPLETE, main
from proxmf_bench.errors import UserError
from proxmf_bench.results.table import load_meta, read_frame

pytest.importorskip("distributed")

PLUGINS = Path(__file__).parent / "plugins"
LOST = str(PLUGINS / "lost_workers.py")
NO_PROJECT = str(Path(__file__).parent / "support" / "dask_preload_no_project.py")  # not a plugin
TIMEOUT = 3  # --dask-timeout of these runs
HANG_GUARD = 120.0  # seconds: a run still going after this is hung (what these tests catch)
_wait_for = functools.partial(wait_for, timeout=HANG_GUARD)
WAITING = "waiting[seconds=0.02]"
# cells in grid order: mu seed 0, waiting seed 0, mu seed 1, waiting seed 1; waiting takes 6 s
GRID = ["--solvers", f"mu,{WAITING}", "--datasets", "synthetic[m=24,n=18,rank=3]", "--seeds", "2",
        "--max-iter", "300"]


def _env(tmp_path) -> dict[str, str]:
    env = {**os.environ, "LOST_PIDS": str(tmp_path / "pids")}
    env.pop("PROXMF_BENCH_PLUGINS", None)
    return env


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes (no nanny, one thread) on 127.0.0.1."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.workers, self.processes = tmp_path, [], []
        (tmp_path / "pids").mkdir(exist_ok=True)
        self.address = ""

    def _spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=self.tmp_path, env=_env(self.tmp_path),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    def start_scheduler(self) -> str:
        path = self.tmp_path / "scheduler.json"
        path.unlink(missing_ok=True)
        self.scheduler = self._spawn("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(path))
        self.address = _wait_for(lambda: _read_address(path), "the scheduler to start")
        return self.address

    def start_workers(self, n: int, *options: str) -> None:
        for _ in range(n):
            self.workers.append(self._spawn("distributed.cli.dask_worker", self.address, "--nthreads", "1",
                                            "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", *options))

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=HANG_GUARD)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _read_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def _start_run(tmp_path, *args: str) -> subprocess.Popen:
    (tmp_path / "pids").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "proxmf_bench.cli", "run", "--plugin", LOST, *args],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cells(tmp_path, kind: str) -> list[int]:
    return [int(p.name.split("-")[1]) for p in (tmp_path / "pids").glob(f"{kind}-*")]


def _mid_run(tmp_path, out: Path) -> None:
    """Both mu cells finished (their files written) and both waiting cells running."""
    _wait_for(lambda: len(list((out / "cells").glob("*.parquet"))) >= 2 and len(_cells(tmp_path, "cell")) >= 2,
              "the grid to be half done")


def _failed_run(proc: subprocess.Popen, out: Path, words: str) -> pd.DataFrame:
    """Checks a run that the cluster stopped; the last row of each cell."""
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == EXIT_INCOMPLETE, stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr  # one line says what happened, nothing else complains
    assert errors[0].startswith("proxmf-bench: error: ") and words in errors[0], errors[0]
    assert "--dask-timeout" in errors[0] or "cannot import" in errors[0]
    assert f"--resume {out}" in errors[0] and "Traceback" not in stderr
    assert words in load_meta(out)["sessions"][-1]["failure"]
    frame = pd.read_parquet(out / "results.parquet")
    return frame.groupby(["solver", "seed"]).tail(1).set_index(["solver", "seed"])


def _half_done_run(cluster, tmp_path) -> tuple[str, subprocess.Popen, Path]:
    """A run on a scheduler with two workers, waited for until the grid is half done."""
    address = cluster.start_scheduler()
    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    out = tmp_path / "run"
    proc = _start_run(tmp_path, *GRID, "--backend", "dask", "--scheduler", address, "--dask-timeout", str(TIMEOUT),
                      "--out", str(out))
    _mid_run(tmp_path, out)
    return address, proc, out


def test_scheduler_killed_mid_run(cluster, tmp_path):
    address, proc, out = _half_done_run(cluster, tmp_path)
    cluster.scheduler.kill()
    last = _failed_run(proc, out, f"lost the connection to the dask scheduler at {address}")
    assert last.loc["mu", "stop_reason"].tolist() == ["max_iter", "max_iter"]
    assert last.loc[WAITING, "stop_reason"].tolist() == ["worker_lost", "worker_lost"]
    # the dask workers close without their scheduler, and their cells' processes with them
    for pid in _cells(tmp_path, "cell"):
        _wait_for(lambda: not _alive(pid), "the cells' worker processes to end")


def test_every_worker_killed_then_resume_on_new_workers(cluster, tmp_path):
    address, proc, out = _half_done_run(cluster, tmp_path)
    for worker in cluster.workers:
        worker.kill()
    last = _failed_run(proc, out, f"every dask worker of the scheduler at {address} is gone")
    for pid in _cells(tmp_path, "cell"):  # the cells' processes died with their dask workers
        _wait_for(lambda: not _alive(pid), "the cells' worker processes to end")
    assert last.loc["mu", "stop_reason"].tolist() == ["max_iter", "max_iter"]
    assert last.loc[WAITING, "stop_reason"].tolist() == ["worker_lost", "worker_lost"]
    finished = {p: p.read_bytes() for p in (out / "cells").glob("*.parquet") if set(read_frame(p).solver) == {"mu"}}
    assert len(finished) == 2

    cluster.start_workers(2)
    cluster.wait_for_workers(2)
    assert main(["run", "--resume", str(out), "--plugin", LOST, "--backend", "dask", "--scheduler", address]) == 0
    last = pd.read_parquet(out / "results.parquet").groupby(["solver", "seed"]).tail(1)
    assert set(last.stop_reason) == {"max_iter"} and len(last) == 4
    for path, data in finished.items():
        assert path.read_bytes() == data


def test_no_worker_at_all(cluster, tmp_path):
    address = cluster.start_scheduler()
    out = tmp_path / "run"
    proc = _start_run(tmp_path, *GRID, "--backend", "dask", "--scheduler", address, "--dask-timeout", str(TIMEOUT),
                      "--out", str(out))
    last = _failed_run(proc, out, f"no dask worker is connected to the scheduler at {address}")
    assert last.empty
    assert load_meta(out)["cells"]["finished"] == 0


def test_worker_that_cannot_import_the_project(cluster, tmp_path):
    address = cluster.start_scheduler()
    cluster.start_workers(1, "--preload", NO_PROJECT)
    cluster.wait_for_workers(1)
    out = tmp_path / "run"
    proc = _start_run(tmp_path, *GRID, "--backend", "dask", "--scheduler", address, "--dask-timeout", str(TIMEOUT),
                      "--out", str(out))
    last = _failed_run(proc, out, "cannot import proxmf-bench: ModuleNotFoundError")
    assert last.empty
    assert cluster.workers[0].poll() is None  # it was told apart before it was sent a cell


def test_cells_end_when_their_client_is_killed(cluster, tmp_path):
    address = cluster.start_scheduler()
    cluster.start_workers(1)
    cluster.wait_for_workers(1)
    proc = _start_run(tmp_path, "--solvers", "waiting[seconds=0.5]", "--datasets", "synthetic[m=24,n=18,rank=3]",
                      "--max-iter", "1000", "--backend", "dask", "--scheduler", address,
                      "--out", str(tmp_path / "run"))
    cell = _wait_for(lambda: _cells(tmp_path, "cell"), "the cell to start")[0]
    proc.kill()
    proc.communicate()
    _wait_for(lambda: not _alive(cell), "the cell's process to end after its client was killed")
    assert cluster.workers[0].poll() is None  # the dask worker itself goes on


def test_cell_process_killed_on_a_dask_worker_is_worker_lost(cluster, tmp_path):
    address = cluster.start_scheduler()
    cluster.start_workers(1)
    cluster.wait_for_workers(1)
    out = tmp_path / "run"
    proc = _start_run(tmp_path, "--solvers", f"{WAITING},mu", "--datasets", "synthetic[m=24,n=18,rank=3]",
                      "--max-iter", "300", "--backend", "dask", "--scheduler", address, "--out", str(out))
    os.kill(_wait_for(lambda: _cells(tmp_path, "cell"), "the cell to start")[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == EXIT_INCOMPLETE, stderr
    assert "1 cell(s) lost their worker process" in stderr
    last = pd.read_parquet(out / "results.parquet").groupby("solver").tail(1).set_index("solver")
    assert last.loc["mu", "stop_reason"] == "max_iter"
    assert last.loc[WAITING, "stop_reason"] == "worker_lost"
    assert "killed by SIGKILL from outside" in last.loc[WAITING, "error"]


# ---- the local cluster ------------------------------------------------------------------


def _listening(pid: int) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.append((_ip(address, width), int(port, 16)))
    return found


def _ip(hex_address: str, width: int) -> str:
    if width == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address)))
    return "::" if set(hex_address) == {"0"} else hex_address


def _serves_a_page(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):  # not an HTTP server (a dask comm port)
        return False
    finally:
        connection.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("dashboard", [False, True], ids=["default", "dashboard"])
def test_local_cluster_listens_on_loopback_only(dashboard, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    asked = ["--dashboard", f"127.0.0.1:{port}"] if dashboard else []
    proc = _start_run(tmp_path, "--solvers", "waiting[seconds=0.05]", "--datasets", "synthetic[m=24,n=18,rank=3]",
                      "--max-iter", "100", "--backend", "dask", "--jobs", "1", *asked, "--out", str(tmp_path / "run"))
    _wait_for(lambda: _cells(tmp_path, "cell"), "the cell to start")
    sockets = _listening(proc.pid)
    pages = [p for _, p in sockets if _serves_a_page(p, "/status")]
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, stderr
    assert sockets and {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    if dashboard:
        assert pages == [port] and f"dask dashboard at http://127.0.0.1:{port}/status" in stderr
    else:
        assert pages == [] and "dashboard" not in stderr


def test_empty_scheduler_address_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--solvers", "mu", "--max-iter", "2", "--backend", "dask", "--scheduler", "",
                 "--out", str(out)]) == 2
    assert "--scheduler is empty" in capsys.readouterr().err
    assert not out.exists()


def test_unreachable_scheduler_leaves_nothing_behind(tmp_path):
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "run"
    common = {"solvers": "mu", "datasets": "synthetic[m=10,n=8,rank=2]", "max_iter": 2, "out": out}
    with pytest.raises(UserError, match=f"cannot connect to the dask scheduler at tcp://127.0.0.1:{port}"):
        run_benchmark(**common, backend="dask", scheduler=f"tcp://127.0.0.1:{port}", dask_timeout=1)
    assert not out.exists()
    assert run_benchmark(**common).meta["cells"]["finished"] == 1  # the same --out works at once

"""Cells in worker processes: a crash, a hang or a memory blow-up costs one cell, not the run.

A :class:`CellWorker` is a child Python process that rebuilds the plugin registry and the
grid from a JSON payload, pins its torch thread count, flushes denormals, and then runs the
cells it is sent, one at a time, returning their records. The parent reads results as they
come and notices a dead child or one that stops answering; it records that cell and starts a
fresh worker. How the child ended decides how the cell is recorded (:func:`classify_exit`):
its own fault (a segfault, ``os._exit``) is an ``error``; a signal from outside (``kill -9``)
is ``worker_lost``, which ``--resume`` runs again. Messages are length-prefixed pickles over
the child's stdin/stdout; the child's own ``print`` output goes to stderr.

A worker dies with the thread that started it, even while it is stuck in C code that holds
the GIL: on Linux its first statement asks the kernel for ``SIGKILL`` when that thread ends
(``PR_SET_PDEATHSIG``, delivered by the kernel, no Python code involved); elsewhere a
watchdog thread polls its parent's PID.

:func:`run_local_pool` drives ``--jobs N`` workers; the dask backend runs one worker per
dask worker thread (:mod:`proxmf_bench.run.dask_backend`).
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from proxmf_bench.errors import ExecutionError, describe_exception
from proxmf_bench.run.cells import Cell, CellResult, failed_result
from proxmf_bench.run.interrupts import watch

# The parent-side code here does not import torch: a dask worker only relays cells to its
# worker processes, which import it themselves.

# How long a worker may take to import torch and load the plugins before it is given up on.
STARTUP_TIMEOUT = 300.0
# How many workers in a row may die while starting before the run stops (a broken
# environment kills them all; one killed from outside is replaced).
STARTUP_ATTEMPTS = 3
# After Ctrl-C, how long busy workers get to return the partial result of their cell.
INTERRUPT_GRACE = 5.0
# How often a blocking wait checks whether its cell is still wanted.
_POLL = 1.0

_HEADER = struct.Struct("!Q")

Outcome = tuple[list[dict[str, Any]], str, str]  # records, stop_reason, error

# Run by ``python -c`` in a new worker (argv[1] is the parent's PID) before anything else is
# imported: from here on the kernel kills this process when the thread that started it ends
# (PR_SET_PDEATHSIG = 1); then a parent that ended before the request was made is noticed.
_BOOTSTRAP = """\
import os, sys
if sys.platform.startswith("linux"):
    import ctypes, signal
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
from proxmf_bench.run.isolation import worker_entry
worker_entry()
"""

# Signals that a process never gets from a fault of its own code: somebody ended it (a user,
# a batch system's preemption or time limit, the kernel's OOM killer when the host ran out of
# memory). SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL and exit statuses are the cell's own.
LOST_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})
_SIGNAL_NOTES = {"SIGSEGV": " (segmentation fault)", "SIGABRT": " (aborted)", "SIGBUS": " (bus error)",
                 "SIGKILL": " from outside (a user, a batch system, or the kernel's OOM killer when the host "
                            "ran out of memory)",
                 "SIGTERM": " from outside"}


def default_cell_timeout(max_time: float | None) -> float | None:
    """Wall-clock limit of one cell in a worker: ``2 * max_time + 60`` s, none without ``max_time``.

    The margin covers loading the problem and evaluating the loss and metrics at record
    points, which the solver-time limit ``max_time`` does not count.
    """
    return None if max_time is None else 2.0 * max_time + 60.0


def classify_exit(returncode: int | None) -> tuple[str, str]:
    """``(stop_reason, why)`` for a cell whose worker process ended with ``returncode``.

    ``worker_lost`` when a signal of :data:`LOST_SIGNALS` killed it, ``error`` otherwise (a
    fault signal, an exit status). ``--max-memory`` limits the data segment, so a cell that
    exceeds it fails an allocation and records that error itself; the kernel's OOM killer
    kills with SIGKILL like ``kill -9`` and cannot be told apart from it, so such a cell is
    ``worker_lost`` and runs again on ``--resume``.
    """
    if returncode is None:
        return "error", "the worker process stopped answering"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return "error", f"the worker process was killed by signal {-returncode}"
        reason = "worker_lost" if sig in LOST_SIGNALS else "error"
        return reason, f"the worker process was killed by {sig.name}{_SIGNAL_NOTES.get(sig.name, '')}"
    return "error", f"the worker process exited with status {returncode}"


def _send(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int) -> Any | None:
    """One message, or ``None`` at end of file (the other side is gone)."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class CellWorker:
    """The parent's handle on one worker process.

    ``payload`` is ``{"registry": Registry.source, "grid": GridSpec.to_dict(), "data_dir": str or None}``;
    ``max_memory`` (bytes) caps the worker's data segment (Linux ``RLIMIT_DATA``). ``attempt``
    counts the workers in a row that died while starting, this one included.
    """

    def __init__(self, payload: dict[str, Any], max_memory: int | None = None, attempt: int = 1) -> None:
        threads = str(payload["grid"]["threads"])
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        # A session of its own: a Ctrl-C at the terminal reaches only the main process, which
        # forwards it to the busy workers (interrupt) and kills the others.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env, start_new_session=True,
        )
        self.payload, self.max_memory, self.attempt = payload, max_memory, attempt
        self.ready = False
        self.index: int | None = None
        self.started = time.monotonic()
        self._out = self.proc.stdout.fileno()
        self._in = self.proc.stdin.fileno()
        self.send(("init", payload, max_memory))

    def fileno(self) -> int:
        return self._out

    @property
    def busy(self) -> bool:
        return self.index is not None

    def send(self, message: Any) -> None:
        try:
            _send(self._in, message)
        except OSError:  # the worker is gone; its end of file tells the reader why
            pass

    def receive(self) -> Any | None:
        return _receive(self._out)

    def submit(self, index: int, cell_id: str) -> None:
        self.index = index
        self.started = time.monotonic()
        self.send(("run", index, cell_id))

    def overdue(self, timeout: float | None, now: float) -> bool:
        limit = STARTUP_TIMEOUT if not self.ready else timeout
        return (self.busy or not self.ready) and limit is not None and now - self.started > limit

    def interrupt(self) -> None:
        """Ask the running cell to stop and return its partial result (SIGINT)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def close(self, kill: bool = False) -> int | None:
        """Stop the worker (at once with ``kill``) and return its exit status."""
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.send(("stop",))
        try:
            self.proc.wait(timeout=None if kill else 5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()
        return self.proc.returncode

    def handle_startup(self, message: Any) -> bool:
        """Process a message received before the worker is ready: ``True`` once it is,
        ``False`` if it died while starting (it is then closed; see :meth:`successor`).

        A worker that reports it cannot set up the grid (a plugin that fails to load there)
        stops the run: every other worker would fail the same way.
        """
        if message is None:
            self.death = classify_exit(self.close(kill=True))[1]
            return False
        if message[0] == "fatal":
            self.close(kill=True)
            raise ExecutionError(f"a worker process could not set up the grid: {message[1]}")
        self.ready = True
        return True

    def successor(self) -> CellWorker:
        """A fresh worker in place of this one, which died while starting; an
        :class:`ExecutionError` after :data:`STARTUP_ATTEMPTS` such deaths in a row."""
        if self.attempt >= STARTUP_ATTEMPTS:
            raise ExecutionError(f"{STARTUP_ATTEMPTS} worker processes in a row died while starting; "
                                 f"the last: {self.death}")
        return CellWorker(self.payload, self.max_memory, self.attempt + 1)

    def await_ready(self, cancelled: Callable[[], bool] | None = None) -> CellWorker | None:
        """Block until this worker (or a successor, if it dies while starting) is ready and
        return that one; ``None`` if ``cancelled()`` became true meanwhile."""
        worker = self
        while not worker.ready:
            if cancelled is not None and cancelled():
                worker.close(kill=True)
                return None
            if wait([worker], timeout=_POLL):
                if not worker.handle_startup(worker.receive()):
                    worker = worker.successor()
            elif worker.overdue(None, time.monotonic()):
                worker.close(kill=True)
                raise ExecutionError(f"a worker process did not start within {STARTUP_TIMEOUT:g} s")
        return worker

    def run_blocking(self, index: int, cell_id: str, timeout: float | None,
                     cancelled: Callable[[], bool] | None = None) -> tuple[Outcome, bool]:
        """Run one cell on this ready worker and wait for it: ``(outcome, alive)``, ``alive``
        False if the worker is gone. ``cancelled``, checked every second, ends the cell early
        (its worker killed) when it returns true: nobody wants the result any more."""
        self.submit(index, cell_id)
        while not wait([self], timeout=_POLL):
            if self.overdue(timeout, time.monotonic()):
                self.close(kill=True)
                return ([], "error", _hang_message(timeout)), False
            if cancelled is not None and cancelled():
                self.close(kill=True)
                return ([], "interrupted", "the task was cancelled"), False
        message = self.receive()
        self.index = None
        if message is None:
            reason, why = classify_exit(self.close(kill=True))
            return ([], reason, f"{why} while running this cell"), False
        if message[0] == "fatal":
            self.close(kill=True)
            raise ExecutionError(f"a worker process could not run a cell: {message[1]}")
        return tuple(message[2:]), True


def _hang_message(timeout: float | None) -> str:
    return f"no result after {timeout:g} s of wall time (--cell-timeout): the cell hung; its worker process was killed"


def run_local_pool(
    payload: dict[str, Any],
    cells: list[Cell],
    pending: list[int],
    jobs: int,
    on_result: Callable[[CellResult], None],
    cell_timeout: float | None = None,
    max_memory: int | None = None,
) -> bool:
    """Run ``cells[i]`` for ``i`` in ``pending`` on ``jobs`` worker processes.

    Each result goes to ``on_result`` as soon as it arrives. A worker that dies or exceeds
    ``cell_timeout`` seconds on a cell is replaced and the cell recorded as ``error``, or as
    ``worker_lost`` when a signal from outside killed it (:func:`classify_exit`); one that
    dies while starting is replaced too (:meth:`CellWorker.successor`). Returns ``True`` if
    Ctrl-C stopped the run (the running cells then recorded as ``interrupted``), ``False``
    when every cell finished; an :class:`ExecutionError` if workers cannot run cells here.
    """
    queue = deque(pending)
    workers: list[CellWorker] = []
    try:
        workers = [CellWorker(payload, max_memory) for _ in range(min(jobs, len(queue)))]
        while queue or any(w.busy for w in workers):
            for worker in workers:
                if worker.ready and not worker.busy and queue:
                    index = queue.popleft()
                    worker.submit(index, cells[index].id)
            for worker in wait(workers, timeout=_POLL):
                message = worker.receive()
                if not worker.ready:
                    if not worker.handle_startup(message):
                        workers[workers.index(worker)] = worker.successor()
                elif message is None:
                    reason, why = classify_exit(worker.close(kill=True))
                    _replace(workers, worker, bool(queue), on_result, cells, reason, f"{why} while running this cell")
                elif message[0] == "fatal":
                    raise ExecutionError(f"a worker process could not run a cell: {message[1]}")
                else:
                    _, index, records, stop_reason, error = message
                    worker.index = None
                    on_result(CellResult(cells[index], records, stop_reason, error))
            now = time.monotonic()
            for worker in [w for w in workers if w.overdue(cell_timeout, now)]:
                if not worker.ready:
                    raise ExecutionError(f"a worker process did not start within {STARTUP_TIMEOUT:g} s")
                worker.close(kill=True)
                _replace(workers, worker, bool(queue), on_result, cells, "error", _hang_message(cell_timeout))
        return False
    except KeyboardInterrupt:
        _collect_interrupted(workers, cells, on_result)
        return True
    finally:
        for worker in workers:
            worker.close(kill=True)


def _replace(workers: list[CellWorker], worker: CellWorker, needed: bool, on_result, cells: list[Cell],
             stop_reason: str, why: str) -> None:
    """Record the dead worker's cell as ``stop_reason``; put a fresh worker in its place if ``needed``."""
    index = worker.index
    if needed:
        workers[workers.index(worker)] = CellWorker(worker.payload, worker.max_memory)
    else:
        workers.remove(worker)
    if index is not None:
        on_result(failed_result(cells[index], stop_reason, why))


def _collect_interrupted(workers: list[CellWorker], cells: list[Cell], on_result) -> None:
    """After Ctrl-C: the partial results of the running cells, or a placeholder for each."""
    busy = [w for w in workers if w.busy and w.proc.poll() is None]
    for worker in busy:
        worker.interrupt()
    deadline = time.monotonic() + INTERRUPT_GRACE
    while any(w.busy for w in busy) and time.monotonic() < deadline:
        for worker in wait([w for w in busy if w.busy], timeout=max(0.0, deadline - time.monotonic())):
            message = worker.receive()
            index, worker.index = worker.index, None
            if message is not None and message[0] == "result":
                on_result(CellResult(cells[message[1]], *message[2:]))
            else:
                on_result(failed_result(cells[index], "interrupted", "interrupted by the user"))
    for worker in workers:
        if worker.busy:
            on_result(failed_result(cells[worker.index], "interrupted", "interrupted by the user"))
            worker.index = None


# ---- the worker process -------------------------------------------------------------------


class _WorkerState:
    """SIGINT in a worker stops the running cell once; further signals are ignored."""

    def __init__(self) -> None:
        self.running = False
        self.stopping = False

    @property
    def interrupted(self) -> bool:  # read by interrupts.spurious_interrupt
        return self.stopping

    def on_sigint(self, signum, frame) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.running:
            raise KeyboardInterrupt


def _exit_with_parent() -> None:
    """End this worker if its parent goes away: the fallback where ``PR_SET_PDEATHSIG`` is not
    available (this thread needs the GIL, so it cannot end a worker stuck in C code holding it)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="proxmf-parent-watch").start()


def _worker_main() -> int:
    # The protocol owns the original stdin/stdout; the solvers' prints go to stderr.
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    state = _WorkerState()
    signal.signal(signal.SIGINT, state.on_sigint)
    watch(state)
    _exit_with_parent()
    message = _receive(proto_in)
    if message is None or message[0] != "init":
        return 1
    _, payload, max_memory = message
    try:
        registry, cells, limits = _setup(payload, max_memory)
    except Exception as exc:  # reported to the parent, which stops with this message
        _send(proto_out, ("fatal", describe_exception(exc)))
        return 1
    _send(proto_out, ("ready", len(cells)))

    # the worker's own imports: torch and the harness (the parent side never needs them)
    from proxmf_bench.run.harness import Interrupted
    from proxmf_bench.run.schedule import RecordSchedule
    from proxmf_bench.run.serial import ProblemCache, run_grid_cell
    from proxmf_bench.run.shared import SharedProblems

    shared = SharedProblems(payload["shared_dir"]) if payload.get("shared_dir") else None
    cache = ProblemCache(registry, payload["grid"].get("yt", "auto"), shared)
    schedule = RecordSchedule()
    repeat = payload["grid"].get("repeat", 1)
    while not state.stopping:
        message = _receive(proto_in)
        if message is None or message[0] != "run":
            return 0
        _, index, cell_id = message
        if not 0 <= index < len(cells) or cells[index].id != cell_id:
            _send(proto_out, ("fatal", "the worker resolved a different grid than the main process "
                                       "(are the same plugins installed on both?)"))
            return 1
        try:
            state.running = True
            result = run_grid_cell(registry, cells[index], limits, schedule, cache, repeat=repeat)
        except Interrupted as stop:
            result = stop.result
        except KeyboardInterrupt:
            result = failed_result(cells[index], "interrupted", "interrupted by the user")
        finally:
            state.running = False
        _send(proto_out, ("result", index, result.records, result.stop_reason, result.error))
    return 0


def _setup(payload: dict[str, Any], max_memory: int | None):
    import torch

    from proxmf_bench.plugin.data_files import ENV_DATA
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.run.grid import GridSpec

    spec = GridSpec.from_dict(payload["grid"])
    if payload.get("data_dir"):  # this process is the run's own: the environment is ours to set
        os.environ[ENV_DATA] = payload["data_dir"]
    torch.set_num_threads(spec.threads)
    torch.set_flush_denormal(True)
    source = payload["registry"]
    registry = load_registry([*source["env_files"], *source["plugin_files"]], builtins=source["builtins"],
                             use_entry_points=source["use_entry_points"], use_env=False)
    cells = spec.cells(registry)
    if max_memory is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (max_memory, max_memory))
    return registry, cells, spec.limits


def worker_entry() -> None:
    """The worker process's main program (started by :data:`_BOOTSTRAP`)."""
    try:
        sys.exit(_worker_main())
    except BrokenPipeError:  # the main process is gone: nobody is left to tell
        os._exit(1)

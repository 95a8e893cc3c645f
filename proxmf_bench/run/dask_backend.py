"""``--backend dask``: the cells of a grid as tasks on a dask.distributed cluster.

Each task runs one cell in a :class:`~proxmf_bench.run.isolation.CellWorker` process owned by
the dask worker thread that picked it up (one per thread, kept between tasks), so a cell
that crashes or hangs costs that cell only, exactly as with ``--jobs``. Results come back to
the client, which writes each cell to the run directory as it arrives: workers need no
shared filesystem, only the same Python environment (proxmf-bench, torch, the plugins, and
plugin files at the same paths).

Without a scheduler address a :class:`~dask.distributed.LocalCluster` is started in this
process with one single-threaded worker per job (the cells still run in worker processes),
listening on 127.0.0.1 only and without a dashboard unless one is asked for. On a cluster
with GPUs, start one worker per GPU (``dask cuda worker`` from dask-cuda pins
``CUDA_VISIBLE_DEVICES``), so ``cuda`` in each worker is its own GPU.

A cluster that fails is never waited for in silence. :class:`DaskCluster` checks it between
results: a scheduler it cannot reach or that does not answer, no worker at all, or a worker
that cannot import proxmf-bench stops the run within ``timeout`` seconds (``--dask-timeout``)
with an :class:`~proxmf_bench.errors.ExecutionError`; the cells that were running are then
recorded as ``worker_lost``, which ``--resume`` runs again. On the workers, a task whose
client went away (or cancelled it) kills its cell's worker process within a second.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from proxmf_bench.errors import ExecutionError, UserError, describe_exception
from proxmf_bench.run.cells import Cell, CellResult, failed_result
from proxmf_bench.run.isolation import CellWorker

DEFAULT_TIMEOUT = 30.0
# How often the client looks at the cluster while it waits for results.
_POLL = 0.5
# A worker process left idle this long on a dask worker (its client gone without closing
# it) is stopped.
IDLE_LIFETIME = 120.0
# What a dask worker must be able to import to run a cell.
_PROBE = __name__
# The stop reason of a task's outcome that says the cells cannot run on that worker at all
# (returned rather than raised: dask would log a raised one with its traceback).
_FATAL = "fatal"

# Idle worker processes of this dask worker: (thread id, payload, max_memory) -> (CellWorker,
# idle since). A task takes its thread's worker out while it runs and puts it back after.
_workers: dict[tuple[int, str, int | None], tuple[CellWorker, float]] = {}
_workers_lock = threading.Lock()
_reaper: threading.Thread | None = None


def import_dask():
    """The dask.distributed names used here, or a ``UserError`` saying how to install them."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--backend dask needs dask.distributed: pip install 'proxmf-bench[dask]'") from None
    return Client, LocalCluster


def check_scheduler_address(address: str) -> None:
    """A ``UserError`` for an address that cannot name a scheduler (empty or blank)."""
    if not address.strip():
        raise UserError("--scheduler is empty: give the address of a dask scheduler (e.g. tcp://host:8786), "
                        "or leave --scheduler out to start a local cluster")


# ---- on the dask workers ----------------------------------------------------------------


def run_remote_cell(
    payload: dict[str, Any], index: int, cell_id: str, timeout: float | None, max_memory: int | None
) -> tuple[int, list[dict[str, Any]], str, str]:
    """The dask task: run cell ``index`` in this thread's worker process; ``(index, *outcome)``.

    The worker process is killed (and the cell given up) as soon as the task is no longer
    wanted: cancelled, or released because its client disconnected or was killed. Worker
    processes that cannot start or set up the grid give the stop reason ``"fatal"``.
    """
    cancelled = _cancellation_check()
    key = (threading.get_ident(), json.dumps(payload, sort_keys=True), max_memory)
    with _workers_lock:
        worker = _workers.pop(key, (None, 0.0))[0]
    if worker is None or worker.proc.poll() is not None:
        worker = CellWorker(payload, max_memory)
    try:
        worker = worker.await_ready(cancelled)
    except ExecutionError as exc:
        return index, [], _FATAL, str(exc)
    if worker is None:
        return index, [], "interrupted", "the task was cancelled"
    alive = False
    try:
        outcome, alive = worker.run_blocking(index, cell_id, timeout, cancelled)
    except ExecutionError as exc:
        outcome = ([], _FATAL, str(exc))
    finally:
        if alive:
            with _workers_lock:
                _workers[key] = (worker, time.monotonic())
            _start_reaper()
        else:
            worker.close(kill=True)
    return (index, *outcome)


def _cancellation_check() -> Callable[[], bool]:
    """A function telling whether the dask task running in this thread is no longer wanted
    (cancelled, released after its client left, or this dask worker closing)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError, KeyError):  # not inside a dask task
        return lambda: False

    def cancelled() -> bool:
        task = worker.state.tasks.get(key)
        return (task is None or task.state not in ("executing", "long-running")
                or worker.status.name not in ("running", "paused"))

    return cancelled


def _start_reaper() -> None:
    """Start (once per process) the thread that stops worker processes left idle too long."""
    global _reaper
    with _workers_lock:
        if _reaper is not None:
            return
        _reaper = threading.Thread(target=_reap_forever, daemon=True, name="proxmf-idle-workers")
    _reaper.start()


def _reap_forever() -> None:
    while True:
        time.sleep(IDLE_LIFETIME / 4)
        now = time.monotonic()
        with _workers_lock:
            stale = [k for k, (_, since) in _workers.items() if now - since > IDLE_LIFETIME]
            idle = [_workers.pop(k)[0] for k in stale]
        for worker in idle:
            worker.close()


def close_workers(kill: bool = False) -> int:
    """Stop the idle worker processes of this dask worker (run on every worker at the end)."""
    with _workers_lock:
        workers = [worker for worker, _ in _workers.values()]
        _workers.clear()
    for worker in workers:
        worker.close(kill=kill)
    return len(workers)


# ---- on the client ------------------------------------------------------------------------


class DaskCluster:
    """The dask cluster a run sends its cells to, as a context manager.

    Entering connects to the scheduler at ``scheduler`` (or starts a local cluster of
    ``n_workers`` single-threaded workers on 127.0.0.1, with its dashboard at ``dashboard``
    if given), within ``timeout`` seconds, or raises a ``UserError``: the runner does this
    before it writes anything, so an unreachable scheduler leaves nothing behind.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int = 1, timeout: float = DEFAULT_TIMEOUT,
                 dashboard: str | None = None) -> None:
        self.scheduler, self.n_workers, self.timeout, self.dashboard = scheduler, n_workers, timeout, dashboard
        self.cluster = self.client = None
        self.address = scheduler

    def __enter__(self) -> DaskCluster:
        Client, LocalCluster = import_dask()
        logging.getLogger("distributed.client").addFilter(_quiet_reconnect)
        if self.scheduler is None:
            # TCP on the loopback interface: the scheduler's and the workers' listeners (and
            # its HTTP server, which serves no dashboard unless asked) bind to 127.0.0.1 only.
            try:
                self.cluster = LocalCluster(
                    n_workers=self.n_workers, threads_per_worker=1, processes=False, protocol="tcp",
                    host="127.0.0.1", dashboard_address=self.dashboard,
                    scheduler_kwargs=None if self.dashboard else {"dashboard_address": "127.0.0.1:0"},
                )
            except (OSError, RuntimeError, ValueError) as exc:
                raise UserError(f"cannot start a local dask cluster: {describe_exception(exc)}") from None
            self.address = self.cluster.scheduler_address
        try:
            self.client = Client(self.cluster or self.scheduler, timeout=self.timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            self.__exit__()
            raise UserError(f"cannot connect to the dask scheduler at {self.scheduler}: {exc}") from None
        return self

    @property
    def dashboard_link(self) -> str | None:
        return self.cluster.dashboard_link if self.cluster is not None and self.dashboard else None

    def __exit__(self, *exc_info: object) -> None:
        if self.client is not None:
            _quietly(lambda: self.client.run(close_workers), self.timeout)
            self.client.close(timeout=self.timeout)
        if self.cluster is not None:
            self.cluster.close(timeout=self.timeout)
        self.client = self.cluster = None
        logging.getLogger("distributed.client").removeFilter(_quiet_reconnect)

    def run(
        self,
        payload: dict[str, Any],
        cells: list[Cell],
        pending: list[int],
        on_result: Callable[[CellResult], None],
        cell_timeout: float | None = None,
        max_memory: int | None = None,
    ) -> bool:
        """Run ``cells[i]`` for ``i`` in ``pending`` as dask tasks; like ``run_local_pool``.

        As many cells are in flight as the cluster has worker threads; each result goes to
        ``on_result`` when it arrives. Returns ``True`` if Ctrl-C stopped the run; raises an
        :class:`ExecutionError` (the running cells recorded as ``worker_lost``) when the
        cluster fails (see the module's docstring).
        """
        client, queue = self.client, deque(pending)
        in_flight: dict[Any, int] = {}  # future -> cell index
        orphaned: set[int] = set()  # cells whose task was cancelled when the scheduler was lost
        arrived = threading.Event()
        health = _Health(client, self.address, self.timeout)
        try:
            while queue or in_flight:
                threads = health.check()
                while threads is not None and queue and len(in_flight) < max(1, threads):
                    index = queue.popleft()
                    orphaned.discard(index)
                    future = client.submit(run_remote_cell, payload, index, cells[index].id, cell_timeout,
                                           max_memory, key=f"proxmf-cell-{cells[index].id}-{uuid.uuid4().hex[:8]}",
                                           pure=False, retries=0)
                    future.add_done_callback(lambda _: arrived.set())
                    in_flight[future] = index
                arrived.wait(_POLL)
                arrived.clear()
                for future in [f for f in in_flight if f.done()]:
                    index = in_flight.pop(future)
                    result = _result(future, cells[index])
                    if result is None:  # cancelled (the scheduler was lost): submit it again
                        queue.appendleft(index)
                        orphaned.add(index)
                    else:
                        on_result(result)
            return False
        except KeyboardInterrupt:
            _quietly(lambda: client.cancel(list(in_flight), force=True), self.timeout)
            for index in [*in_flight.values(), *orphaned]:
                on_result(failed_result(cells[index], "interrupted", "interrupted by the user"))
            return True
        except ExecutionError as exc:
            _quietly(lambda: client.cancel(list(in_flight), force=True), self.timeout)
            for index in [*in_flight.values(), *orphaned]:
                on_result(failed_result(cells[index], "worker_lost", str(exc)))
            raise
        finally:
            health.close()


def _result(future, cell: Cell) -> CellResult | None:
    """The result of a finished task; ``None`` for a cancelled one (to submit again)."""
    if future.status == "cancelled":
        return None
    if future.status == "finished":
        _, records, stop_reason, error = future.result()
        if stop_reason == _FATAL:  # the worker processes of that dask worker cannot run cells
            raise ExecutionError(f"on the dask worker that took {cell.describe()}: {error}")
        return CellResult(cell, records, stop_reason, error) if records else failed_result(cell, stop_reason, error)
    exc = future.exception()
    if isinstance(exc, ImportError):
        raise ExecutionError(f"a dask worker cannot run cells: {describe_exception(exc)} (the workers need "
                             f"the same Python environment as this process)")
    # KilledWorker (the dask workers that ran it died), or a worker that failed otherwise
    return failed_result(cell, "worker_lost", f"the dask task failed: {describe_exception(exc)}")


class _Health:
    """Watches the cluster while a run waits for results (:meth:`check`).

    Each worker is first sent a task that imports what the cells need; cells are submitted
    only while no such probe is unanswered, so a worker that cannot import proxmf-bench is
    named before it is sent a cell (it would die decoding one, and look like a lost worker).
    """

    def __init__(self, client, address: str, timeout: float) -> None:
        self.client, self.address, self.timeout = client, address, timeout
        self.unhealthy_since: float | None = None
        self.workers_seen = 0
        self.known: set[str] = set()
        self.probes: dict[str, tuple[Any, float]] = {}  # worker address -> (probe future, sent at)

    def check(self) -> int | None:
        """The cluster's worker threads, ``None`` while cells should not be submitted; an
        :class:`ExecutionError` when it has been unusable for ``timeout`` seconds."""
        problem, threads = self._look()
        if problem is None:
            self.unhealthy_since = None
            return threads
        now = time.monotonic()
        self.unhealthy_since = self.unhealthy_since or now
        if now - self.unhealthy_since >= self.timeout or self.client.status in ("closing", "closed"):
            raise ExecutionError(f"{problem} (for {self.timeout:g} s, --dask-timeout)")
        return None

    def _look(self) -> tuple[str | None, int | None]:
        """``(problem, threads)``: what is wrong with the cluster now (``None`` if nothing)."""
        if self.client.status != "running":
            return f"lost the connection to the dask scheduler at {self.address}", None
        try:
            info = self.client.sync(self.client.scheduler.identity, n_workers=0, callback_timeout=self.timeout)
        except (OSError, TimeoutError):
            return f"the dask scheduler at {self.address} does not answer", None
        n_workers, threads = info.get("n_workers", 0), info.get("total_threads", 0)
        if n_workers != len(self.known):
            self._probe_new_workers()
        self._check_probes()
        if not n_workers:
            if self.workers_seen:
                return f"every dask worker of the scheduler at {self.address} is gone", None
            return (f"no dask worker is connected to the scheduler at {self.address} (start some with: "
                    f"dask worker {self.address} --nthreads 1)"), None
        self.workers_seen = max(self.workers_seen, n_workers)
        # a worker too busy to answer within the timeout (another client's tasks) holds nothing up
        waiting = any(time.monotonic() - sent < self.timeout for _, sent in self.probes.values())
        return None, None if waiting else threads

    def _probe_new_workers(self) -> None:
        try:
            info = self.client.sync(self.client.scheduler.identity, n_workers=-1, callback_timeout=self.timeout)
        except (OSError, TimeoutError):
            return
        current = set(info.get("workers", {}))
        for address in current - self.known:
            # the module stays on the worker as the task's result: nothing is sent back
            probe = self.client.submit(importlib.import_module, _PROBE, key=f"proxmf-probe-{uuid.uuid4().hex[:8]}",
                                       workers=[address], pure=False, priority=100)
            self.probes[address] = (probe, time.monotonic())
        for address in set(self.probes) - current:  # left before it answered
            self.client.cancel(self.probes.pop(address)[0])
        self.known = current

    def _check_probes(self) -> None:
        for address, (probe, _) in list(self.probes.items()):
            if probe.status == "error":
                exc = probe.exception()
                raise ExecutionError(f"the dask worker {address} cannot import proxmf-bench: "
                                     f"{type(exc).__name__}: {exc} (the workers need the same Python "
                                     f"environment as this process)")
            if probe.done():
                del self.probes[address]

    def close(self) -> None:
        if self.probes:
            _quietly(lambda: self.client.cancel([probe for probe, _ in self.probes.values()]), self.timeout)


def _quiet_reconnect(record: logging.LogRecord) -> bool:
    """Drop dask's own report of a lost scheduler: the run reports it in its one line."""
    return not str(record.msg).startswith("Failed to reconnect to scheduler")


def _quietly(action: Callable[[], object], timeout: float) -> None:
    """Do ``action`` in a thread for at most ``timeout`` s; a failure is not an error here
    (the cluster may be gone already)."""

    def attempt() -> None:
        try:
            action()
        except Exception:  # the cluster may be shutting down already
            pass

    thread = threading.Thread(target=attempt, daemon=True, name="proxmf-dask-cleanup")
    thread.start()
    thread.join(timeout)

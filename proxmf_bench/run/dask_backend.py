"""``--backend dask``: the cells of a grid as tasks on a dask.distributed cluster.

Each task runs one cell in a :class:`~proxmf_bench.run.isolation.CellWorker` process owned by
the dask worker thread that picked it up (one per thread, kept between tasks), so a cell
that crashes or hangs costs that cell only, exactly as with ``--jobs``. Results come back to
the client, which writes each cell to the run directory as it arrives: workers need no
shared filesystem, only the same Python environment (proxmf-bench, torch, the plugins, and
plugin files at the same paths).

Without a scheduler address a :class:`~dask.distributed.LocalCluster` is started in this
process with one single-threaded worker per job (the cells still run in worker processes).
On a cluster with GPUs, start one worker per GPU (``dask cuda worker`` from dask-cuda pins
``CUDA_VISIBLE_DEVICES``), so ``cuda`` in each worker is its own GPU.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from proxmf_bench.errors import UserError, describe_exception
from proxmf_bench.run.cells import Cell, CellResult, failed_result
from proxmf_bench.run.isolation import CellWorker

CONNECT_TIMEOUT = "20s"

# Worker processes of this dask worker: (thread id, payload, max_memory) -> CellWorker.
_workers: dict[tuple[int, str, int | None], CellWorker] = {}
_workers_lock = threading.Lock()


def import_dask():
    """The dask.distributed names used here, or a ``UserError`` saying how to install them."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UserError("--backend dask needs dask.distributed: pip install 'proxmf-bench[dask]'") from None
    return Client, LocalCluster, as_completed


def run_remote_cell(
    payload: dict[str, Any], index: int, cell_id: str, timeout: float | None, max_memory: int | None
) -> tuple[int, list[dict[str, Any]], str, str]:
    """The dask task: run cell ``index`` in this thread's worker process; ``(index, *outcome)``."""
    key = (threading.get_ident(), json.dumps(payload, sort_keys=True), max_memory)
    with _workers_lock:
        worker = _workers.get(key)
        if worker is None or worker.proc.poll() is not None:
            worker = _workers[key] = CellWorker(payload, max_memory)
    try:
        outcome, alive = worker.run_blocking(index, cell_id, timeout)
    except BaseException:
        alive = False
        raise
    finally:
        if not alive:
            with _workers_lock:
                _workers.pop(key, None)
    records, stop_reason, error = outcome
    return index, records, stop_reason, error


def close_workers(kill: bool = False) -> int:
    """Stop the worker processes of this dask worker (run on every worker at the end)."""
    with _workers_lock:
        workers = list(_workers.values())
        _workers.clear()
    for worker in workers:
        worker.close(kill=kill)
    return len(workers)


def run_dask(
    payload: dict[str, Any],
    cells: list[Cell],
    pending: list[int],
    on_result: Callable[[CellResult], None],
    scheduler: str | None = None,
    n_workers: int = 1,
    cell_timeout: float | None = None,
    max_memory: int | None = None,
) -> bool:
    """Run ``cells[i]`` for ``i`` in ``pending`` on a dask cluster; like ``run_local_pool``.

    As many cells are in flight as the cluster has worker threads; each result goes to
    ``on_result`` when it arrives. Returns ``True`` if Ctrl-C stopped the run.
    """
    Client, LocalCluster, as_completed = import_dask()
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False,
                               dashboard_address=None)
    try:
        client = Client(scheduler or cluster, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise UserError(f"cannot connect to the dask scheduler at {scheduler}: {exc}") from None
    in_flight: dict[str, tuple[int, Any]] = {}  # future key -> (cell index, future)
    try:
        slots = max(1, sum(client.nthreads().values()))
        queue = deque(pending)
        finished = as_completed()

        def submit() -> None:
            index = queue.popleft()
            future = client.submit(run_remote_cell, payload, index, cells[index].id, cell_timeout, max_memory,
                                   key=f"proxmf-cell-{cells[index].id}-{uuid.uuid4().hex[:8]}", pure=False, retries=0)
            in_flight[future.key] = (index, future)
            finished.add(future)

        for _ in range(min(slots, len(queue))):
            submit()
        for future in finished:
            index, _ = in_flight.pop(future.key)
            try:
                _, records, stop_reason, error = future.result()
                result = (CellResult(cells[index], records, stop_reason, error) if records
                          else failed_result(cells[index], stop_reason, error))
            except UserError:
                raise
            except Exception as exc:  # KilledWorker, a lost worker, a broken environment
                result = failed_result(cells[index], "error", f"dask task failed: {describe_exception(exc)}")
            on_result(result)
            if queue:
                submit()
        return False
    except KeyboardInterrupt:
        client.cancel([future for _, future in in_flight.values()], force=True)
        _run_quietly(client, close_workers, kill=True)
        for index, _ in in_flight.values():
            on_result(failed_result(cells[index], "interrupted", "interrupted by the user"))
        return True
    finally:
        _run_quietly(client, close_workers)
        client.close()
        if cluster is not None:
            cluster.close()


def _run_quietly(client, function, **kwargs) -> None:
    """``client.run`` on every worker; a worker that is gone or slow is not an error here."""
    try:
        client.run(function, **kwargs)
    except Exception:  # the cluster may be shutting down already
        pass

"""One copy of each problem's data for all ``--jobs`` workers on this machine: memory-mapped files.

Without it each worker process loads the problem of the cell it runs, so ``N`` workers on the
cells of one problem hold ``N`` copies of ``Y``. With it (local ``--jobs N`` runs, ``N >= 2``,
on CPU cells, where the platform has ``fcntl`` locks), the main process makes a private temporary directory
for the run (:class:`SharedDir`), and the first worker that needs a problem loads it from its
dataset under a lock and writes ``Y`` there as ``.npy`` (the rest of the problem, small, as a
pickle); every worker, that one included, then maps the file copy-on-write
(``numpy.load(mmap_mode="c")``): the pages are the operating system's page cache, shared by
all the workers that map it and counted once, and a solver that writes into ``Y`` changes only
its own private pages (the integrity seal still sees it, and the reload maps the file afresh).

The main process deletes a problem's files when its last pending cell is done, and the
directory at the end of the run. Keys are the cell's dataset, its parameters, seed and dtype:
the same problem for every solver of the grid, whatever the device (only CPU cells map it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from proxmf_bench.run.cells import Cell, CellResult

try:
    import fcntl
except ImportError:  # not on this platform: each worker loads its own copy
    fcntl = None

_SUFFIXES = (".npy", ".pkl", ".lock")


def problem_key(cell: Cell) -> str:
    """The file name stem of a cell's problem: the same for every solver of one problem."""
    text = json.dumps([cell.dataset.name, cell.dataset.params, cell.seed, cell.dtype], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def sharing_available() -> bool:
    """Whether workers can share data on this platform (file locks are needed)."""
    return fcntl is not None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SharedProblems:
    """A worker's side: problems of CPU cells from the run's shared directory."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def load(self, cell: Cell, build: Callable[[], Any]) -> Any:
        """The problem of ``cell``: built by ``build()`` (the dataset's load) and written by
        the first worker that needs it, then mapped from the file by every worker. Where it
        cannot be written (no room left, metadata that cannot be pickled) this worker keeps
        the problem it built, as without sharing."""
        if cell.device != "cpu":
            return build()
        base = self.directory / problem_key(cell)
        data, rest = base.with_suffix(".npy"), base.with_suffix(".pkl")
        with _locked(base.with_suffix(".lock")):
            if not data.exists():
                problem = build()
                try:
                    _write(problem, data, rest)
                except (OSError, pickle.PicklingError, TypeError, AttributeError):
                    return problem
                del problem  # the file's pages replace it
        return _read(data, rest)


def _write(problem: Any, data: Path, rest: Path) -> None:
    """``problem.Y`` to ``data`` and everything else to ``rest``, each renamed into place
    (``data`` last: its presence says both are complete)."""
    import numpy as np

    fields = {"rank": problem.rank, "W_true": problem.W_true, "H_true": problem.H_true, "nonneg": problem.nonneg,
              "fixed_W": problem.fixed_W, "name": problem.name, "metadata": dict(problem.metadata), "yt": problem.yt}
    for target, write in ((rest, lambda f: pickle.dump(fields, f, protocol=pickle.HIGHEST_PROTOCOL)),
                          (data, lambda f: np.save(f, problem.Y.detach().numpy(), allow_pickle=False))):
        partial = target.with_name(target.name + ".partial")
        try:
            with open(partial, "wb") as handle:
                write(handle)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _read(data: Path, rest: Path) -> Any:
    import numpy as np
    import torch

    from proxmf_bench.problem.problem import Problem

    with open(rest, "rb") as handle:
        fields = pickle.load(handle)  # written by this run's own workers, in its private directory
    Y = torch.from_numpy(np.load(data, mmap_mode="c", allow_pickle=False))
    return Problem(Y=Y, **fields)


class SharedDir:
    """The main process's side: the run's private directory (created on entry, removed on
    exit) and the deletion of each problem's files once its last pending cell is done."""

    def __init__(self, cells: list[Cell], pending: list[int]) -> None:
        self.remaining = Counter(problem_key(cells[i]) for i in pending if cells[i].device == "cpu")
        self.path: Path | None = None

    def __enter__(self) -> SharedDir:
        self.path = Path(tempfile.mkdtemp(prefix="proxmf-bench-shared-"))
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def finished(self, result: CellResult) -> None:
        """Count ``result``'s cell as done; the last one of a problem deletes its files."""
        if result.cell.device != "cpu":
            return
        key = problem_key(result.cell)
        self.remaining[key] -= 1
        if self.remaining[key] <= 0:
            for suffix in _SUFFIXES:
                (self.path / key).with_suffix(suffix).unlink(missing_ok=True)

"""The run directory on disk, cell by cell, so that nothing finished is lost.

::

    RUN_DIR/grid.json            the manifest: grid settings, plugin files, every cell id
    RUN_DIR/cells/<id>.parquet   one file per finished cell, written atomically when it ends
    RUN_DIR/results.parquet      all cells in grid order (written at the end and on Ctrl-C)
    RUN_DIR/meta.json            environment and history of the run
    RUN_DIR/.lock                held by the one run that writes the directory (its PID inside)

``results.parquet`` is rebuilt from ``cells/``, so a run killed outright (SIGKILL, power
loss) loses only its running cells: ``proxmf-bench run --resume RUN_DIR`` finds the finished
ones and runs the rest.

One writer at a time: a run holds an exclusive ``flock`` on ``RUN_DIR/.lock`` from before it
reads or creates the directory until it ends, and a second run (``--out`` or ``--resume``)
is refused with the holder's PID. The kernel drops the lock when its holder dies, however it
dies, so a lock left by a killed run is simply taken over; the descriptor is not inherited by
worker processes (close-on-exec), which therefore never keep a dead run's directory locked.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from proxmf_bench.errors import UserError
from proxmf_bench.results.table import atomic_write_bytes, read_tagged_frame, to_frame, write_frame
from proxmf_bench.run.cells import RERUN_REASONS, Cell, CellResult
from proxmf_bench.run.grid import check_manifest, dumps

try:
    import fcntl
except ImportError:  # not a POSIX system: runs are not locked
    fcntl = None

MANIFEST_FILE = "grid.json"
CELLS_DIR = "cells"
LOCK_FILE = ".lock"

# The columns that identify a cell; a cell file must agree with its name on them.
_KEY_COLUMNS = ("solver_name", "solver_params", "dataset_name", "dataset_params", "device", "dtype", "seed")
# the tag of a cell file that holds its full identity (limits and schedule included)
_CELL_TAG = "cell_id"


def path_error(path: Path, exc: OSError, doing: str) -> UserError:
    """A one-line error for an operating-system failure on ``path`` (no space, name too long...)."""
    return UserError(f"cannot {doing} {path}: {exc.strerror or exc}")


class RunStore:
    """Reads and writes the files of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.cells_dir = self.run_dir / CELLS_DIR
        self.manifest_path = self.run_dir / MANIFEST_FILE
        self.lock_path = self.run_dir / LOCK_FILE
        self.lock_warning = ""
        self._lock_fd: int | None = None

    # ---- one writer ---------------------------------------------------------------------

    def lock(self) -> None:
        """Take the directory's lock (it must exist), or raise a ``UserError`` naming the holder."""
        while self._lock_fd is None:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise path_error(self.lock_path, exc, "create the lock file") from None
            if not self._flock(fd):
                break
            if _same_file(fd, self.lock_path):
                self._lock_fd = fd
            else:  # removed by a failed creation between our open and our lock: lock the new one
                os.close(fd)
        try:  # the holder's PID, for the message a second run gets
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same
            pass

    def _flock(self, fd: int) -> bool:
        """Lock ``fd``: True when locked, False where locks are not available (``fd`` is then
        kept, with a warning); a ``UserError`` naming the holder when another run has it."""
        if fcntl is None:
            self._lock_fd = fd
            self.lock_warning = f"{self.run_dir} is not locked (no flock here): make sure no other run writes it"
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                self._lock_fd = fd
                self.lock_warning = (f"{self.run_dir} is not locked (its file system has no locks): make sure no "
                                     f"other run writes it")
                return False
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _in_use(self.run_dir, holder) from None
            raise path_error(self.lock_path, exc, "lock") from None

    def unlock(self) -> None:
        """Release the lock (closing the descriptor drops it); the file stays for the next run."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- creating and reading the directory ---------------------------------------------

    def create(self, manifest: dict[str, Any]) -> None:
        """Make the run directory, take its lock and write the manifest.

        The directory must be new or empty, which is checked under the lock (two runs started
        at once on one ``--out`` cannot both pass). If a step fails (no space, permissions,
        Ctrl-C) what was made is removed again, so that nothing blocks running the same command
        again.
        """
        made = _make_dirs(self.run_dir)
        try:
            self.lock()
        except BaseException:
            _remove_dirs(made)
            raise
        try:
            check_new_run_dir(self.run_dir, locked=True)
        except BaseException:
            if made:  # it holds nothing but our lock file
                self.lock_path.unlink(missing_ok=True)
            self.unlock()
            _remove_dirs(made)
            raise
        try:
            self.cells_dir.mkdir()
            atomic_write_bytes(self.manifest_path, dumps(manifest))
        except BaseException as exc:
            # the directory held nothing before (checked above): leave it as it was
            for undo in (self.cells_dir.rmdir, self.lock_path.unlink):
                try:
                    undo()
                except OSError:
                    pass
            self.unlock()
            _remove_dirs(made)
            if isinstance(exc, OSError):
                raise path_error(self.run_dir, exc, "create the run directory") from None
            raise

    def read_manifest(self) -> dict[str, Any]:
        try:
            if self.manifest_path.is_dir():
                raise UserError(f"{self.manifest_path} is a directory, not a grid manifest: the run directory is damaged")
            if not self.manifest_path.is_file():
                hint = " (it has results.parquet but no grid.json: it was not written by a resumable run)" \
                    if (self.run_dir / "results.parquet").is_file() else ""
                raise UserError(f"nothing to resume at {self.run_dir}: no {MANIFEST_FILE}{hint}")
            raw = self.manifest_path.read_bytes()
        except OSError as exc:
            raise path_error(self.manifest_path, exc, "read") from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.manifest_path} is corrupt: not valid JSON ({exc})") from None
        return check_manifest(data, str(self.manifest_path))

    def check_cells_dir(self) -> None:
        """Before resuming: ``cells/`` is a directory (made again if it went missing)."""
        if self.cells_dir.is_dir():
            return
        if self.cells_dir.exists() or self.cells_dir.is_symlink():
            raise UserError(f"{self.cells_dir} is not a directory: the run directory is damaged "
                            f"(move it away to resume; its cells then run again)")
        try:
            self.cells_dir.mkdir()
        except OSError as exc:
            raise path_error(self.cells_dir, exc, "create") from None

    def cell_path(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.id}.parquet"

    def write_cell(self, result: CellResult, run_id: str, threads: int) -> pd.DataFrame:
        """Persist one finished cell atomically; returns its table."""
        frame = to_frame(result.rows(), run_id, threads)
        path = self.cell_path(result.cell)
        # No fsync per cell: the rename is atomic against a killed process, and a file torn by
        # a power cut fails its checksum on --resume, which then runs that cell again.
        try:
            write_frame(path, frame, durable=False, tags={_CELL_TAG: result.cell.id})
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}; the cells finished before are kept: "
                            f"proxmf-bench run --resume {self.run_dir} continues") from None
        return frame

    def load_cells(self, cells: list[Cell], threads: int) -> tuple[dict[str, pd.DataFrame], list[str]]:
        """Tables of the cells of ``cells`` already on disk, and one warning per unusable file.

        A file that cannot be read, or whose content is not the cell its name says (under the
        same limits, schedule and thread count), is reported and its cell runs again. So is a
        cell that stopped for a reason outside it (``interrupted``, ``worker_lost``:
        :data:`~proxmf_bench.run.cells.RERUN_REASONS`). A cell path that is not a file (a
        directory) is an error: the run could not write that cell.
        """
        frames: dict[str, pd.DataFrame] = {}
        warnings: list[str] = []
        for cell in cells:
            path = self.cell_path(cell)
            if not path.is_file():
                if path.exists() or path.is_symlink():
                    raise UserError(f"{path} is not a file (a directory or a dangling link): the run directory is "
                                    f"damaged; remove it to resume (that cell then runs again)")
                continue
            try:
                frame, tags = read_tagged_frame(path)
                problem = _mismatch(frame, tags, cell, threads)
            except UserError as exc:
                problem = str(exc)
            if problem:
                warnings.append(f"{problem}; the cell {cell.describe()} will run again")
                continue
            if frame.stop_reason.isin(RERUN_REASONS).any():
                continue
            frame["solver"] = cell.solver.label
            frame["dataset"] = cell.dataset.label
            frames[cell.id] = frame.astype({"solver": "string", "dataset": "string"})
        return frames, warnings

    def remove_temporaries(self) -> None:
        """Delete half-written files left by a process killed during an atomic write."""
        for folder in (self.run_dir, self.cells_dir):
            for tmp in folder.glob(".*.tmp"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)


def check_new_run_dir(run_dir: Path, locked: bool = False) -> None:
    """A new run needs ``run_dir`` absent or empty (a lock file left by another run aside),
    and not in use by another run (unless ``locked``: this process holds the lock)."""
    try:
        if not run_dir.exists():
            return
        if not run_dir.is_dir():
            raise UserError(f"output directory {run_dir} exists and is not a directory")
        if not locked:
            _refuse_if_locked(RunStore(run_dir))
        if any(p.name != LOCK_FILE for p in run_dir.iterdir()):
            hint = f"; to continue that run: proxmf-bench run --resume {run_dir}" \
                if (run_dir / MANIFEST_FILE).is_file() else ""
            raise UserError(f"output directory {run_dir} exists and is not empty{hint}")
    except OSError as exc:
        raise path_error(run_dir, exc, "use output directory") from None


def _refuse_if_locked(store: RunStore) -> None:
    """The ``UserError`` of :meth:`RunStore.lock` if another run holds the lock (a probe: a
    shared lock, released at once)."""
    if fcntl is None or not store.lock_path.is_file():
        return
    try:
        fd = os.open(store.lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _in_use(store.run_dir, _read_pid(fd)) from None
    finally:
        os.close(fd)


def _in_use(run_dir: Path, holder: str) -> UserError:
    who = f"process {holder}" if holder else "another process"
    return UserError(f"{run_dir} is in use by another run ({who}); wait for it to end or stop it "
                     f"(one run writes a run directory at a time)")


def _make_dirs(run_dir: Path) -> list[Path]:
    """``mkdir -p run_dir``; the directories it made, outermost first (none made on failure)."""
    made: list[Path] = []
    try:
        missing = []
        folder = run_dir
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
    except OSError as exc:
        _remove_dirs(made)
        raise path_error(run_dir, exc, "create output directory") from None
    return made


def _remove_dirs(made: list[Path]) -> None:
    """Remove the directories of :func:`_make_dirs`, innermost first, as long as they are empty."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            break


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _mismatch(frame: pd.DataFrame, tags: dict[str, str], cell: Cell, threads: int) -> str:
    """Why ``frame`` is not a valid table of ``cell``, or an empty string."""
    missing = [c for c in _KEY_COLUMNS + ("stop_reason", "threads") if c not in frame.columns]
    if missing or frame.empty:
        return f"cell file of {cell.describe()} is not a cell table"
    if tags.get(_CELL_TAG) != cell.id:
        return f"cell file {cell.id}.parquet holds a different cell (made under other limits, or renamed)"
    key = cell.key()
    for column in _KEY_COLUMNS:
        if (frame[column] != key[column]).any():
            return f"cell file {cell.id}.parquet holds a different cell ({column} differs)"
    if (frame["threads"] != threads).any():
        return f"cell file {cell.id}.parquet was made with {frame['threads'].iloc[0]} threads, not {threads}"
    return ""

"""The run directory on disk, cell by cell, so that nothing finished is lost.

::

    RUN_DIR/grid.json            the manifest: grid settings, plugin files, every cell id
    RUN_DIR/cells/<id>.parquet   one file per finished cell, written atomically when it ends
    RUN_DIR/results.parquet      all cells in grid order (written at the end and on Ctrl-C)
    RUN_DIR/meta.json            environment and history of the run

``results.parquet`` is rebuilt from ``cells/``, so a run killed outright (SIGKILL, power
loss) loses only its running cells: ``proxmf-bench run --resume RUN_DIR`` finds the finished
ones and runs the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from proxmf_bench.errors import UserError
from proxmf_bench.results.table import atomic_write_bytes, read_frame, to_frame, write_frame
from proxmf_bench.run.cells import RERUN_REASONS, Cell, CellResult
from proxmf_bench.run.grid import check_manifest, dumps

MANIFEST_FILE = "grid.json"
CELLS_DIR = "cells"

# The columns that identify a cell; a cell file must agree with its name on them.
_KEY_COLUMNS = ("solver_name", "solver_params", "dataset_name", "dataset_params", "device", "dtype", "seed")


class RunStore:
    """Reads and writes the files of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.cells_dir = self.run_dir / CELLS_DIR
        self.manifest_path = self.run_dir / MANIFEST_FILE

    def create(self, manifest: dict[str, Any]) -> None:
        """Start a new run directory with its manifest."""
        try:
            self.cells_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.manifest_path, dumps(manifest))
        except OSError as exc:
            raise UserError(f"cannot create output directory {self.run_dir}: {exc.strerror or exc}") from None

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            hint = " (it has results.parquet but no grid.json: it was not written by a resumable run)" \
                if (self.run_dir / "results.parquet").is_file() else ""
            raise UserError(f"nothing to resume at {self.run_dir}: no {MANIFEST_FILE}{hint}")
        try:
            data = json.loads(self.manifest_path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{self.manifest_path} is corrupt: not valid JSON ({exc})") from None
        return check_manifest(data, str(self.manifest_path))

    def cell_path(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.id}.parquet"

    def write_cell(self, result: CellResult, run_id: str, threads: int) -> pd.DataFrame:
        """Persist one finished cell atomically; returns its table."""
        frame = to_frame(result.rows(), run_id, threads)
        # No fsync per cell: the rename is atomic against a killed process, and a file torn by
        # a power cut fails its checksum on --resume, which then runs that cell again.
        write_frame(self.cell_path(result.cell), frame, durable=False)
        return frame

    def load_cells(self, cells: list[Cell]) -> tuple[dict[str, pd.DataFrame], list[str]]:
        """Tables of the cells of ``cells`` already on disk, and one warning per unusable file.

        A file that cannot be read, or whose content is not the cell its name says, is
        reported and its cell runs again. So is a cell that stopped for a reason outside it
        (``interrupted``, ``worker_lost``: :data:`~proxmf_bench.run.cells.RERUN_REASONS`).
        """
        frames: dict[str, pd.DataFrame] = {}
        warnings: list[str] = []
        for cell in cells:
            path = self.cell_path(cell)
            if not path.is_file():
                continue
            try:
                frame = read_frame(path)
                problem = _mismatch(frame, cell)
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
                tmp.unlink(missing_ok=True)


def _mismatch(frame: pd.DataFrame, cell: Cell) -> str:
    """Why ``frame`` is not a valid table of ``cell``, or an empty string."""
    missing = [c for c in _KEY_COLUMNS + ("stop_reason",) if c not in frame.columns]
    if missing or frame.empty:
        return f"cell file of {cell.describe()} is not a cell table"
    key = cell.key()
    for column in _KEY_COLUMNS:
        if (frame[column] != key[column]).any():
            return f"cell file {cell.id}.parquet holds a different cell ({column} differs)"
    return ""

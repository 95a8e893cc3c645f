"""The results table: building it from cell results, writing it atomically, reading it back.

One run directory holds ``results.parquet`` (long format: one row per recorded point) and
``meta.json``. Both are written to a temporary file in the same directory and renamed into
place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from proxmf_bench.errors import UserError

RESULTS_FILE = "results.parquet"
META_FILE = "meta.json"

# The public columns (DESIGN.md), in order; metric columns such as sad_deg follow them.
COLUMNS = (
    "run_id", "solver", "solver_params", "dataset", "dataset_params", "device", "dtype",
    "seed", "iteration", "time_s", "loss", "stop_reason",
)
EXTRA_COLUMNS = ("solver_name", "dataset_name", "error", "threads")
# Metric columns that are a function of the loss alone (reports plot the loss instead).
LOSS_DERIVED_COLUMNS = ("rel_error",)

_DTYPES = {
    "run_id": "string", "solver": "string", "solver_params": "string", "dataset": "string",
    "dataset_params": "string", "device": "string", "dtype": "string", "seed": "int64",
    "iteration": "int64", "time_s": "float64", "loss": "float64", "stop_reason": "string",
    "solver_name": "string", "dataset_name": "string", "error": "string", "threads": "int64",
}


def to_frame(rows: Iterable[dict[str, Any]], run_id: str, threads: int) -> pd.DataFrame:
    """Rows (one per recorded point) to a typed DataFrame with the public columns first."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        frame = pd.DataFrame(columns=[c for c in COLUMNS + EXTRA_COLUMNS if c not in ("run_id", "threads")])
    frame.insert(0, "run_id", run_id)
    frame["threads"] = threads
    metrics = sorted(c for c in frame.columns if c not in COLUMNS and c not in EXTRA_COLUMNS)
    frame = frame[list(COLUMNS) + list(EXTRA_COLUMNS) + metrics]
    types = {c: t for c, t in _DTYPES.items() if c in frame.columns}
    types.update({c: "float64" for c in metrics})
    return frame.astype(types)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(run_dir: Path, frame: pd.DataFrame) -> Path:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path = run_dir / RESULTS_FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_meta(run_dir: Path, meta: dict[str, Any]) -> Path:
    path = run_dir / META_FILE
    atomic_write_bytes(path, (json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n").encode())
    return path


def load_results(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The results table of a run directory (or of a ``results.parquet`` path)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"no results found at {path}")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise UserError(f"{path} is not a readable results file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks the columns {', '.join(missing)}: not a proxmf-bench results file")
    return frame


def load_meta(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no {META_FILE} in {run_dir}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None

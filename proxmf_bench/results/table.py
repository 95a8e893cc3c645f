"""The results table: building it from cell results, writing it atomically, reading it back.

One run directory holds ``results.parquet`` (long format: one row per recorded point) and
``meta.json``. Both are written to a temporary file in the same directory and renamed into
place, so a reader never sees a half-written file.

A damaged file is never silently misread: parquet pages carry CRC checksums, and the schema
metadata carries a SHA-256 digest of the table's content (column names, dtypes and values)
that :func:`read_frame` recomputes. Truncation, a flipped bit in the data or in the footer,
or a renamed column all give a clear :class:`~proxmf_bench.errors.UserError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from proxmf_bench.errors import UserError

RESULTS_FILE = "results.parquet"
META_FILE = "meta.json"

# The public columns (DESIGN.md), in order; metric columns such as sad_deg follow them.
COLUMNS = (
    "run_id", "solver", "solver_params", "dataset", "dataset_params", "device", "dtype",
    "seed", "iteration", "time_s", "loss", "stop_reason",
)
EXTRA_COLUMNS = (
    "solver_name", "dataset_name", "error", "threads",
    # what the run minimises and the problem it belongs to (see the README, "Problems and f*")
    "objective", "problem", "objective_name", "objective_note",
    # the spread of time_s over --repeat runs
    "time_s_min", "time_s_max",
    # what the problem held in memory: "Y+Yt" (a row-major copy of Y^T too) or "Y" (--yt)
    "data_layout",
)
# Metric columns that are a function of the loss alone (reports plot the loss instead).
LOSS_DERIVED_COLUMNS = ("rel_error",)
# Flat parameter columns (as benchopt writes them): p_solver_<name>, p_dataset_<name>, one per
# parameter of any variant, derived from the JSON columns (see with_param_columns).
PARAM_PREFIXES = {"solver_params": "p_solver_", "dataset_params": "p_dataset_"}

_DTYPES = {
    "run_id": "string", "solver": "string", "solver_params": "string", "dataset": "string",
    "dataset_params": "string", "device": "string", "dtype": "string", "seed": "int64",
    "iteration": "int64", "time_s": "float64", "loss": "float64", "stop_reason": "string",
    "solver_name": "string", "dataset_name": "string", "error": "string", "threads": "int64",
    "objective": "float64", "problem": "string", "objective_name": "string", "objective_note": "string",
    "time_s_min": "float64", "time_s_max": "float64", "data_layout": "string",
}


def to_frame(rows: Iterable[dict[str, Any]], run_id: str, threads: int) -> pd.DataFrame:
    """Rows (one per recorded point) to a typed DataFrame with the public columns first."""
    rows = list(rows)
    if not rows:
        frame = pd.DataFrame(columns=[c for c in COLUMNS + EXTRA_COLUMNS if c not in ("run_id", "threads")])
        frame.insert(0, "run_id", run_id)
        frame["threads"] = threads
        return _tidy(frame)
    # Column by column with the final dtypes: several times faster than DataFrame(rows).astype,
    # which matters because every finished cell is turned into a table as it ends.
    names = dict.fromkeys(key for row in rows for key in row)
    columns = {name: [row.get(name, math.nan) for row in rows] for name in names}
    columns["run_id"] = [run_id] * len(rows)
    columns["threads"] = [threads] * len(rows)
    metrics = sorted(c for c in columns if c not in COLUMNS and c not in EXTRA_COLUMNS)
    order = [c for c in COLUMNS + EXTRA_COLUMNS if c in columns] + metrics
    return pd.DataFrame({c: pd.array(columns[c], dtype=_DTYPES.get(c, "float64")) for c in order}, copy=False)


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stack the tables of several cells into one, with the column order of :func:`to_frame`
    and the flat parameter columns (:func:`with_param_columns`).

    Cells on datasets without ground truth lack the metric columns; they get NaN there.
    """
    if not frames:
        return to_frame([], "", 1)
    return with_param_columns(_tidy(pd.concat(frames, ignore_index=True)))


def is_param_column(name: str) -> bool:
    return name.startswith(tuple(PARAM_PREFIXES.values()))


def _flat(values: list[Any]) -> pd.api.extensions.ExtensionArray | Any:
    """One flat parameter column from the values of its parameter (``None``: absent): numbers
    as ``Int64`` or ``float64`` (with ``"inf"`` as JSON writes infinity), booleans as
    ``boolean``, anything else as text (lists as JSON)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    numeric = [isinstance(v, (int, float)) and not isinstance(v, bool) or v in ("inf", "-inf", "nan") for v in present]
    if present and all(numeric):
        if all(isinstance(v, int) for v in present):
            return pd.array(values, dtype="Int64")
        return pd.array([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                    dtype="string")


def _params_of(text: Any) -> dict[str, Any]:
    """The parameters in a JSON column's value; none for an empty or foreign one (a table that
    another tool wrote must still load)."""
    try:
        params = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def with_param_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a column ``p_solver_<name>`` for every parameter of its solvers'
    ``solver_params`` and ``p_dataset_<name>`` of ``dataset_params`` (replacing any there),
    after the extra columns and before the metrics; empty where a variant lacks the parameter."""
    frame = frame.drop(columns=[c for c in frame.columns if is_param_column(c)])
    flat: dict[str, Any] = {}
    for source, prefix in PARAM_PREFIXES.items():
        if source not in frame.columns:
            continue
        codes, uniques = pd.factorize(frame[source].astype(object), use_na_sentinel=True)
        parsed = [_params_of(u) for u in uniques]
        for name in sorted({k for params in parsed for k in params}):
            per_unique = [params.get(name) for params in parsed] + [None]  # code -1: no JSON
            flat[prefix + name] = _flat([per_unique[c] for c in codes])
    if not flat:
        return frame
    at = max(frame.columns.get_loc(c) for c in COLUMNS + EXTRA_COLUMNS if c in frame.columns) + 1
    params = pd.DataFrame(flat, index=frame.index)
    return pd.concat([frame.iloc[:, :at], params, frame.iloc[:, at:]], axis=1)


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Public columns first, then the extra ones (missing ones from older files added as
    empty), then flat parameter columns, then metrics sorted by name; typed."""
    missing = [c for c in EXTRA_COLUMNS if c not in frame.columns]
    if missing:
        empty = {"float64": math.nan, "int64": 0}
        frame = frame.assign(**{c: pd.array([empty.get(_DTYPES[c], pd.NA)] * len(frame), dtype=_DTYPES[c])
                                for c in missing})
    params = [c for c in frame.columns if is_param_column(c)]
    metrics = sorted(c for c in frame.columns if c not in COLUMNS and c not in EXTRA_COLUMNS and c not in params)
    frame = frame[list(COLUMNS) + list(EXTRA_COLUMNS) + params + metrics]
    types = {c: t for c, t in _DTYPES.items() if c in frame.columns}
    types.update({c: "float64" for c in metrics})
    return frame.astype(types)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


TIMING_COLUMNS = ("time_s", "time_s_min", "time_s_max")


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The content of a results table: without the run id, timings and the flat parameter
    columns (they repeat the JSON ones, and which exist depends on the other variants of the
    table), rows in a fixed order.

    Two runs of the same grid (serial, ``--jobs``, dask, resumed) give equal tables here, and
    so do a solver's rows in grids with different other solvers.
    """
    keys = ["solver", "dataset", "device", "dtype", "seed", "iteration"]
    dropped = ["run_id", *(c for c in frame.columns if c in TIMING_COLUMNS or is_param_column(c))]
    out = frame.drop(columns=dropped).sort_values(keys, kind="stable")
    return out.reset_index(drop=True)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    Readers see the old file or the new one, never a mix, even if this process is killed.
    ``durable`` also flushes the data to disk before the rename (``fsync``), so that it
    survives a power cut or a kernel crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_DIGEST_KEY = b"proxmf_bench.sha256"


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's column names, dtypes and values (row order included)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    if len(frame.columns):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


_TAG_PREFIX = b"proxmf_bench.tag."


def frame_to_parquet_bytes(frame: pd.DataFrame, tags: dict[str, str] | None = None) -> bytes:
    """Parquet bytes with page checksums and a content digest in the schema metadata, plus
    ``tags`` (short strings that say what the table is, read back by :func:`read_tagged_frame`)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _DIGEST_KEY: frame_digest(frame).encode()}
    metadata.update({_TAG_PREFIX + k.encode(): v.encode() for k, v in (tags or {}).items()})
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer, write_page_checksum=True)
    return buffer.getvalue()


def write_frame(path: Path, frame: pd.DataFrame, durable: bool = True, tags: dict[str, str] | None = None) -> Path:
    """Write ``frame`` to ``path`` atomically (see :func:`frame_to_parquet_bytes`)."""
    atomic_write_bytes(path, frame_to_parquet_bytes(frame, tags), durable)
    return path


def read_frame(path: Path) -> pd.DataFrame:
    """Read a parquet file written by :func:`write_frame`, verifying checksums and digest.

    Raises :class:`UserError` naming the file when it cannot be read or its content does not
    match its digest. Files without a digest (written by other tools) are checked by parquet's
    own structure only.
    """
    return read_tagged_frame(path)[0]


def read_tagged_frame(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`read_frame`, and the tags the file was written with."""
    if path.is_dir():  # pyarrow would read a directory as a dataset of the files inside
        raise UserError(f"{path} is a directory, not a results file")
    try:
        table = pq.read_table(path, page_checksum_verification=True)
        frame = table.to_pandas()
    except Exception as exc:  # pyarrow raises several types for damaged files
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"{path} is not a readable results file ({type(exc).__name__}: {reason})") from None
    metadata = table.schema.metadata or {}
    expected = metadata.get(_DIGEST_KEY)
    if expected is not None and expected.decode(errors="replace") != frame_digest(frame):
        raise UserError(f"{path} is corrupt: its content does not match the checksum stored in it")
    tags = {k[len(_TAG_PREFIX):].decode(errors="replace"): v.decode(errors="replace")
            for k, v in metadata.items() if k.startswith(_TAG_PREFIX)}
    return frame, tags


def write_results(run_dir: Path, frame: pd.DataFrame) -> Path:
    return write_frame(run_dir / RESULTS_FILE, frame)


def standard_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name (``"inf"``, ``"nan"``), so
    that it encodes as standard JSON (``json`` would write ``Infinity``, which no other
    parser reads)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: standard_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [standard_json(v) for v in value]
    return value


def write_meta(run_dir: Path, meta: dict[str, Any]) -> Path:
    path = run_dir / META_FILE
    text = json.dumps(standard_json(meta), indent=2, sort_keys=True, default=str, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())
    return path


def load_results(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The results table of a run directory (or of a ``results.parquet`` path), with the flat
    parameter columns (derived from the JSON ones for tables written before they existed)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"no results found at {path}")
    frame = read_frame(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks the columns {', '.join(missing)}: not a proxmf-bench results file")
    return with_param_columns(frame)


def load_meta(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The content of ``RUN_DIR/meta.json``; a one-line ``UserError`` if it is absent or damaged."""
    path = Path(run_dir) / META_FILE
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"no {META_FILE} in {run_dir}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a metadata file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is damaged: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} is damaged: it holds a {type(meta).__name__}, not an object")
    return meta

"""Tables of known optima ``f*`` by problem: reading, checking and writing them.

A table is a CSV file with a header and the columns ``problem`` (the problem key, as in the
``problem`` column of the results) and ``f_star`` (the optimal objective value), and
optionally ``source`` (where the value comes from; default: the file's name). Other columns
are ignored, so a table written by ``proxmf-bench reference --out FILE`` can be edited and
given back with ``--f-star FILE``. A run directory may hold two: ``reference.csv``, the
reference optima of its problems (``run --reference``, ``proxmf-bench reference RUN_DIR``),
and ``known_f_star.csv``, the table given with ``run --f-star``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import pandas as pd

from proxmf_bench.errors import UserError
from proxmf_bench.results.table import atomic_write_bytes

REFERENCE_FILE = "reference.csv"
USER_F_STAR_FILE = "known_f_star.csv"
COLUMNS = ("problem", "f_star", "source")


def read_f_star(path: str | os.PathLike) -> pd.DataFrame:
    """The table at ``path`` with the columns ``problem``, ``f_star``, ``source``, checked.

    A missing or unreadable file, a missing column, a value that is not a finite number, or a
    problem listed twice with different values is a :class:`UserError` naming the file.
    """
    path = Path(path)
    where = f"--f-star file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where} cannot be read: {exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row]  # blank lines are skipped
    if not rows:
        raise UserError(f"{where} is empty (a header 'problem,f_star' is needed)")
    header = [name.strip() for name in rows[0]]
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserError(f"{where}, row {number}: {len(row)} fields where the header has {len(header)}; "
                            "problem keys hold commas and quotes, so quote them as CSV does "
                            "('proxmf-bench reference --out' writes such a table)")
    frame = pd.DataFrame(rows[1:], columns=header, dtype="string")
    missing = [c for c in ("problem", "f_star") if c not in frame.columns]
    if missing:
        raise UserError(f"{where} lacks the column(s) {', '.join(missing)} (a header 'problem,f_star' is needed)")
    if frame.empty:
        raise UserError(f"{where} has no rows")
    values = pd.to_numeric(frame["f_star"].astype(object), errors="coerce").astype("float64")
    bad = frame.index[~values.map(math.isfinite)]
    if len(bad):
        row = bad[0]
        raise UserError(f"{where}, row {row + 2}: f_star {frame['f_star'].iloc[row]!r} is not a finite number")
    empty = frame.index[frame["problem"].str.strip() == ""]
    if len(empty):
        raise UserError(f"{where}, row {empty[0] + 2}: the problem key is empty")
    source = frame["source"] if "source" in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="string")
    table = pd.DataFrame({"problem": frame["problem"].astype("string"), "f_star": values.astype("float64"),
                          "source": source.fillna(f"file {path.name}").astype("string")})
    spread = table.groupby("problem")["f_star"].agg(["min", "max"])
    conflicting = spread[spread["min"] != spread["max"]]
    if len(conflicting):
        raise UserError(f"{where} gives the problem {conflicting.index[0]} two different values")
    return table.drop_duplicates("problem", ignore_index=True)


def write_f_star(path: Path, table: pd.DataFrame) -> Path:
    """Write a table (atomically) in the format :func:`read_f_star` reads."""
    atomic_write_bytes(path, table[list(COLUMNS)].to_csv(index=False).encode("utf-8"))
    return path


def run_f_star(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The known optima saved in a run directory (``reference.csv``, ``known_f_star.csv``), or ``None``."""
    tables = [read_f_star(Path(run_dir) / name) for name in (REFERENCE_FILE, USER_F_STAR_FILE)
              if (Path(run_dir) / name).is_file()]
    return pd.concat(tables, ignore_index=True) if tables else None

r"""What the report shows, computed from one or more results tables (no plotting here).

Definitions used throughout the report:

- A *problem* is one ``(dataset, dtype)``; its seeds are instances of it (a seeded synthetic
  dataset draws a different ``Y`` per seed). Devices and runs are overlaid on one problem:
  they solve the same instances and differ in how fast they do it.
- A *curve* is one ``(run, device, solver)`` of a problem, summarised over its seeds.
- :math:`f^*` of an instance ``(dataset, dtype, seed)`` is the lowest finite loss recorded
  on it by any solver, on any device, in any of the runs compared.
- Relative suboptimality :math:`(f - f^*) / f^*` (the absolute gap :math:`f - f^*` for an
  instance with :math:`f^* = 0`, which an exact factorisation can reach).
- A median curve takes, at each recorded iteration, the median over seeds of the value and
  of the solver time, with a quantile band; it keeps the iterations that more than half of
  the curve's seeds recorded, so it ends where most of its runs ended.
- Time to tolerance: the solver time at the first recorded point whose relative
  suboptimality is at most ``tol`` (an upper bound within one record interval), median over
  seeds with a seed that never got there counted as infinite ("not reached").
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proxmf_bench.errors import UserError
from proxmf_bench.results.table import COLUMNS, EXTRA_COLUMNS, LOSS_DERIVED_COLUMNS, META_FILE, load_meta, load_results

PROBLEM_KEYS = ["dataset", "dtype"]
CURVE_KEYS = ["run", "device", "solver"]
CELL_KEYS = PROBLEM_KEYS + CURVE_KEYS + ["seed"]
TOLERANCES = (1e-2, 1e-4, 1e-6)
BAND = (0.25, 0.75)

_DERIVED = ("run", "f_star", "subopt")


@dataclass(frozen=True)
class RunData:
    """One run directory: where it is, its short label, its results table and metadata."""

    path: Path
    label: str
    frame: pd.DataFrame
    meta: dict[str, Any]


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Shortest distinct path suffixes: ``a/x, b/y`` -> ``x, y``; ``a/r, b/r`` -> ``a/r, b/r``."""
    resolved = [p.resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise UserError(f"run directory {paths[i]} is given twice")
    depth = max(len(p.parts) for p in resolved)
    for k in range(1, depth + 1):
        labels = ["/".join(p.parts[-k:]) for p in resolved]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in resolved]


def load_runs(run_dirs: Iterable[str | os.PathLike]) -> list[RunData]:
    """Read each run directory (a ``results.parquet`` path is taken as its directory)."""
    paths = [Path(d) for d in run_dirs]
    paths = [p.parent if p.is_file() else p for p in paths]
    if not paths:
        raise UserError("no run directory given")
    runs = []
    for path, label in zip(paths, run_labels(paths)):
        frame = load_results(path)
        meta = load_meta(path) if (path / META_FILE).is_file() else {}
        runs.append(RunData(path, label, frame, meta))
    return runs


def combine_runs(runs: Sequence[RunData]) -> pd.DataFrame:
    """One table with a ``run`` column (the run's label), in the order the runs were given."""
    frames = [run.frame.assign(run=run.label) for run in runs if not run.frame.empty]
    if not frames:
        raise UserError("no results to report: the run directories hold no recorded points")
    frame = pd.concat(frames, ignore_index=True)
    frame["run"] = frame["run"].astype("string")
    frame["error"] = frame["error"].fillna("") if "error" in frame else ""
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Ground-truth metric columns with at least one value, without per-component ones.

    Columns derived from the loss alone (``rel_error``) are left out: the loss is plotted.

    A column ``<name>_<k>`` is the component ``k`` of the metric ``<name>`` when ``<name>``
    is itself a column (``sad_deg_0`` of ``sad_deg``).
    """
    known = set(COLUMNS) | set(EXTRA_COLUMNS) | set(_DERIVED) | set(LOSS_DERIVED_COLUMNS)
    candidates = [c for c in frame.columns if c not in known and pd.api.types.is_numeric_dtype(frame[c])]
    out = []
    for col in candidates:
        match = re.fullmatch(r"(.+)_(\d+)", col)
        if match and match.group(1) in frame.columns:
            continue
        if frame[col].notna().any():
            out.append(col)
    return out


def add_suboptimality(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``f_star`` (per dataset, dtype and seed) and ``subopt`` (see the module docstring)."""
    finite = frame["loss"].where(np.isfinite(frame["loss"]))
    groups = [frame[k] for k in ("dataset", "dtype", "seed")]
    f_star = finite.groupby(groups).transform("min")
    scale = f_star.where(f_star > 0, 1.0)
    return frame.assign(f_star=f_star, subopt=(frame["loss"] - f_star) / scale)


def median_curves(frame: pd.DataFrame, value: str, band: tuple[float, float] = BAND) -> pd.DataFrame:
    """Median over seeds of ``value`` and ``time_s`` at each iteration of each curve.

    Returns one row per (problem, curve, iteration) with ``time_s``, ``median``, ``lo``,
    ``hi`` (the ``band`` quantiles) and ``n`` (seeds with a finite value there).
    """
    keys = PROBLEM_KEYS + CURVE_KEYS
    n_seeds = frame.groupby(keys).seed.nunique().rename("n_seeds")
    data = frame[np.isfinite(frame[value].astype("float64"))]
    columns = keys + ["iteration", "time_s", "median", "lo", "hi", "n"]
    if data.empty:
        return pd.DataFrame(columns=columns)
    grouped = data.groupby(keys + ["iteration"])[value]
    out = pd.DataFrame({
        "time_s": data.groupby(keys + ["iteration"]).time_s.median(),
        "median": grouped.median(),
        "lo": grouped.quantile(band[0]),
        "hi": grouped.quantile(band[1]),
        "n": grouped.size(),
    }).reset_index()
    out = out.join(n_seeds, on=keys)
    out = out[2 * out["n"] > out["n_seeds"]]
    return out[columns].sort_values(keys + ["iteration"], ignore_index=True)


def time_to_tolerance(frame: pd.DataFrame, tolerances: Sequence[float] = TOLERANCES) -> pd.DataFrame:
    """Median over seeds of the solver time to reach each relative suboptimality.

    Needs the ``subopt`` column of :func:`add_suboptimality`. One row per (problem, curve,
    tolerance) with ``tol``, ``time_s`` (``inf`` when the median seed never reached it),
    ``reached`` and ``n_seeds``.
    """
    cells = frame.groupby(CELL_KEYS).size().index
    ordered = frame.sort_values("iteration")
    parts = []
    for tol in tolerances:
        hit = ordered[ordered["subopt"] <= tol].groupby(CELL_KEYS).time_s.first()
        times = hit.reindex(cells, fill_value=math.inf).rename("time_s").reset_index()
        parts.append(times.assign(tol=tol))
    per_seed = pd.concat(parts, ignore_index=True)
    keys = PROBLEM_KEYS + CURVE_KEYS + ["tol"]
    summary = per_seed.groupby(keys, sort=False).time_s.agg(
        time_s=lambda t: float(np.median(t.to_numpy())),
        reached=lambda t: int(np.isfinite(t.to_numpy()).sum()),
        n_seeds="size",
    )
    return summary.reset_index()


def _stop_counts(reasons: pd.Series) -> str:
    counts = reasons.value_counts()
    return ", ".join(f"{reason} x{n}" if n > 1 else str(reason) for reason, n in sorted(counts.items()))


def _unique_errors(errors: pd.Series) -> str:
    messages = [e for e in pd.unique(errors.dropna()) if e]
    return "; ".join(messages)


def cell_summary(frame: pd.DataFrame, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """One row per curve: medians over seeds of the final state of each run.

    Columns: the problem and curve keys, ``seeds``, ``loss`` and ``subopt`` (final),
    ``iterations``, ``time_s`` (total solver time), ``time_per_iter`` (solver time after
    ``init`` over the iterations), each metric (final value), ``stop_reasons`` (counts) and
    ``errors`` (distinct messages). Needs the ``subopt`` column.
    """
    ordered = frame.sort_values(CELL_KEYS + ["iteration"])
    grouped = ordered.groupby(CELL_KEYS, sort=False)
    first, last = grouped.head(1).set_index(CELL_KEYS), grouped.tail(1).set_index(CELL_KEYS)
    span = last["iteration"] - first["iteration"]
    cells = pd.DataFrame({
        "loss": last["loss"],
        "subopt": last["subopt"],
        "iterations": last["iteration"],
        "time_s": last["time_s"],
        "time_per_iter": ((last["time_s"] - first["time_s"]) / span).where(span > 0),
        **{m: last[m] for m in metrics},
        "stop_reason": last["stop_reason"],
        "error": last["error"],
    }).reset_index()
    keys = PROBLEM_KEYS + CURVE_KEYS
    numeric = ["loss", "subopt", "iterations", "time_s", "time_per_iter", *metrics]
    per_curve = cells.groupby(keys, sort=False)
    out = per_curve[numeric].median()
    out.insert(0, "seeds", per_curve.size())
    out["stop_reasons"] = per_curve["stop_reason"].agg(_stop_counts)
    out["errors"] = per_curve["error"].agg(_unique_errors)
    return out.reset_index()


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that stopped on an error, a divergence, an interruption or a lost worker process,
    one row per distinct (curve, problem, stop reason, message), with the seeds it happened on."""
    last = frame.sort_values("iteration").groupby(CELL_KEYS, sort=False).tail(1)
    failed = last[last["stop_reason"].isin(["error", "diverged", "interrupted", "worker_lost"])]
    columns = CURVE_KEYS + PROBLEM_KEYS + ["stop_reason", "error"]
    if failed.empty:
        return pd.DataFrame(columns=columns + ["seeds"])
    out = failed.groupby(columns, sort=False).seed.agg(lambda s: ", ".join(str(v) for v in sorted(s)))
    return out.rename("seeds").reset_index()

r"""What the report shows, computed from one or more results tables (no plotting here).

Definitions used throughout the report:

- A *problem* is one ``(dataset with its parameters, dtype, seed, objective)``: the
  ``problem`` column of the results (older tables without it: dataset, dtype and seed). The
  objective is the loss plus the penalties of the solver's prox configuration; MU, NALMU, the
  peers and ``pgm`` with the default proxes all solve the nonnegative problem (``nonneg``).
  Devices and runs of one problem are overlaid: they solve the same problem.
- The report groups problems by ``(dataset, dtype, objective)`` (:data:`PROBLEM_KEYS`); their
  seeds are instances of it. A *curve* is one ``(run, device, solver)`` of such a group,
  summarised over its seeds.
- The *value* compared is the ``objective`` column (the loss in older tables); a solver whose
  objective is unknown has no value, so no suboptimality (``objective_note`` says why).
- :math:`f^*` of a problem is the lowest of: its known optima (a reference optimum computed by
  ``proxmf-bench reference`` or ``run --reference``, a table given with ``--f-star``) and the
  lowest finite value any run shown recorded on it. ``f_star_source`` says which: the
  reference (with how it was computed), the file, or ``best run: <solver>``. Adding a run
  changes :math:`f^*` only if that run beats every known optimum.
- Relative suboptimality :math:`(F - f^*) / f^*` (the absolute gap :math:`F - f^*` for a
  problem with :math:`f^* = 0`, which an exact factorisation can reach).
- A median curve takes, at each recorded iteration, the median over seeds of the value and
  of the solver time, with a quantile band; it keeps the iterations that more than half of
  the curve's seeds recorded, so it ends where most of its runs ended.
- Time to tolerance: the solver time at the first recorded point whose relative
  suboptimality is at most ``tol`` (an upper bound within one record interval), per seed
  (with the spread ``time_s_min`` to ``time_s_max`` over ``--repeat`` runs), and its median
  over seeds, with a seed that never got there counted as infinite ("not reached").
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
from proxmf_bench.results.f_star import run_f_star
from proxmf_bench.results.table import (
    COLUMNS,
    EXTRA_COLUMNS,
    LOSS_DERIVED_COLUMNS,
    META_FILE,
    is_param_column,
    load_meta,
    load_results,
)

PROBLEM_KEYS = ["dataset", "dtype", "objective_name"]
CURVE_KEYS = ["run", "device", "solver"]
CELL_KEYS = PROBLEM_KEYS + CURVE_KEYS + ["seed"]
TOLERANCES = (1e-2, 1e-4, 1e-6)
# Relative accuracy of the recorded objective per dtype (float32: the README's claim, checked by
# benchmarks/float32_accuracy.py; float64: the Gram form's cancellation, 7e-10 measured on
# nnls_toy): a run must beat a known optimum by more to replace it.
ACCURACY = {"float64": 1e-8, "float32": 1e-5}
BAND = (0.25, 0.75)

_DERIVED = ("run", "f_star", "f_star_source", "subopt", "value")


@dataclass(frozen=True)
class RunData:
    """One run directory: where it is, its short label, its results table, metadata and the
    known optima saved with it (:func:`~proxmf_bench.results.f_star.run_f_star`)."""

    path: Path
    label: str
    frame: pd.DataFrame
    meta: dict[str, Any]
    f_star: pd.DataFrame | None = None


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
        runs.append(RunData(path, label, frame, meta, run_f_star(path)))
    return runs


def known_optima(runs: Sequence[RunData], extra: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The known optima saved with the runs and those of ``extra`` (a ``--f-star`` table), together."""
    tables = [t for t in (*(run.f_star for run in runs), extra) if t is not None]
    return pd.concat(tables, ignore_index=True) if tables else None


def combine_runs(runs: Sequence[RunData]) -> pd.DataFrame:
    """One table with a ``run`` column (the run's label), in the order the runs were given.

    Tables written before objectives were recorded get them filled in: the objective is the
    loss (their solvers were compared on it), the problem ``dataset|dtype|seed``.
    """
    frames = [run.frame.assign(run=run.label) for run in runs if not run.frame.empty]
    if not frames:
        raise UserError("no results to report: the run directories hold no recorded points")
    frame = pd.concat(frames, ignore_index=True)
    frame["run"] = frame["run"].astype("string")
    frame["error"] = frame["error"].fillna("") if "error" in frame else ""
    return with_problems(frame)


def with_problems(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns ``problem``, ``objective``, ``objective_name`` and
    ``objective_note`` filled in for rows of tables written before they were recorded: the
    objective is the loss (those solvers were compared on it), the problem
    ``dataset|dtype|seed``, the objective ``nonneg``."""
    if {"problem", "objective", "objective_name", "objective_note"} <= set(frame.columns) \
            and not frame["problem"].isna().any():
        return frame
    frame = frame.copy()
    if "objective" not in frame:
        frame["objective"] = math.nan
    for column in ("problem", "objective_name", "objective_note"):
        if column not in frame:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["objective"] = pd.to_numeric(frame["objective"], errors="coerce")
    old = frame["problem"].isna()
    if old.any():
        frame["objective"] = frame["objective"].astype("float64").where(~old, frame["loss"])
        frame["problem"] = frame["problem"].astype("string").where(
            ~old, frame["dataset"].astype(str) + "|" + frame["dtype"].astype(str) + "|seed " + frame["seed"].astype(str))
    frame["objective"] = frame["objective"].astype("float64")
    frame["objective_name"] = frame["objective_name"].astype("string").fillna("nonneg")
    frame["objective_note"] = frame["objective_note"].astype("string").fillna("")
    frame["problem"] = frame["problem"].astype("string")
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Ground-truth metric columns with at least one value, without per-component ones.

    Columns derived from the loss alone (``rel_error``) are left out: the loss is plotted.

    A column ``<name>_<k>`` is the component ``k`` of the metric ``<name>`` when ``<name>``
    is itself a column (``sad_deg_0`` of ``sad_deg``).
    """
    known = set(COLUMNS) | set(EXTRA_COLUMNS) | set(_DERIVED) | set(LOSS_DERIVED_COLUMNS)
    candidates = [c for c in frame.columns if c not in known and not is_param_column(c)
                  and pd.api.types.is_numeric_dtype(frame[c])]
    out = []
    for col in candidates:
        match = re.fullmatch(r"(.+)_(\d+)", col)
        if match and match.group(1) in frame.columns:
            continue
        if frame[col].notna().any():
            out.append(col)
    return out


def f_star_table(frame: pd.DataFrame, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """``f*`` of every problem of ``frame`` (see the module docstring), one row each.

    Columns: ``problem``, the report's problem keys, ``seed``, ``f_star`` and
    ``f_star_source``. ``known`` is a table of known optima (``problem``, ``f_star``,
    ``source``); the lowest value for a problem wins, a known one on a tie with a run.
    """
    frame = with_problems(frame)
    value = frame["objective"]
    finite = frame[np.isfinite(value.to_numpy(float))]
    best = finite.sort_values(["objective"], kind="stable").groupby("problem", sort=False).head(1)
    source = "best run: " + best["solver"].astype(str)
    if frame["run"].nunique() > 1:
        source = source + " (" + best["run"].astype(str) + ")"
    runs = pd.DataFrame({"problem": best["problem"], "f_star": best["objective"], "source": source})
    keys = frame.drop_duplicates("problem")[["problem", *PROBLEM_KEYS, "seed"]]
    chosen = runs.set_index("problem")
    if known is not None and len(known):
        known = known[known["problem"].isin(set(frame["problem"]))].sort_values("f_star", kind="stable")
        known = known.drop_duplicates("problem").set_index("problem")
        # a run replaces a known optimum only when it is lower by more than the accuracy of
        # the recorded objective in its dtype (rounding, not a better point, otherwise)
        slack = keys.set_index("problem")["dtype"].map(lambda d: ACCURACY.get(d, ACCURACY["float32"]))
        run_best = chosen["f_star"].reindex(known.index)
        tolerance = slack.reindex(known.index) * known["f_star"].abs()
        keep = ~(run_best < known["f_star"] - tolerance)
        chosen = pd.concat([chosen.drop(known.index[keep], errors="ignore"), known[keep]])
    out = keys.merge(chosen[["f_star", "source"]].reset_index(), on="problem", how="left")
    out = out.rename(columns={"source": "f_star_source"})
    out["f_star_source"] = out["f_star_source"].fillna("none: no finite objective recorded").astype("string")
    return out.reset_index(drop=True)


def add_suboptimality(frame: pd.DataFrame, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add ``value`` (the objective compared), ``f_star``, ``f_star_source`` (per problem, see
    :func:`f_star_table`) and ``subopt`` (see the module docstring)."""
    frame = with_problems(frame)
    table = f_star_table(frame, known).set_index("problem")
    f_star = frame["problem"].map(table["f_star"]).astype("float64")
    source = frame["problem"].map(table["f_star_source"]).astype("string")
    scale = f_star.where(f_star > 0, 1.0)
    value = frame["objective"]
    return frame.assign(value=value, f_star=f_star, f_star_source=source, subopt=(value - f_star) / scale)


def median_curves(frame: pd.DataFrame, value: str, band: tuple[float, float] = BAND) -> pd.DataFrame:
    """Median over seeds of ``value`` and ``time_s`` at each iteration of each curve.

    Returns one row per (problem, curve, iteration) with ``time_s``, ``median``, ``lo``,
    ``hi`` (the ``band`` quantiles) and ``n`` (seeds with a finite value there).
    """
    frame = with_problems(frame)
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


def time_to_tolerance_per_seed(frame: pd.DataFrame, tolerances: Sequence[float] = TOLERANCES) -> pd.DataFrame:
    """The solver time to reach each relative suboptimality, per seed.

    Needs the ``subopt`` column of :func:`add_suboptimality`. One row per (problem, curve,
    seed, tolerance) with ``tol``, ``iteration``, ``time_s`` and its spread over repeats
    ``time_s_min``, ``time_s_max`` at the first point at or below ``tol`` (``inf`` and no
    iteration when the seed never got there).
    """
    ordered = with_problems(frame).sort_values("iteration", kind="stable")
    cells = ordered.groupby(CELL_KEYS, sort=False).size().index
    spread = {c: (c if c in ordered and ordered[c].notna().any() else "time_s") for c in ("time_s_min", "time_s_max")}
    parts = []
    for tol in tolerances:
        hits = ordered[ordered["subopt"] <= tol].groupby(CELL_KEYS, sort=False).head(1).set_index(CELL_KEYS)
        hits = hits.reindex(cells)
        part = pd.DataFrame({
            "iteration": hits["iteration"],
            "time_s": hits["time_s"].fillna(math.inf),
            "time_s_min": hits[spread["time_s_min"]].fillna(hits["time_s"]).fillna(math.inf),
            "time_s_max": hits[spread["time_s_max"]].fillna(hits["time_s"]).fillna(math.inf),
        }).reset_index()
        parts.append(part.assign(tol=tol))
    return pd.concat(parts, ignore_index=True)


def quartiles(values: np.ndarray) -> tuple[float, float, float]:
    """25th, 50th and 75th percentiles (linear), ``inf`` counted as a value: a quartile
    between two ``inf`` is ``inf`` (not ``nan``); ``nan`` where there are no values."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return (math.nan,) * 3
    q = np.quantile(values, [0.25, 0.5, 0.75]) if np.isfinite(values).all() else np.array(
        [_quantile_with_inf(np.sort(values), p) for p in (0.25, 0.5, 0.75)])
    return float(q[0]), float(q[1]), float(q[2])


def _quantile_with_inf(ordered: np.ndarray, p: float) -> float:
    position = p * (len(ordered) - 1)
    below, above = ordered[math.floor(position)], ordered[math.ceil(position)]
    if math.isinf(above):
        return math.inf if position > math.floor(position) or math.isinf(below) else float(below)
    return float(below + (above - below) * (position - math.floor(position)))


def time_to_tolerance(frame: pd.DataFrame, tolerances: Sequence[float] = TOLERANCES) -> pd.DataFrame:
    """Median over seeds of the solver time to reach each relative suboptimality.

    Needs the ``subopt`` column of :func:`add_suboptimality`. One row per (problem, curve,
    tolerance) with ``tol``, ``time_s`` (``inf`` when the median seed never reached it), its
    quartiles over seeds ``time_s_q25`` and ``time_s_q75`` (:func:`quartiles`), ``reached``
    and ``n_seeds``.
    """
    per_seed = time_to_tolerance_per_seed(frame, tolerances)
    keys = PROBLEM_KEYS + CURVE_KEYS + ["tol"]
    grouped = per_seed.groupby(keys, sort=False).time_s
    summary = grouped.agg(
        time_s=lambda t: float(np.median(t.to_numpy())),
        time_s_q25=lambda t: quartiles(t.to_numpy())[0],
        time_s_q75=lambda t: quartiles(t.to_numpy())[2],
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


SPREAD_COLUMNS = ("loss", "objective", "subopt", "time_s", "time_per_iter")


def final_states(frame: pd.DataFrame, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """The final state of each run (one row per curve and seed): ``loss``, ``objective``,
    ``subopt``, ``iterations``, ``time_s`` (total solver time), ``time_per_iter`` (solver time
    after ``init`` over the iterations), each metric, ``stop_reason`` and ``error``."""
    ordered = with_problems(frame).sort_values(CELL_KEYS + ["iteration"])
    grouped = ordered.groupby(CELL_KEYS, sort=False)
    first, last = grouped.head(1).set_index(CELL_KEYS), grouped.tail(1).set_index(CELL_KEYS)
    span = last["iteration"] - first["iteration"]
    return pd.DataFrame({
        "loss": last["loss"],
        "objective": last["value"],
        "subopt": last["subopt"],
        "iterations": last["iteration"],
        "time_s": last["time_s"],
        "time_per_iter": ((last["time_s"] - first["time_s"]) / span).where(span > 0),
        **{m: last[m] for m in metrics},
        "stop_reason": last["stop_reason"],
        "error": last["error"],
    }).reset_index()


def cell_summary(frame: pd.DataFrame, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """One row per curve: medians over seeds of the final state of each run (:func:`final_states`).

    Columns: the problem and curve keys, ``seeds``, the medians of ``loss``, ``objective``,
    ``subopt``, ``iterations``, ``time_s``, ``time_per_iter`` and each metric, then the
    quartiles over seeds ``<column>_q25`` and ``<column>_q75`` of each of those but
    ``iterations``, ``stop_reasons`` (counts) and ``errors`` (distinct messages). Needs the
    ``subopt`` and ``value`` columns (:func:`add_suboptimality`).
    """
    cells = final_states(frame, metrics)
    keys = PROBLEM_KEYS + CURVE_KEYS
    numeric = ["loss", "objective", "subopt", "iterations", "time_s", "time_per_iter", *metrics]
    per_curve = cells.groupby(keys, sort=False)
    out = per_curve[numeric].median()
    out.insert(0, "seeds", per_curve.size())
    for column in [*SPREAD_COLUMNS, *metrics]:
        out[f"{column}_q25"] = per_curve[column].quantile(0.25)
        out[f"{column}_q75"] = per_curve[column].quantile(0.75)
    out["stop_reasons"] = per_curve["stop_reason"].agg(_stop_counts)
    out["errors"] = per_curve["error"].agg(_unique_errors)
    return out.reset_index()


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that stopped on an error, a divergence, an interruption or a lost worker process,
    one row per distinct (curve, problem, stop reason, message), with the seeds it happened on."""
    last = with_problems(frame).sort_values("iteration").groupby(CELL_KEYS, sort=False).tail(1)
    failed = last[last["stop_reason"].isin(["error", "diverged", "interrupted", "worker_lost"])]
    columns = CURVE_KEYS + PROBLEM_KEYS + ["stop_reason", "error"]
    if failed.empty:
        return pd.DataFrame(columns=columns + ["seeds"])
    out = failed.groupby(columns, sort=False).seed.agg(lambda s: ", ".join(str(v) for v in sorted(s)))
    return out.rename("seeds").reset_index()

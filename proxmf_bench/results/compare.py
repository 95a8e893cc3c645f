r"""Paired comparisons of a candidate solver against a baseline: did my prox help?

Pure functions over the long results table (with ``run``, ``value``, ``subopt``: see
:func:`~proxmf_bench.results.analysis.add_suboptimality`); ``proxmf-bench compare`` and the
report's "Paired comparisons" section print what they return.

Definitions:

- An *instance* is one ``(dataset, dtype, seed)``, and the device and run too when both sides
  have the same ones (so CPU against GPU, or a run against another, pairs across them). The
  baseline and the candidate each have at most one cell per instance; the instances both have
  are the *pairs*.
- Compared per pair, each the final value of the cell unless said otherwise:

  * each ground-truth metric (``sad_deg``, ``rmse_H``, ``fms``...): difference
    :math:`d = c - b` (candidate minus baseline); lower is better except for
    :data:`HIGHER_IS_BETTER`;
  * ``objective``: compared only where the two solve the same problem (same ``problem``
    key, so the same :math:`f^*`), as :math:`d = (F_c - F_b) / f^*`, the difference of their
    relative suboptimalities;
  * ``time_to_<tol>``: the solver time to reach :math:`(F - f^*)/f^* \le tol`, each within its
    own problem (the baseline against the :math:`f^*` of its objective, the candidate of
    its own); ``time_per_iter``: solver time after ``init`` over the iterations. Times are
    compared as ratios, :math:`d = \log(t_c / t_b)`, shown as :math:`\exp(d)` (``x0.5``:
    the candidate takes half the time), so that datasets of different sizes pool.
- Wins, ties and losses count the pairs where the candidate is better, equal, worse. Equal: a
  relative difference within the accuracy of recorded values in the pair's dtype
  (:data:`~proxmf_bench.results.analysis.ACCURACY`: 1e-8 in float64, 1e-5 in float32; for the
  objective, relative to the objective values); for times, ranges over ``--repeat`` timings
  (``time_s_min`` to ``time_s_max``) that overlap, or both never reaching the tolerance.
  Reaching a tolerance beats not reaching it. Pairs where a side has no value (a metric not
  recorded, a cell that errored) are left out.
- The median of :math:`d` over the pairs where both values are finite, with a percentile
  bootstrap confidence interval (:data:`BOOTSTRAP_RESAMPLES` resamples of the pairs, seeded:
  the same table gives the same interval), from :data:`MIN_PAIRS_CI` pairs.
- The two-sided Wilcoxon signed-rank test of :math:`d` (``scipy.stats.wilcoxon``, exact for
  small samples without ties; zero differences dropped), from :data:`MIN_PAIRS_TEST`
  non-zero differences: with fewer, no p-value can fall below 0.05 (five pairs all of one
  sign give p = 2/32), and the verdict says "not enough seeds".
- The verdict: ``better`` / ``worse`` when p < :data:`ALPHA` (by the sign of the median),
  ``no clear difference`` otherwise, ``identical`` when every pair ties, ``neither reached
  it`` when no side of any pair reached the tolerance.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from proxmf_bench.errors import UserError, did_you_mean
from proxmf_bench.plugin.selection import parse_item, split_top_level
from proxmf_bench.results.analysis import (
    ACCURACY,
    CELL_KEYS,
    TOLERANCES,
    add_suboptimality,
    combine_runs,
    known_optima,
    load_runs,
    metric_columns,
    time_to_tolerance_per_seed,
)
from proxmf_bench.results.f_star import read_f_star
from proxmf_bench.results.table import atomic_write_bytes

HIGHER_IS_BETTER = frozenset({"fms"})
MIN_PAIRS_CI = 3
MIN_PAIRS_TEST = 6
BOOTSTRAP_RESAMPLES = 4000
CONFIDENCE = 0.95
ALPHA = 0.05
INSTANCE_KEYS = ["dataset", "dtype", "seed"]
SIDE_KEYS = ["run", "device"]
TIME_PREFIX = "time_to_"

# Turns a selection item into the (solver name, parameters JSON) of its variants (the registry's
# resolution, so that "pgm[lam_H=0.1,prox_H=l1]" finds the solver labelled in another order).
Resolver = Callable[[str], list[tuple[str, str]]]


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a solver label as in the results, in one run or in all."""

    solver: str
    run: str | None = None

    def describe(self) -> str:
        return f"{self.solver}@{self.run}" if self.run is not None else self.solver


@dataclass(frozen=True)
class Comparison:
    baseline: Side
    candidate: Side

    def describe(self) -> str:
        return f"{self.candidate.describe()} vs {self.baseline.describe()}"


# --- selections -----------------------------------------------------------------------------

def split_run(text: str) -> tuple[str, str | None]:
    """``"pgm[lam=1]@before"`` -> ``("pgm[lam=1]", "before")``; no ``@RUN`` -> ``None``."""
    head, at, run = text.strip().rpartition("@")
    if not at or "]" in run or not head:
        return text.strip(), None
    return head.strip(), run.strip()


def _canonical(params_json: str) -> str:
    return json.dumps(json.loads(params_json), sort_keys=True)


def _same_value(recorded: object, given: str) -> bool:
    """Does a recorded parameter value equal a value typed in a selection?"""
    if isinstance(recorded, bool):
        return given.strip().lower() in (("true", "1", "yes") if recorded else ("false", "0", "no"))
    if isinstance(recorded, (int, float)):
        try:
            return math.isclose(float(given), float(recorded), rel_tol=1e-12)
        except ValueError:
            return False
    return str(recorded) == given


def _has_params(params: dict, given: dict) -> bool:
    for key, value in given.items():
        values = value if isinstance(value, list) else [value]
        if key not in params or not any(_same_value(params[key], v) for v in values):
            return False
    return True


def match_solvers(item: str, solvers: pd.DataFrame, resolve: Resolver | None = None) -> list[str]:
    """The solver labels of ``solvers`` (distinct ``solver``, ``solver_name``, ``solver_params``)
    that the selection ``item`` names: its exact label; else the variants the registry resolves
    it to (``resolve``); else every variant of that name with the parameters given."""
    key = item.replace(" ", "")
    exact = [s for s in solvers["solver"] if s.replace(" ", "") == key]
    if exact:
        return exact
    name, given = parse_item(item)
    named = solvers[solvers["solver_name"] == name]
    if named.empty:
        return []
    if resolve is not None:
        try:
            wanted = {(n, _canonical(p)) for n, p in resolve(item)}
        except UserError:  # a parameter the spec does not know, a plugin not loaded: match as given
            wanted = set()
        hits = [r.solver for r in named.itertuples() if (r.solver_name, _canonical(r.solver_params)) in wanted]
        if hits:
            return hits
    return [r.solver for r in named.itertuples() if _has_params(json.loads(r.solver_params), given)]


def _run_of(text: str, runs: Sequence[str], paths: Sequence[Path]) -> str:
    for label, path in zip(runs, paths):
        if text == label or Path(text).resolve() == path.resolve():
            return label
    raise UserError(f"@{text}: no such run among {', '.join(runs)}{did_you_mean(text, runs)}")


def _sides(text: str, frame: pd.DataFrame, paths: Sequence[Path], resolve: Resolver | None, role: str) -> list[Side]:
    runs = list(pd.unique(frame["run"]))
    sides = []
    for item in split_top_level(text):
        if not item:
            raise UserError(f"--{role}: empty item in {text!r}")
        selection, run = split_run(item)
        run = _run_of(run, runs, paths) if run is not None else None
        scope = frame if run is None else frame[frame["run"] == run]
        solvers = scope.drop_duplicates("solver")[["solver", "solver_name", "solver_params"]]
        found = match_solvers(selection, solvers, resolve)
        where = f"run {run}" if run is not None else ("the results" if len(runs) == 1 else f"runs {', '.join(runs)}")
        if not found:
            labels = list(solvers["solver"])
            shown = "; ".join(labels[:8]) + ("; ..." if len(labels) > 8 else "")
            hint = did_you_mean(selection, labels) or did_you_mean(parse_item(selection)[0], set(solvers["solver_name"]))
            raise UserError(f"--{role} {selection!r} matches no solver in {where}{hint} "
                            f"(solvers there: {shown})")
        if len(found) > 1:
            raise UserError(f"--{role} {selection!r} matches {len(found)} solvers in {where}: {'; '.join(found)}; "
                            "name one of them")
        sides.append(Side(found[0], run))
    return sides


def resolve_comparisons(frame: pd.DataFrame, baseline: str, candidate: str | None = None,
                        paths: Sequence[Path] = (), resolve: Resolver | None = None) -> list[Comparison]:
    """The comparisons that ``--baseline`` and ``--candidate`` describe.

    Each is a selection (``name`` or ``name[key=value,...]``, comma-separated for several,
    each optionally ``@RUN``, a run's label or directory). The i-th baseline goes with the i-th
    candidate; one of either goes with every one of the other. Without ``candidate``, or when
    both name the same solver in no run in particular, two runs compare that solver in the
    first run (baseline) against the second (candidate).
    """
    runs = list(pd.unique(frame["run"]))
    bases = _sides(baseline, frame, paths, resolve, "baseline")
    cands = _sides(candidate, frame, paths, resolve, "candidate") if candidate is not None else list(bases)
    if len(bases) != len(cands) and 1 not in (len(bases), len(cands)):
        raise UserError(f"--baseline names {len(bases)} solvers and --candidate {len(cands)}: give as many, or one")
    n = max(len(bases), len(cands))
    pairs = [Comparison(bases[i if len(bases) > 1 else 0], cands[i if len(cands) > 1 else 0]) for i in range(n)]
    out = []
    for pair in pairs:
        if pair.baseline == pair.candidate:
            if pair.baseline.run is not None or len(runs) != 2:
                raise UserError(f"baseline and candidate are both {pair.baseline.describe()}: compare two solvers, "
                                "or one solver in two runs (two run directories, or SOLVER@RUN)")
            pair = Comparison(Side(pair.baseline.solver, runs[0]), Side(pair.candidate.solver, runs[1]))
        out.append(pair)
    return out


def automatic_comparisons(frame: pd.DataFrame) -> list[Comparison]:
    """What the report compares unasked: in each run, every variant of a solver against the
    one with the fewest parameters given (the bare name when it ran); with two runs, each
    solver of both in the first against the second."""
    runs = list(pd.unique(frame["run"]))
    out = []
    for run in runs:
        labels = frame.loc[frame["run"] == run].drop_duplicates("solver")[["solver", "solver_name"]]
        for name, family in labels.groupby("solver_name", sort=False):
            variants = list(family["solver"])
            if len(variants) < 2:
                continue
            base = name if name in variants else min(variants, key=len)
            where = run if len(runs) > 1 else None
            out += [Comparison(Side(base, where), Side(v, where)) for v in variants if v != base]
    if len(runs) == 2:
        first = list(pd.unique(frame.loc[frame["run"] == runs[0], "solver"]))
        second = set(frame.loc[frame["run"] == runs[1], "solver"])
        out += [Comparison(Side(s, runs[0]), Side(s, runs[1])) for s in first if s in second]
    return out


# --- values per cell and pairs --------------------------------------------------------------

def time_metric(tol: float) -> str:
    return f"{TIME_PREFIX}{tol:.0e}"


def parse_metrics(names: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """``--metric`` names (default: every ground-truth metric of the results, then the time to
    each of :data:`TOLERANCES`, the final objective and the time per iteration). A time
    metric may name any tolerance: ``time_to_1e-3``."""
    default = [*available, *(time_metric(t) for t in TOLERANCES), "objective", "time_per_iter"]
    if not names:
        return default
    out = []
    for name in names:
        if name.startswith(TIME_PREFIX):
            try:
                tol = float(name[len(TIME_PREFIX):])
            except ValueError:
                tol = math.nan
            if not (tol > 0):
                raise UserError(f"--metric {name!r}: the tolerance must be a positive number, e.g. time_to_1e-4")
            name = time_metric(tol)
        elif name not in default:
            raise UserError(f"unknown --metric {name!r}{did_you_mean(name, default)} (available: {', '.join(default)})")
        out.append(name)
    return list(dict.fromkeys(out))


def cell_values(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per cell (run, device, solver, dataset, dtype, seed) with its ``problem``, the
    final value of each ground-truth metric, ``subopt`` (final), ``time_per_iter`` and, for
    each ``time_to_<tol>`` of ``metrics``, the time with its range over repeats."""
    ordered = frame.sort_values([*CELL_KEYS, "iteration"], kind="stable")
    grouped = ordered.groupby(CELL_KEYS, sort=False)
    first, last = grouped.head(1).set_index(CELL_KEYS), grouped.tail(1).set_index(CELL_KEYS)
    span = last["iteration"] - first["iteration"]
    truth = [m for m in metrics if m in frame.columns and m not in ("objective", "time_per_iter")]
    out = pd.DataFrame({
        "problem": last["problem"].astype(str),
        "value": last["value"].astype(float),
        "subopt": last["subopt"].astype(float),
        "time_per_iter": ((last["time_s"] - first["time_s"]) / span).where(span > 0).astype(float),
        **{m: last[m].astype(float) for m in truth},
    })
    tolerances = sorted({float(m[len(TIME_PREFIX):]) for m in metrics if m.startswith(TIME_PREFIX)})
    if tolerances:
        times = time_to_tolerance_per_seed(frame, tolerances).set_index([*CELL_KEYS, "tol"])
        for tol in tolerances:
            part = times.xs(tol, level="tol")
            for column, suffix in (("time_s", ""), ("time_s_min", "_min"), ("time_s_max", "_max")):
                out[time_metric(tol) + suffix] = part[column].reindex(out.index).astype(float)
    return out.reset_index()


def pair_cells(values: pd.DataFrame, comparison: Comparison) -> tuple[pd.DataFrame, list[str]]:
    """The instances both sides have, one row each: the instance keys, then each column of
    ``values`` prefixed ``b_`` (baseline) and ``c_`` (candidate); and the keys paired on.

    ``run`` and ``device`` are paired on when both sides have the same set of them, or one
    side several; else (each side in one run, or on one device, and not the same) across
    them. A cell is unique per instance on these keys, so each side has one per pair."""
    def side(s: Side) -> pd.DataFrame:
        rows = values[values["solver"] == s.solver]
        return rows if s.run is None else rows[rows["run"] == s.run]

    base, cand = side(comparison.baseline), side(comparison.candidate)
    keys = list(INSTANCE_KEYS)
    for column in SIDE_KEYS:
        if set(base[column]) == set(cand[column]) or base[column].nunique() > 1 or cand[column].nunique() > 1:
            keys.append(column)
    value_columns = [c for c in values.columns if c not in CELL_KEYS]
    left = base[keys + value_columns].rename(columns={c: f"b_{c}" for c in value_columns})
    right = cand[keys + value_columns].rename(columns={c: f"c_{c}" for c in value_columns})
    paired = left.merge(right, on=keys, how="inner")
    return paired.sort_values(keys, kind="stable", ignore_index=True), keys


# --- statistics -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """The paired statistics of one metric (see the module docstring)."""

    pairs: int
    wins: int
    ties: int
    losses: int
    n: int  # pairs with both values finite: the median, interval and test use these
    median: float  # of d; exp(d) for ratios
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


def bootstrap_median_ci(d: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``d``: the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles (``inverted_cdf``: values the resampled medians take) of
    the medians of ``resamples`` samples of ``d`` drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(d), size=(resamples, len(d)))
    medians = np.median(d[picks], axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha], method="inverted_cdf")
    return float(low), float(high)


def signed_rank_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of ``d`` (zeros dropped)."""
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def summarize(b: np.ndarray, c: np.ndarray, higher_is_better: bool = False, ratio: bool = False,
              tied: np.ndarray | None = None, rtol: float | np.ndarray = ACCURACY["float64"],
              seed: int = 0) -> Summary:
    """Wins, ties, losses, the median of ``d`` with its interval, the test and the verdict, over
    the pairs ``(b[i], c[i])`` (see the module docstring). ``ratio``: ``d = log(c / b)`` and
    an infinite value is "never": finite beats it, two of them tie. ``tied`` marks more pairs
    as ties (overlapping ranges of repeats); ``rtol`` (per pair, or one) is the relative
    difference that still ties. Pairs with a NaN are left out."""
    b, c = np.asarray(b, float), np.asarray(c, float)
    keep = ~(np.isnan(b) | np.isnan(c))
    tied = np.zeros(len(b), bool) if tied is None else np.asarray(tied, bool)
    rtol = np.broadcast_to(np.asarray(rtol, float), b.shape)
    b, c, tied, rtol = b[keep], c[keep], tied[keep], rtol[keep]
    sign = 1.0 if higher_is_better else -1.0  # > 0: the candidate is better
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.abs(b), np.abs(c))
        close = np.isfinite(b) & np.isfinite(c) & (np.abs(c - b) <= rtol * scale)
        equal = (b == c) | close | tied
        gain = sign * np.where(np.isinf(b) & np.isinf(c), 0.0, c - b)
    finite = np.isfinite(b) & np.isfinite(c) & ((b > 0) & (c > 0) if ratio else True)
    used = np.log(c[finite] / b[finite]) if ratio else c[finite] - b[finite]
    wins, ties = int(((gain > 0) & ~equal).sum()), int(equal.sum())
    losses = len(b) - wins - ties
    n = len(used)
    median = ci_low = ci_high = p_value = math.nan
    if n:
        median = float(np.median(used))
        if n >= MIN_PAIRS_CI:
            ci_low, ci_high = bootstrap_median_ci(used, seed)
    nonzero = int(np.count_nonzero(used))
    if not len(b):
        verdict = "no pairs"
    elif np.all(np.isinf(b) & np.isinf(c)):
        verdict = "neither reached it"
    elif ties == len(b):
        verdict = "identical"
    elif nonzero < MIN_PAIRS_TEST:
        what = "pairs" if n == len(b) else "pairs with both values"
        verdict = f"not enough seeds ({nonzero} {what}, {MIN_PAIRS_TEST} needed)"
    else:
        p_value = signed_rank_p(used)
        better = sign * median > 0
        verdict = ("better" if better else "worse") if p_value < ALPHA and median != 0 else "no clear difference"
    if ratio and n:
        median, ci_low, ci_high = (math.exp(v) if not math.isnan(v) else v for v in (median, ci_low, ci_high))
    return Summary(len(b), wins, ties, losses, n, median, ci_low, ci_high, p_value, verdict)


# --- the verdict table ----------------------------------------------------------------------

VERDICT_COLUMNS = ["comparison", "baseline", "candidate", "dataset", "metric", "better", "scale", "pairs", "wins",
                   "ties", "losses", "n", "median", "ci_low", "ci_high", "p_value", "verdict"]


def _accuracy(paired: pd.DataFrame) -> np.ndarray:
    return paired["dtype"].map(ACCURACY).fillna(ACCURACY["float32"]).to_numpy(float)


def _metric_summary(paired: pd.DataFrame, metric: str, seed: int) -> Summary | None:
    if metric == "objective":
        same = paired[paired["b_problem"] == paired["c_problem"]]
        if same.empty:
            return None
        b, c = same["b_value"].to_numpy(float), same["c_value"].to_numpy(float)
        equal = np.abs(c - b) <= _accuracy(same) * np.maximum(np.abs(b), np.abs(c))
        return summarize(same["b_subopt"], same["c_subopt"], tied=equal, seed=seed)
    if f"b_{metric}" not in paired or not (paired[f"b_{metric}"].notna() & paired[f"c_{metric}"].notna()).any():
        return None
    if metric.startswith(TIME_PREFIX):
        overlap = (paired[f"b_{metric}_min"] <= paired[f"c_{metric}_max"]) & (
            paired[f"c_{metric}_min"] <= paired[f"b_{metric}_max"])
        overlap &= np.isfinite(paired[f"b_{metric}"]) & np.isfinite(paired[f"c_{metric}"])
        return summarize(paired[f"b_{metric}"], paired[f"c_{metric}"], ratio=True, tied=overlap.to_numpy(), seed=seed)
    if metric == "time_per_iter":
        return summarize(paired["b_time_per_iter"], paired["c_time_per_iter"], ratio=True, seed=seed)
    return summarize(paired[f"b_{metric}"], paired[f"c_{metric}"], higher_is_better=metric in HIGHER_IS_BETTER,
                     rtol=_accuracy(paired), seed=seed)


def _instances(values: pd.DataFrame, side: Side) -> str:
    """``"synthetic seeds 0, 1; samson seeds 0"``: where a side ran."""
    rows = values[(values["solver"] == side.solver) & ((values["run"] == side.run) if side.run else True)]
    parts = [f"{dataset} ({', '.join(pd.unique(part['dtype']))}, {', '.join(pd.unique(part['device']))}) seeds "
             + ", ".join(str(s) for s in sorted(set(part["seed"]))) for dataset, part in rows.groupby("dataset")]
    return "; ".join(parts)


@dataclass(frozen=True)
class Verdicts:
    """The verdict table (:data:`VERDICT_COLUMNS`, one row per comparison, dataset (and
    ``all`` for several) and metric) and one note per comparison: what was paired and what
    was not compared."""

    table: pd.DataFrame
    notes: dict[str, list[str]]


def verdict_table(frame: pd.DataFrame, comparisons: Sequence[Comparison], metrics: Sequence[str] | None = None,
                  seed: int = 0, require_pairs: bool = True) -> Verdicts:
    """Compare each of ``comparisons`` on ``metrics`` (:func:`parse_metrics`; default: all).

    ``require_pairs``: a comparison without a common instance is a :class:`UserError` (else it
    is left out, as the report does)."""
    metrics = parse_metrics(metrics, metric_columns(frame))
    values = cell_values(frame, metrics)
    rows, notes = [], {}
    for comparison in comparisons:
        paired, keys = pair_cells(values, comparison)
        name = comparison.describe()
        if paired.empty:
            if require_pairs:
                raise UserError(f"{name}: no instance ({', '.join(keys)}) in common (baseline: "
                                f"{_instances(values, comparison.baseline)}; candidate: "
                                f"{_instances(values, comparison.candidate)})")
            continue
        n_inst = len(paired)
        note = [f"{n_inst} paired instance(s) on {', '.join(keys)}"]
        if "objective" in metrics and not (paired["b_problem"] == paired["c_problem"]).any():
            note.append("final objective not compared: the two solve different problems")
        notes[name] = note
        groups = [(d, part) for d, part in paired.groupby("dataset", sort=False)]
        if len(groups) > 1:
            groups.append(("all", paired))
        for dataset, part in groups:
            for metric in metrics:
                summary = _metric_summary(part, metric, seed)
                if summary is None:
                    continue
                ratio = metric.startswith(TIME_PREFIX) or metric == "time_per_iter"
                better = "higher" if metric in HIGHER_IS_BETTER else "lower"
                rows.append([name, comparison.baseline.describe(), comparison.candidate.describe(), dataset, metric,
                             better, "ratio" if ratio else "difference", summary.pairs, summary.wins, summary.ties,
                             summary.losses, summary.n, summary.median, summary.ci_low, summary.ci_high,
                             summary.p_value, summary.verdict])
    return Verdicts(pd.DataFrame(rows, columns=VERDICT_COLUMNS), notes)


def format_change(median: float, low: float, high: float, scale: str) -> str:
    """``+1.23 [-0.5, +2.1]`` for a difference, ``x0.62 [0.55, 0.7]`` for a ratio."""
    if math.isnan(median):
        return "-"
    if scale == "ratio":
        text = f"x{median:.3g}"
        return text + (f" [{low:.3g}, {high:.3g}]" if not math.isnan(low) else "")
    text = f"{median:+.3g}"
    return text + (f" [{low:+.3g}, {high:+.3g}]" if not math.isnan(low) else "")


def format_verdicts(verdicts: Verdicts) -> str:
    """The verdict table for a terminal: one block per comparison."""
    table = verdicts.table
    lines = []
    for name, part in table.groupby("comparison", sort=False):
        lines.append(f"{name}  ({'; '.join(verdicts.notes.get(name, []))})")
        shown = pd.DataFrame({
            "dataset": part["dataset"],
            "metric": part["metric"] + np.where(part["better"] == "higher", " (higher)", ""),
            "n": part["n"].astype(str),
            "W/T/L": part["wins"].astype(str) + "/" + part["ties"].astype(str) + "/" + part["losses"].astype(str),
            "median cand-base [95% CI]": [format_change(*r) for r in
                                          part[["median", "ci_low", "ci_high", "scale"]].itertuples(index=False)],
            "p": part["p_value"].map(lambda p: "-" if math.isnan(p) else f"{p:.3g}"),
            "verdict": part["verdict"],
        })
        shown["dataset"] = shown["dataset"].where(shown["dataset"] != shown["dataset"].shift(), "")
        lines.append(shown.to_string(index=False, justify="left"))
        lines.append("")
    lines.append("W/T/L: candidate wins/ties/losses over the pairs; times as ratios cand/base (x0.5: half the "
                 "time); p: two-sided Wilcoxon signed-rank")
    return "\n".join(lines)


def write_verdicts(path: str | os.PathLike, verdicts: Verdicts) -> Path:
    """The verdict table as CSV (atomically)."""
    atomic_write_bytes(Path(path), verdicts.table.to_csv(index=False).encode())
    return Path(path)


def compare_runs(run_dirs: Sequence[str | os.PathLike], baseline: str, candidate: str | None = None,
                 metrics: Sequence[str] | None = None, f_star: str | os.PathLike | None = None,
                 resolve: Resolver | None = None, seed: int = 0) -> Verdicts:
    """Read the run directories (with their known optima and ``f_star``, as the report does)
    and compare ``candidate`` against ``baseline`` (:func:`resolve_comparisons`)."""
    runs = load_runs(run_dirs)
    extra = read_f_star(f_star) if f_star is not None else None
    frame = add_suboptimality(combine_runs(runs), known_optima(runs, extra))
    metrics = parse_metrics(metrics, metric_columns(frame))
    comparisons = resolve_comparisons(frame, baseline, candidate, [r.path for r in runs], resolve)
    return verdict_table(frame, comparisons, metrics, seed=seed)

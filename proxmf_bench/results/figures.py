"""The report's figures, drawn with matplotlib's object API (no pyplot, no display needed).

Each solver variant keeps one colour in every figure of a report; runs and devices overlaid
on one problem are told apart by the line style (and, in bar charts, the hatch). Output is
deterministic: fixed fonts shipped with matplotlib, a fixed SVG hash salt, and no dates or
software versions in the PNG, SVG and PDF metadata.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from proxmf_bench.results.analysis import CURVE_KEYS, TOLERANCES, median_curves, time_to_tolerance

FORMATS = ("png", "svg", "pdf")
DPI = 150

_RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: same glyphs on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.5,
    "svg.hashsalt": "proxmf-bench",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,  # embedded TrueType: text stays text when pasted into a paper
}
_METADATA = {
    "png": {"Software": None},
    "svg": {"Creator": "proxmf-bench", "Date": None},
    "pdf": {"Creator": "proxmf-bench", "Producer": None, "CreationDate": None},
}
_LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
_HATCHES = ("", "///", "...", "xxx", "\\\\\\", "ooo")
_METRIC_LABELS = {
    "sad_deg": "mean spectral angle to W_true (degrees)",
    "rmse_H": "RMSE of H (matched, rescaled)",
}
LOSS_LABEL = r"loss $\frac{1}{2}\|Y - WH\|_F^2$"
OBJECTIVE_LABEL = r"objective $F = \frac{1}{2}\|Y - WH\|_F^2 + g_W + g_H$"
SUBOPT_LABEL = r"$(F - f^*)\,/\,f^*$"
TIME_LABEL = "solver time (s)"


@contextmanager
def figure_context() -> Iterator[None]:
    """matplotlib settings under which every report figure is built and saved."""
    with matplotlib.rc_context(_RC):
        yield


def _palette(n: int) -> list[str]:
    """``n`` distinct colours: tab10, then the light half of tab20, then samples of turbo."""
    tab20 = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
    colors = tab20[0::2] + tab20[1::2]
    if n > len(colors):
        turbo = matplotlib.colormaps["turbo"]
        colors += [matplotlib.colors.to_hex(turbo(x)) for x in np.linspace(0.05, 0.95, n - len(colors))]
    return colors[:n]


@dataclass(frozen=True)
class Style:
    """Colours per solver label and line style per condition (a run and device overlaid).

    ``conditions`` is in the order the runs were given; a condition's label names only what
    varies in the report (the run when several were given, the device when several were used).
    """

    solvers: tuple[str, ...]
    colors: dict[str, str]
    conditions: tuple[tuple[str, str], ...]
    condition_labels: dict[tuple[str, str], str]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Style:
        solvers = tuple(pd.unique(frame["solver"]))
        conditions = tuple(dict.fromkeys(zip(frame["run"], frame["device"])))
        several_runs = frame["run"].nunique() > 1
        several_devices = frame["device"].nunique() > 1
        labels = {}
        for run, device in conditions:
            parts = ([run] if several_runs else []) + ([device] if several_devices else [])
            labels[(run, device)] = ", ".join(parts)
        return cls(solvers, dict(zip(solvers, _palette(len(solvers)))), conditions, labels)

    def linestyle(self, condition: tuple[str, str]):
        return _LINESTYLES[self.conditions.index(condition) % len(_LINESTYLES)]

    def hatch(self, condition: tuple[str, str]) -> str:
        return _HATCHES[self.conditions.index(condition) % len(_HATCHES)]

    def curve_label(self, run: str, device: str, solver: str) -> str:
        condition = self.condition_labels[(run, device)]
        return f"{solver} ({condition})" if condition else solver

    def curves(self, frame: pd.DataFrame) -> list[tuple[str, str, str]]:
        """The (run, device, solver) curves present in ``frame``, grouped by solver."""
        present = set(zip(frame["run"], frame["device"], frame["solver"]))
        return [(run, device, solver) for solver in self.solvers for run, device in self.conditions
                if (run, device, solver) in present]


def format_seconds(seconds: float) -> str:
    """``3.2e-05`` -> ``"32 µs"``; ``inf`` -> ``"not reached"``."""
    if not math.isfinite(seconds):
        return "not reached" if seconds > 0 else "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric, metric)


_ABNORMAL = ("error", "diverged", "interrupted", "worker_lost")


def abnormal_stops(frame: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """``"error"``, ``"diverged"``... for each curve with a run that stopped that way."""
    bad = frame[frame["stop_reason"].isin(_ABNORMAL)]
    reasons = bad.groupby(CURVE_KEYS, sort=False)["stop_reason"].agg(lambda r: ", ".join(sorted(set(r))))
    return {tuple(key): text for key, text in reasons.items()}


def _legend(fig: Figure, style: Style, frame: pd.DataFrame, drawn: set[tuple[str, str, str]]) -> None:
    """One entry per curve, naming abnormal stops; a curve with nothing to draw says so."""
    handles, labels = [], []
    abnormal = abnormal_stops(frame)
    for run, device, solver in style.curves(frame):
        label = style.curve_label(run, device, solver)
        notes = [abnormal[(run, device, solver)]] if (run, device, solver) in abnormal else []
        if (run, device, solver) not in drawn:
            notes.append("nothing to plot")
        if notes:
            label += f" [{'; '.join(notes)}]"
        handles.append(Line2D([], [], color=style.colors[solver], linestyle=style.linestyle((run, device)), lw=2))
        labels.append(label)
    longest = max((len(label) for label in labels), default=1)
    ncol = max(1, min(len(labels), 110 // (longest + 8)))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _plot_curves(ax, curves: pd.DataFrame, x: str, style: Style, drawn: set, log_y: bool = True) -> bool:
    """Median lines with their quantile band. On a log axis, where a median reaches 0 (the
    best run of most seeds, in suboptimality) a triangle on the lower edge marks the first
    such point. Returns whether any triangle was drawn."""
    marked = False
    for key, curve in curves.groupby(CURVE_KEYS, sort=False):
        run, device, solver = key
        xs, mid = curve[x].to_numpy(float), curve["median"].to_numpy(float)
        lo, hi = curve["lo"].to_numpy(float), curve["hi"].to_numpy(float)
        keep = np.isfinite(mid) & (xs > 0 if x == "time_s" else True)
        color, ls = style.colors[solver], style.linestyle((run, device))
        if log_y:
            zero = keep & (mid <= 0)
            keep &= mid > 0
            lo = np.where(lo > 0, lo, np.nan)
            if zero.any():
                ax.plot(xs[zero][:1], [0.0], marker="v", ms=7, color=color, ls="none", clip_on=False,
                        transform=ax.get_xaxis_transform(), zorder=3)
                marked = True
                drawn.add(tuple(key))
        if not keep.any():
            continue
        ax.plot(xs[keep], mid[keep], color=color, linestyle=ls, lw=1.6)
        if (curve["n"] > 1).any():
            ax.fill_between(xs[keep], lo[keep], hi[keep], color=color, alpha=0.18, lw=0)
        drawn.add(tuple(key))
    return marked


def _start_value(curves: pd.DataFrame) -> float:
    """The largest positive median at iteration 0 (``inf`` when there is none)."""
    start = curves.loc[curves["iteration"] == 0, "median"].to_numpy(float)
    start = start[np.isfinite(start) & (start > 0)]
    return float(start.max()) if len(start) else math.inf


def _clip_runaways(ax, curves: pd.DataFrame, log_y: bool) -> None:
    """Keep a diverging curve from flattening the others: cap the y axis at 100 times (log)
    or 3 times (linear) the largest starting value, and say so on the axes."""
    values = curves[["median", "hi"]].to_numpy(float)
    values = values[np.isfinite(values)]
    cap = _start_value(curves) * (100.0 if log_y else 3.0)
    if len(values) and values.max() > cap:
        shown = curves[["median", "lo"]].to_numpy(float)
        shown = shown[np.isfinite(shown) & (shown > 0 if log_y else True)]
        low = shown.min()
        if log_y:  # the 5% margin autoscaling would put below the lowest value, in decades
            ax.set_ylim(low / (cap / low) ** 0.05, cap)
        else:
            ax.set_ylim(low - 0.05 * (cap - low), cap)
        ax.text(0.01, 0.99, "clipped above", transform=ax.transAxes, va="top", fontsize=7, color="0.4")


def _say_if_empty(ax) -> None:
    if not ax.has_data():
        ax.text(0.5, 0.5, "no finite values to plot", transform=ax.transAxes, ha="center", color="0.4")


def _set_x(ax, x: str) -> None:
    if x == "iteration":
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.4)
        ax.set_xlabel("iteration")
    else:
        ax.set_xscale("log")
        ax.set_xlabel(TIME_LABEL)


def _seed_note(frame: pd.DataFrame, band: bool = True) -> str:
    n = frame["seed"].nunique()
    if n == 1:
        return "1 seed"
    return f"median over {n} seeds" + (", band: 25th to 75th percentile" if band else "")


def f_star_note(frame: pd.DataFrame) -> str:
    """``f*``, its value(s) and where it comes from, for the figure and the report text."""
    per_problem = frame.drop_duplicates("problem")
    values = per_problem["f_star"].dropna()
    if values.empty:
        notes = [n for n in pd.unique(frame["objective_note"]) if n] if "objective_note" in frame else []
        return "f* undefined: " + (notes[0] if notes else "no solver recorded a finite objective")
    if len(values) == 1:
        text = f"f* = {values.iloc[0]:.6g}"
    else:
        text = f"f* = {values.min():.6g} to {values.max():.6g} over {len(values)} seeds"
    counts = per_problem.loc[per_problem["f_star"].notna(), "f_star_source"].value_counts(sort=False)
    if len(counts) == 1 and len(values) > 1:
        text += f", each from {counts.index[0]}"
    else:
        text += ", from " + "; ".join(
            f"{source}" + (f" ({n} of {len(values)} seeds)" if len(values) > 1 else "") for source, n in counts.items())
    if (values <= 0).any():
        text += "; absolute gap F - f* where f* = 0"
    return text


def value_label(frame: pd.DataFrame) -> str:
    """The y label of the value compared: the loss for the nonnegative problem, else the objective."""
    return LOSS_LABEL if set(frame["objective_name"]) <= {"nonneg"} else OBJECTIVE_LABEL


def convergence_figure(frame: pd.DataFrame, style: Style, title: str) -> Figure:
    """The objective (the loss, for the nonnegative problem) and relative suboptimality
    against iterations and against solver time (2 x 2), for the problems of one objective."""
    with figure_context():
        fig = Figure(figsize=(10, 7.4), layout="constrained")
        axes = fig.subplots(2, 2, sharex="col")
        drawn: set = set()
        marked = False
        rows = ((median_curves(frame, "value"), value_label(frame)), (median_curves(frame, "subopt"), SUBOPT_LABEL))
        for (curves, ylabel), row in zip(rows, axes):
            for x, ax in zip(("iteration", "time_s"), row):
                _set_x(ax, x)
                ax.set_yscale("log")
                marked |= _plot_curves(ax, curves, x, style, drawn)
                _clip_runaways(ax, curves, log_y=True)
                _say_if_empty(ax)
                if x == "iteration":
                    ax.set_xlim(left=0)  # after plotting: set_xlim turns autoscaling off
                ax.set_ylabel(ylabel)
        for ax in axes[0]:
            ax.tick_params(labelbottom=True)
        what = "loss" if value_label(frame) == LOSS_LABEL else "objective"
        axes[0, 0].set_title(f"{what} against iterations")
        axes[0, 1].set_title(f"{what} against solver time")
        axes[1, 0].set_title("suboptimality against iterations")
        axes[1, 1].set_title("suboptimality against solver time")
        zero_note = "\n\u25bc on the lower edge: the median reaches 0 (f*) there" if marked else ""
        note = textwrap.fill(f"{f_star_note(frame)}; {_seed_note(frame)}", 115)
        fig.suptitle(f"{title}\n{note}{zero_note}", fontsize=10)
        _legend(fig, style, frame, drawn)
        return fig


def metrics_figure(frame: pd.DataFrame, metrics: Sequence[str], style: Style, title: str) -> Figure:
    """Each ground-truth metric against solver time; log scale where it spans a decade."""
    with figure_context():
        ncols = min(2, len(metrics))
        nrows = math.ceil(len(metrics) / ncols)
        fig = Figure(figsize=(10, 0.9 + 3.4 * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        drawn: set = set()
        for metric, ax in zip(metrics, axes):
            curves = median_curves(frame, metric)
            values = curves["median"].to_numpy(float)
            values = values[values <= 100 * _start_value(curves)]  # a runaway curve does not decide
            log_y = bool(len(values)) and bool((values > 0).all()) and values.max() > 10 * values.min()
            _set_x(ax, "time_s")
            if log_y:
                ax.set_yscale("log")
            _plot_curves(ax, curves, "time_s", style, drawn, log_y=log_y)
            _clip_runaways(ax, curves, log_y)
            _say_if_empty(ax)
            ax.set_ylabel(metric_label(metric))
            ax.set_title(f"{metric} against solver time")
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        fig.suptitle(f"{title}\nground-truth metrics; {_seed_note(frame)}", fontsize=10)
        _legend(fig, style, frame, drawn)
        return fig


def tolerance_figure(frame: pd.DataFrame, style: Style, title: str,
                     tolerances: Sequence[float] = TOLERANCES) -> Figure:
    """Horizontal bars: solver time to reach each relative suboptimality, per curve."""
    times = time_to_tolerance(frame, tolerances)
    curves = style.curves(frame)
    abnormal = abnormal_stops(frame)
    finite = times["time_s"][np.isfinite(times["time_s"])]
    # whole decades, with room on the right for the value labels, so major ticks always show
    low = 10.0 ** math.floor(math.log10(finite.min() / 2)) if len(finite) else 1e-4
    high = 10.0 ** math.ceil(math.log10(finite.max() * 5)) if len(finite) else 1.0
    with figure_context():
        fig = Figure(figsize=(10, 1.5 + 0.32 * len(curves)), layout="constrained")
        axes = fig.subplots(1, len(tolerances), sharey=True, sharex=True, squeeze=False)[0]
        ypos = {curve: i for i, curve in enumerate(curves)}
        for tol, ax in zip(tolerances, axes):
            ax.set_xscale("log")
            ax.set_xlim(low, high)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(axis="y", visible=False)
            for row in times[times["tol"] == tol].itertuples(index=False):
                key = (row.run, row.device, row.solver)
                y = ypos[key]
                partial = f" ({row.reached}/{row.n_seeds} seeds)" if 0 < row.reached < row.n_seeds else ""
                if math.isfinite(row.time_s):
                    ax.barh(y, row.time_s - low, left=low, height=0.7, color=style.colors[row.solver],
                            hatch=style.hatch((row.run, row.device)), edgecolor="white", lw=0)
                    ax.text(row.time_s, y, f" {format_seconds(row.time_s)}{partial}", va="center", fontsize=7.5)
                else:
                    why = f" ({abnormal[key]})" if key in abnormal else ""
                    ax.text(low, y, f" not reached{partial}{why}", va="center", fontsize=7.5,
                            color="0.35", style="italic")
            ax.set_title(f"$(F - f^*)/f^* \\leq$ {tol:.0e}")
            ax.set_xlabel(TIME_LABEL)
        axes[0].set_yticks(range(len(curves)), [style.curve_label(*c) for c in curves])
        axes[0].set_ylim(len(curves) - 0.5, -0.5)
        note = textwrap.fill(f"time to tolerance ({_seed_note(frame, band=False)}; first recorded point at or "
                             f"below the tolerance); {f_star_note(frame)}", 115)
        fig.suptitle(f"{title}\n{note}", fontsize=10)
        return fig


def render(fig: Figure, formats: Sequence[str] = FORMATS) -> dict[str, bytes]:
    """The figure as PNG (always) and each of ``formats``, with no date or version in the
    metadata. The layout is computed once, for the PNG, and kept for the other formats."""
    out = {}
    with figure_context():
        for fmt in ["png", *(f for f in formats if f != "png")]:
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
            out[fmt] = buffer.getvalue()
            fig.set_layout_engine("none")
    return out

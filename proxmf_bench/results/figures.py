"""The report's figures, drawn with matplotlib's object API (no pyplot, no display needed).

Each solver variant keeps one colour in every figure of a report, a family of variants
(``pgm``, ``pgm[prox_H=...]``) one hue in shades, with markers; runs and devices are named
and told apart by the line style only in figures where they overlay. Output is
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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from proxmf_bench.results.analysis import (
    CURVE_KEYS,
    TOLERANCES,
    median_curves,
    time_to_tolerance,
    time_to_tolerance_per_seed,
)

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
    """``n`` distinct hues: tab10, then samples of turbo."""
    colors = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    if n > len(colors):
        turbo = matplotlib.colormaps["turbo"]
        colors += [matplotlib.colors.to_hex(turbo(x)) for x in np.linspace(0.05, 0.95, n - len(colors))]
    return colors[:n]


# Variant k of a family: the family's hue mixed with black (darker) or white (lighter), a
# marker, and a thinner line drawn above the first variant, so a variant that coincides
# with another leaves the wider line around it and its markers visible.
_SHADES = (0.0, -0.35, 0.4, -0.6, 0.6, -0.2, 0.25)
_MARKERS = (None, "o", "s", "^", "D", "v", "P", "X")


def _shade(color: str, amount: float) -> str:
    """``color`` mixed with black (``amount < 0``) or white (``amount > 0``)."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    target = np.ones(3) if amount > 0 else np.zeros(3)
    return matplotlib.colors.to_hex(rgb + abs(amount) * (target - rgb))


def solver_family(label: str) -> str:
    """``pgm[prox_H=l1]`` -> ``pgm``: the registered solver a variant label belongs to."""
    return label.split("[", 1)[0]


@dataclass(frozen=True)
class Style:
    """Colours per solver label and line style per condition (a run and device overlaid).

    A solver family (``pgm``, ``pgm[prox_H=...]``) has one hue; its variants differ in shade,
    marker and line width (:meth:`variant`). ``conditions`` are the (run, device) pairs in the
    order the runs were given; a condition's label names only what varies in the frame the
    style was made for (the run where several runs overlay, the device where several were
    used), and only then do conditions get different line styles. :meth:`within` gives the
    style of one figure: the same colours, the conditions of its own frame.
    """

    solvers: tuple[str, ...]
    colors: dict[str, str]
    conditions: tuple[tuple[str, str], ...]
    condition_labels: dict[tuple[str, str], str]
    variants: dict[str, int]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Style:
        solvers = tuple(pd.unique(frame["solver"]))
        families = list(dict.fromkeys(solver_family(s) for s in solvers))
        hues = dict(zip(families, _palette(len(families))))
        variants, seen = {}, dict.fromkeys(families, 0)
        for solver in solvers:
            family = solver_family(solver)
            variants[solver], seen[family] = seen[family], seen[family] + 1
        colors = {s: _shade(hues[solver_family(s)], _SHADES[variants[s] % len(_SHADES)]) for s in solvers}
        return cls(solvers, colors, (), {}, variants).within(frame)

    def within(self, frame: pd.DataFrame) -> Style:
        """This style for a figure of ``frame``: run and device named only where they vary there."""
        conditions = tuple(dict.fromkeys(zip(frame["run"], frame["device"])))
        several_runs = frame["run"].nunique() > 1
        several_devices = frame["device"].nunique() > 1
        labels = {}
        for run, device in conditions:
            parts = ([run] if several_runs else []) + ([device] if several_devices else [])
            labels[(run, device)] = ", ".join(parts)
        return Style(self.solvers, self.colors, conditions, labels, self.variants)

    def linestyle(self, condition: tuple[str, str]):
        return _LINESTYLES[self.conditions.index(condition) % len(_LINESTYLES)]

    def variant(self, solver: str) -> dict:
        """Line keywords of ``solver``'s place in its family: marker, width, z-order."""
        k = self.variants.get(solver, 0)
        marker = _MARKERS[k % len(_MARKERS)]
        return {"marker": marker, "ms": 4.5, "lw": 2.6 if k == 0 else 1.4, "zorder": 2 + 0.1 * k,
                "markerfacecolor": "none" if k % 2 == 0 else None}

    def curve_label(self, run: str, device: str, solver: str) -> str:
        condition = self.condition_labels[(run, device)]
        return f"{solver} ({condition})" if condition else solver

    def curves(self, frame: pd.DataFrame) -> list[tuple[str, str, str]]:
        """The (run, device, solver) curves present in ``frame``, grouped by solver."""
        present = set(zip(frame["run"], frame["device"], frame["solver"]))
        return [(run, device, solver) for solver in self.solvers for run, device in self.conditions
                if (run, device, solver) in present]

    def handle(self, run: str, device: str, solver: str) -> Line2D:
        """A legend handle drawn like the curve."""
        return Line2D([], [], color=self.colors[solver], linestyle=self.linestyle((run, device)),
                      **{k: v for k, v in self.variant(solver).items() if k != "zorder"})


def format_seconds(seconds: float) -> str:
    """Three significant digits: ``3.2e-05`` -> ``"32.0 µs"``, ``1`` -> ``"1.00 s"``;
    ``inf`` -> ``"not reached"``."""
    if not math.isfinite(seconds):
        return "not reached" if seconds > 0 else "n/a"
    if seconds == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            break
    else:
        unit, scale = "ns", 1e-9
    value = seconds / scale
    text = f"{value:#.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{text.rstrip('.')} {unit}"


def wrap_label(label: str, width: int = 34) -> str:
    """A long variant label on several lines, broken after its commas."""
    if len(label) <= width:
        return label
    lines, line = [], ""
    for piece in label.replace(",", ",\x00").split("\x00"):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = piece
        else:
            line += piece
    return "\n".join([*lines, line])


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
        handles.append(style.handle(run, device, solver))
        labels.append(label)
    _put_legend(fig, handles, labels)


def _put_legend(fig: Figure, handles: list, labels: list[str]) -> None:
    """Below the axes, in as many columns as the longest label leaves room for."""
    labels = [wrap_label(label, 44) for label in labels]
    longest = max((len(line) for label in labels for line in label.split("\n")), default=1)
    ncol = max(1, min(len(labels), 120 // (longest + 8)))
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
        variant = style.variant(solver)
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
        k = style.variants.get(solver, 0)
        # markers spaced along the line's length, shifted per variant so they do not coincide
        ax.plot(xs[keep], mid[keep], color=color, linestyle=ls, markevery=(0.03 + 0.037 * (k % 3), 0.11),
                **variant)
        if (curve["n"] > 1).any():
            ax.fill_between(xs[keep], lo[keep], hi[keep], color=color, alpha=0.15, lw=0)
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
    style = style.within(frame)
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
    style = style.within(frame)
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


def _seed_offsets(seeds: Sequence) -> dict:
    """Vertical offsets of each seed's point within a row, the same in every panel."""
    order = sorted(seeds)
    if len(order) == 1:
        return {order[0]: 0.0}
    return {seed: float(v) for seed, v in zip(order, np.linspace(-0.22, 0.22, len(order)))}


def _short_seconds(seconds: float) -> str:
    """A tick label: ``0.02`` -> ``"20 ms"``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale * 0.999:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _time_ticks(ax, low: float, high: float) -> None:
    """Ticks in seconds, ms or µs at 1, 2, 5 (or 1, 3 or decades, on wider ranges) per decade."""
    decades = math.log10(high / low)
    subs = (1.0, 2.0, 5.0) if decades < 1.5 else (1.0, 3.0) if decades < 3 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short_seconds(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def tolerance_figure(frame: pd.DataFrame, style: Style, title: str,
                     tolerances: Sequence[float] = TOLERANCES) -> Figure:
    """Solver time to reach each relative suboptimality: one row per curve, a point per seed
    (with its range over ``--repeat`` timings as a bar), the median over seeds as a vertical
    tick, a seed that never got there as a cross at the right edge (a median is drawn only
    where more than half the seeds got there)."""
    style = style.within(frame)
    per_seed = time_to_tolerance_per_seed(frame, tolerances)
    medians = time_to_tolerance(frame, tolerances).set_index([*CURVE_KEYS, "tol"])
    curves = style.curves(frame)
    abnormal = abnormal_stops(frame)
    offsets = _seed_offsets(pd.unique(per_seed["seed"]))
    repeated = bool((per_seed["time_s_max"] > per_seed["time_s_min"]).any())
    finite = per_seed.loc[np.isfinite(per_seed["time_s"]), ["time_s", "time_s_min", "time_s_max"]].to_numpy(float)
    finite = finite[finite > 0]
    low = finite.min() / 2 if len(finite) else 1e-3
    high = finite.max() * 4 if len(finite) else 1.0
    labels = []
    for curve in curves:
        label = style.curve_label(*curve)
        labels.append(wrap_label(label + (f" [{abnormal[curve]}]" if curve in abnormal else "")))
    row_height = max(0.34, 0.17 * max(label.count("\n") + 1 for label in labels)) if labels else 0.34
    with figure_context():
        fig = Figure(figsize=(10, 2.1 + max(1.2, row_height * len(curves))), layout="constrained")
        axes = fig.subplots(1, len(tolerances), sharey=True, sharex=True, squeeze=False)[0]
        edge = matplotlib.transforms.blended_transform_factory
        for tol, ax in zip(tolerances, axes):
            ax.set_xscale("log")
            ax.set_xlim(low, high)
            _time_ticks(ax, low, high)
            ax.grid(axis="y", visible=False)
            part = per_seed[per_seed["tol"] == tol]
            for y, (run, device, solver) in enumerate(curves):
                rows = part[(part["run"] == run) & (part["device"] == device) & (part["solver"] == solver)]
                color = style.colors[solver]
                ys = y + rows["seed"].map(offsets).to_numpy(float)
                t = rows["time_s"].to_numpy(float)
                ok = np.isfinite(t)
                if repeated and ok.any():
                    lo, hi = rows["time_s_min"].to_numpy(float)[ok], rows["time_s_max"].to_numpy(float)[ok]
                    ax.errorbar(t[ok], ys[ok], xerr=[t[ok] - lo, hi - t[ok]], fmt="none", ecolor=color, elinewidth=1,
                                capsize=2, zorder=2)
                ax.plot(t[ok], ys[ok], "o", ms=4.5, color=color, mec="white", mew=0.5, zorder=3)
                if (~ok).any():
                    ax.plot(np.full((~ok).sum(), 0.97), ys[~ok], "x", ms=5, color="0.45", zorder=3,
                            transform=edge(ax.transAxes, ax.transData))
                median = medians.loc[(run, device, solver, tol), "time_s"]
                if math.isfinite(median):
                    # behind the points: the median is often one seed's own time
                    ax.plot([median, median], [y - 0.36, y + 0.36], color="0.15", lw=1.6, zorder=2.5)
            if not np.isfinite(part["time_s"]).any():
                ax.text(0.5, 0.5, "reached by no run", transform=ax.transAxes, ha="center", va="center",
                        color="0.4", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            ax.set_title(f"$(F - f^*)/f^* \\leq$ {tol:.0e}")
            ax.set_xlabel("solver time")
        axes[0].set_yticks(range(len(curves)), labels)
        axes[0].set_ylim(len(curves) - 0.5, -0.5)
        for y, (_, _, solver) in enumerate(curves):
            axes[0].get_yticklabels()[y].set_color(_shade(style.colors[solver], -0.25))
        handles = [Line2D([], [], marker="o", ls="none", color="0.4", mec="white", ms=5),
                   Line2D([], [], color="0.15", lw=1.6, marker="|", ms=10, ls="none")]
        names = ["one seed", "median over seeds"]
        if not np.isfinite(per_seed["time_s"]).all():
            handles.append(Line2D([], [], marker="x", ls="none", color="0.45", ms=5))
            names.append("not reached (at the right edge)")
        if repeated:
            handles.append(matplotlib.lines.Line2D([], [], color="0.4", marker="|", ms=6, lw=1))
            names.append("range over the repeats")
        _put_legend(fig, handles, names)
        note = textwrap.fill(f"time to tolerance ({frame['seed'].nunique()} seed(s); first recorded point at or "
                             f"below the tolerance); {f_star_note(frame)}", 115)
        fig.suptitle(f"{title}\n{note}", fontsize=10)
        return fig


def profile_figure(profile: pd.DataFrame, style: Style, tol: float, instances: int, problems: int,
                   runs: int, left_out: Sequence[str] = ()) -> Figure:
    """Dolan-Moré performance profile of one tolerance (:mod:`~proxmf_bench.results.profiles`):
    the fraction of its instances each solver solved within a factor ``tau`` of the best.
    Profiles often coincide (two solvers that failed everywhere): the first drawn is the
    widest, so each stays visible under the next."""
    part = profile[profile["tol"] == tol]
    several_devices = part["device"].nunique() > 1
    with figure_context():
        fig = Figure(figsize=(7.5, 5.2), layout="constrained")
        ax = fig.subplots()
        finite = part["tau"].to_numpy(float)
        finite = finite[np.isfinite(finite)]
        right = max(2.0, float(finite.max()) * 1.5) if len(finite) else 2.0
        handles, labels = [], []
        devices = list(pd.unique(part["device"]))
        drawn = [(s, d) for s in style.solvers for d in devices
                 if ((part["solver"] == s) & (part["device"] == d)).any()]
        for i, (solver, device) in enumerate(drawn):
            steps = part[(part["solver"] == solver) & (part["device"] == device)]
            taus, fractions = steps["tau"].to_numpy(float), steps["fraction"].to_numpy(float)
            ok = np.isfinite(taus)
            xs = np.concatenate([[1.0], taus[ok], [right]])
            ys = np.concatenate([[0.0], fractions[ok], [fractions[ok][-1] if ok.any() else 0.0]])
            ls = _LINESTYLES[devices.index(device) % len(_LINESTYLES)]
            line, = ax.step(xs, ys, where="post", color=style.colors[solver], linestyle=ls,
                            lw=1.4 + 0.6 * (len(drawn) - 1 - i), zorder=2 + 0.01 * i, clip_on=False)
            n = int(steps["instances"].iloc[0])
            label = solver + (f" ({device})" if several_devices else "")
            label += f" ({n} of {instances} instances)" if n != instances else ""
            handles.append(line)
            labels.append(label)
        ax.set_xscale("log", base=2)
        ax.set_xlim(1.0, right)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(r"$\tau$: within this factor of the fastest solver's time")
        ax.set_ylabel(r"fraction of instances solved, $\rho_s(\tau)$")
        where = f"{problems} problem(s)" + (f" in {runs} runs" if runs > 1 else "")
        note = (f"{instances} instances ({where}) with two or more solvers; a problem is a dataset, dtype, "
                "objective and seed")
        if left_out:
            note += "; alone on their problems, not shown: " + ", ".join(left_out)
        ax.set_title(f"performance profile: $(F - f^*)/f^* \\leq$ {tol:.0e}\n"
                     + textwrap.fill(note, 95) + "\nnever reaching the tolerance counts as failed; "
                     "coinciding lines: the first drawn is widest", fontsize=9.5)
        _put_legend(fig, handles, labels)
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

"""``proxmf-bench report``: one self-contained HTML file plus the figures as files.

The HTML embeds every figure as a base64 PNG and carries its own CSS: no script, font,
stylesheet or image is fetched, so it reads the same offline and as an e-mail attachment.
It opens with the performance profiles of every problem and seed
(:mod:`~proxmf_bench.results.profiles`) and the paired comparisons, then one section per
dataset and dtype. The same figures are written as PNG, SVG and PDF (for papers) with
``summary.csv``, ``f_star.csv``, ``time_to_tolerance.csv`` and ``performance_ratios.csv``
(and, with the format ``csv``, the raw long table as ``results.csv``):

- one run directory: the report is ``RUN_DIR/report.html``, the figures ``RUN_DIR/figures/``;
- several run directories (overlaid on the same axes): the report is ``report.html`` in the
  current directory, the figures ``figures/`` beside the report.

``-o FILE`` and ``--figures DIR`` choose other places. Output depends only on the results.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from proxmf_bench.errors import UserError
from proxmf_bench.results.analysis import (
    CURVE_KEYS,
    TOLERANCES,
    RunData,
    add_suboptimality,
    cell_summary,
    combine_runs,
    f_star_table,
    failed_cells,
    known_optima,
    load_runs,
    metric_columns,
    time_to_tolerance,
    time_to_tolerance_per_seed,
)
from proxmf_bench.results.compare import Verdicts, automatic_comparisons, format_change, verdict_table
from proxmf_bench.results.f_star import read_f_star
from proxmf_bench.results.figures import (
    FORMATS,
    Style,
    convergence_figure,
    f_star_note,
    format_seconds,
    metric_label,
    metrics_figure,
    profile_figure,
    render,
    tolerance_figure,
)
from proxmf_bench.results.profiles import (
    INSTANCE_KEYS,
    compared_instances,
    instance_count,
    performance_profile,
    performance_ratios,
    solve_times,
)
from proxmf_bench.results.table import atomic_write_bytes

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
SUMMARY_FILE = "summary.csv"
F_STAR_FILE = "f_star.csv"
TIMES_FILE = "time_to_tolerance.csv"
RATIOS_FILE = "performance_ratios.csv"
VERDICTS_FILE = "verdicts.csv"
RAW_FILE = "results.csv"
TABLE_FORMATS = ("csv",)  # not a figure format: the raw long table


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html_path: Path
    figures_dir: Path
    files: list[Path] = field(default_factory=list)


def output_paths(run_dirs: Sequence[Path], output: str | os.PathLike | None,
                 figures_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    """Where the HTML and the figures go (see the module docstring); ``output`` may name an
    existing directory, which then receives ``report.html``."""
    if output is None:
        html_path = run_dirs[0] / REPORT_FILE if len(run_dirs) == 1 else Path(REPORT_FILE)
    else:
        html_path = Path(output) / REPORT_FILE if Path(output).is_dir() else Path(output)
    if figures_dir is not None:
        return html_path, Path(figures_dir)
    if len(run_dirs) == 1:
        return html_path, run_dirs[0] / FIGURES_DIR
    return html_path, html_path.parent / FIGURES_DIR


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS + TABLE_FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown figure format {', '.join(unknown) or repr(text)} "
                        f"(use {', '.join(FORMATS + TABLE_FORMATS)})")
    return formats


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "problem"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


@dataclass
class _Section:
    """One dataset in one dtype of the report: a figure pair per objective, the ground-truth
    metrics of every curve (they do not depend on the objective), the summary."""

    dataset: str
    dtype: str
    title: str
    slug: str
    notes: list[str]  # f* of each objective
    figures: list[tuple[str, bytes, str]]  # (file name stem, png bytes, caption)
    metrics: list[str]
    summary: pd.DataFrame
    times: pd.DataFrame  # time to tolerance per seed
    time_summary: pd.DataFrame  # its median and quartiles over seeds


def build_report(
    run_dirs: Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    figures_dir: str | os.PathLike | None = None,
    formats: Sequence[str] = FORMATS,
    progress: bool = False,
    f_star: str | os.PathLike | None = None,
) -> Report:
    """Read the run directories and write the HTML report, the figures, ``summary.csv``,
    ``f_star.csv`` (f* of each problem and its source), ``time_to_tolerance.csv`` (per seed),
    ``performance_ratios.csv`` (the performance profiles' ratio per instance and solver),
    ``verdicts.csv`` when there are paired comparisons (:func:`_comparisons`), and, when
    ``formats`` holds ``csv``, ``results.csv`` (the long table of every run, with a ``run`` column).

    ``f_star`` is a table of known optima (:func:`~proxmf_bench.results.f_star.read_f_star`),
    used with those saved in the run directories. ``progress`` shows a bar over the problems
    (the CLI sets it on a terminal).
    """
    extra = read_f_star(f_star) if f_star is not None else None
    runs = load_runs(run_dirs)
    html_path, fig_dir = output_paths([r.path for r in runs], output, figures_dir)
    raw = combine_runs(runs)
    frame = add_suboptimality(raw, known_optima(runs, extra))
    table_formats = [f for f in formats if f in TABLE_FORMATS]
    formats = tuple(f for f in formats if f not in TABLE_FORMATS)
    style = Style.from_frame(frame)
    metrics = metric_columns(frame)
    report = Report(html_path, fig_dir)

    def save(base: str, fig) -> bytes:
        rendered = render(fig, formats)
        for fmt in formats:
            path = fig_dir / f"{base}.{fmt}"
            atomic_write_bytes(path, rendered[fmt])
            report.files.append(path)
        return rendered["png"]

    sections, taken = [], set()
    problems = frame.groupby(["dataset", "dtype"], sort=False)
    for (dataset, dtype), sub in tqdm(problems, total=problems.ngroups, desc="report", unit="problem",
                                      disable=not progress, leave=False):
        devices = ", ".join(pd.unique(sub["device"]))
        title = f"{dataset}, {dtype}, {devices}"
        slug = _slug(f"{dataset}-{dtype}", taken)
        present = [m for m in metrics if sub[m].notna().any()]
        objectives = list(pd.unique(sub["objective_name"]))
        embedded, notes, obj_slugs = [], [], set()
        for objective in objectives:
            part = sub[sub["objective_name"] == objective]
            several = len(objectives) > 1
            base = f"{slug}_{_slug(objective, obj_slugs)}" if several else slug
            heading = f"{title}, objective {objective}" if several or objective != "nonneg" else title
            what = "Loss" if objective == "nonneg" else f"Objective ({objective})"
            embedded.append((f"{base}_convergence", save(f"{base}_convergence", convergence_figure(part, style, heading)),
                             f"{what} and relative suboptimality against iterations and solver time."))
            embedded.append((f"{base}_time-to-tolerance",
                             save(f"{base}_time-to-tolerance", tolerance_figure(part, style, heading)),
                             f"Solver time to reach each relative suboptimality ({objective})."))
            notes.append(f"{objective}: {f_star_note(part)}" if several else f_star_note(part))
        if present:
            across = " (every objective: they do not depend on it)" if len(objectives) > 1 else ""
            embedded.append((f"{slug}_metrics", save(f"{slug}_metrics", metrics_figure(sub, present, style, title)),
                             "Ground-truth metrics against solver time" + across + ": "
                             + ", ".join(metric_label(m) for m in present) + "."))
        summary = cell_summary(sub, present)
        times = time_to_tolerance_per_seed(sub)
        sections.append(_Section(dataset, dtype, title, slug, notes, embedded, present, summary, times,
                                 time_to_tolerance(sub)))

    compared, left_out = compared_instances(solve_times(frame))
    ratios = performance_ratios(compared)
    profile = performance_profile(ratios)
    profiles = []
    for tol in TOLERANCES if len(ratios) else ():
        n = instance_count(ratios, tol)
        at = ratios[ratios["tol"] == tol]
        problems = at.drop_duplicates([k for k in INSTANCE_KEYS if k != "run"]).shape[0]
        fig = profile_figure(profile, style, tol, n, problems, at["run"].nunique(), left_out)
        name = f"performance-profile_{tol:.0e}"
        profiles.append((name, save(name, fig), n))

    verdicts = _comparisons(frame)
    tables = [(SUMMARY_FILE, pd.concat([s.summary for s in sections], ignore_index=True)),
              (F_STAR_FILE, f_star_table(frame, known_optima(runs, extra))),
              (TIMES_FILE, pd.concat([s.times for s in sections], ignore_index=True)),
              (RATIOS_FILE, ratios)]
    tables += [(VERDICTS_FILE, verdicts.table)] if verdicts is not None else []
    tables += [(RAW_FILE, raw)] if table_formats else []
    for name, table in tables:
        csv_path = fig_dir / name
        atomic_write_bytes(csv_path, table.to_csv(index=False).encode())
        report.files.append(csv_path)
    page = _page(runs, frame, sections, profiles, style, fig_dir, formats, _verdicts_html(verdicts))
    atomic_write_bytes(html_path, page.encode("utf-8"))
    return report


def _comparisons(frame: pd.DataFrame) -> Verdicts | None:
    """The paired comparisons the report makes unasked
    (:func:`~proxmf_bench.results.compare.automatic_comparisons`: variants of one solver, the
    same solver in two runs), or ``None`` when there are none with common instances."""
    comparisons = automatic_comparisons(frame)
    verdicts = verdict_table(frame, comparisons, require_pairs=False) if comparisons else None
    return verdicts if verdicts is not None and len(verdicts.table) else None


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:#1d1d1f;max-width:1120px;margin:2em auto;padding:0 1.2em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.25em;margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1.05em;margin-top:1.6em}
code,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.92em}
.scroll{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:.88em}
th,td{border:1px solid #d8d8d8;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f4f4f6}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.solver{min-width:8em}
.iqr{color:#666;font-size:.85em}
details{margin:1em 0}
tr.group td{background:#fafafa;font-weight:600}
td.cmd{word-break:break-all;min-width:18em}
tr.bad td{background:#fff3f0}
tr.good td{background:#eefaf0}
.sw{display:inline-block;width:.85em;height:.85em;border-radius:2px;margin-right:.4em;vertical-align:-.08em}
figure{margin:1.2em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}
figure.profile{max-width:760px}
.muted{color:#666;font-size:.9em}
.alert{background:#fff3f0;border-left:4px solid #d9534f;padding:.5em 1em;margin:1em 0}
.err{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;white-space:pre-wrap;
 word-break:break-word;max-width:28em}
nav ul{columns:2;font-size:.92em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "&ndash;"
    return _e(format(value, fmt))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], classes: Sequence[str] = ()) -> str:
    """``rows`` hold ready HTML cells, or a heading (a string) spanning the table; ``classes``
    marks rows (e.g. ``"bad"``)."""
    out = ["<div class='scroll'><table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        if isinstance(row, str):
            out.append(f"<tr class='group'><td colspan='{len(header)}'>{row}</td></tr>")
            continue
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _runs_table(runs: Sequence[RunData]) -> str:
    rows = []
    for run in runs:
        meta = run.meta
        versions = meta.get("versions", {})
        machine = meta.get("cpu", "?") + "".join(f"; GPU {g}" for g in meta.get("gpus", []))
        cells = meta.get("cells", {})
        done = f"{cells.get('finished', '?')}/{cells.get('total', '?')}" + (" (interrupted)" if meta.get("interrupted") else "")
        command = shlex.join(meta["command"]) if meta.get("command") else "no meta.json"
        rows.append([
            f"<td class='mono'>{_e(run.label)}</td>",
            f"<td class='mono'>{_e(meta.get('run_id', run.frame['run_id'].iloc[0] if len(run.frame) else '?'))}</td>",
            f"<td class='mono cmd'>{_e(command)}</td>",
            f"<td class='num'>{_e(_when(meta.get('started_at')))}</td>",
            f"<td>{_e(machine)}</td>",
            f"<td class='num'>{_e(meta.get('threads', '?'))}</td>",
            f"<td>torch {_e(versions.get('torch', '?'))}, python {_e(versions.get('python', '?'))}</td>",
            f"<td class='mono'>{_e((meta.get('git_commit') or 'none')[:12])}</td>",
            f"<td class='num'>{_e(done)}</td>",
        ])
    header = ["run", "run id", "command", "started (UTC)", "machine", "threads", "versions", "commit", "cells"]
    return _table(header, rows)


def _when(timestamp: str | None) -> str:
    """``2026-01-02T03:04:05.678+00:00`` -> ``2026-01-02 03:04:05``."""
    return timestamp[:19].replace("T", " ") if timestamp else "?"


def _errors_block(frame: pd.DataFrame) -> str:
    """Solver runs that errored, diverged, were interrupted or lost their worker: one line per solver and
    message, naming where it happened."""
    failed = failed_cells(frame)
    if failed.empty:
        return ""
    total = int(failed["seeds"].str.count(",").sum() + len(failed))
    items = []
    for (run, device, solver, reason, error), rows in failed.groupby(
            ["run", "device", "solver", "stop_reason", "error"], sort=False):
        where = "; ".join(f"<span class='mono'>{_e(r.dataset)}</span> ({_e(r.dtype)}, seeds {_e(r.seeds)})"
                          for r in rows.itertuples(index=False))
        context = ", ".join(_e(x) for x in (f"run {run}" if frame["run"].nunique() > 1 else "", device) if x)
        message = f": <span class='err'>{_e(error)}</span>" if error else ""
        items.append(f"<li><b class='mono'>{_e(solver)}</b> ({context}) {_e(reason)}{message}"
                     f"<br><span class='muted'>on {where}</span></li>")
    return (f"<div class='alert'><b>{total} solver run(s) did not finish normally.</b> They are kept in "
            f"the figures' legends and the summary tables.<ul>{''.join(items)}</ul></div>")


def _solver_cell(solver: str, style: Style) -> str:
    """The solver's swatch and label, breakable after its commas (long prox variants)."""
    swatch = f"<span class='sw' style='background:{style.colors[solver]}'></span>"
    return f"<td class='mono solver'>{swatch}{'<wbr>'.join(_e(p) for p in re.split(r'(?<=,)', solver))}</td>"


def _spread(median: float, q25: float, q75: float, text, seeds: int) -> str:
    """A cell: the median over seeds, below it its interquartile range ``[q25, q75]``."""
    if median is None or pd.isna(median):
        return "<td class='num'>&ndash;</td>"
    low, high = (text(q).replace(" (best)", "").replace("not reached", "never") for q in (q25, q75))
    shown = seeds > 1 and pd.notna(q25) and not (math.isinf(median) and math.isinf(q25))
    iqr = f"<br><span class='iqr'>[{_e(low)}, {_e(high)}]</span>" if shown else ""
    return f"<td class='num'>{_e(text(median))}{iqr}</td>"


def _sig3(value: float) -> str:
    """Three significant digits (``1.23e-05`` outside 0.001 to 10000)."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    return f"{value:#.3g}".rstrip(".") if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


def _subopt_text(value: float) -> str:
    return "0 (best)" if value == 0 else _sig3(value)


def _curve_columns(several: dict[str, bool]) -> list[str]:
    return [name for name in ("run", "device") if several[name]]


def _curve_cells(row: dict, style: Style, several: dict[str, bool]) -> list[str]:
    cells = [_solver_cell(row["solver"], style)]
    cells += [f"<td class='mono'>{_e(row['run'])}</td>"] if several["run"] else []
    cells += [f"<td>{_e(row['device'])}</td>"] if several["device"] else []
    return cells


def _summary_tables(summary: pd.DataFrame, times: pd.DataFrame, style: Style, frame: pd.DataFrame,
                    metrics: Sequence[str]) -> str:
    """Final state per curve, ranked within each objective (suboptimality is against that
    objective's f*): first what a reviewer reads (suboptimality, ground-truth metrics, time to
    each tolerance), then the run details (loss, iterations, times, stop reasons, errors).
    Each value is the median over seeds with its interquartile range; a curve whose objective
    is unknown says why."""
    objectives = list(pd.unique(summary["objective_name"]))
    several = {"objective": len(objectives) > 1, "run": frame["run"].nunique() > 1,
               "device": frame["device"].nunique() > 1}
    penalised = any(o != "nonneg" for o in objectives)
    notes = frame.groupby("solver")["objective_note"].first().to_dict()
    order = {o: i for i, o in enumerate(objectives)}
    ordered = summary.assign(_objective=summary["objective_name"].map(order)).sort_values(
        ["_objective", "subopt", "loss"], na_position="last", kind="stable")
    ttt = times.set_index([*CURVE_KEYS, "objective_name", "tol"])
    head = ["solver", *_curve_columns(several)]
    main_header = head + ["seeds", "final (F−f*)/f*", *(f"final {m}" for m in metrics)]
    main_header += [f"time to {t:.0e}" for t in TOLERANCES]
    detail_header = head + ["final loss"] + (["final objective"] if penalised else [])
    detail_header += ["iterations", "solver time", "time / iteration", "stop reasons", "errors"]
    main_rows, detail_rows, classes = [], [], []
    objective = None
    for row in ordered.to_dict("records"):
        if several["objective"] and row["objective_name"] != objective:
            objective = row["objective_name"]
            heading = f"objective <span class='mono'>{_e(objective)}</span>"
            main_rows.append(heading)
            detail_rows.append(heading)
            classes.append("")
        seeds = int(row["seeds"])
        curve = _curve_cells(row, style, several)
        note = notes.get(row["solver"], "")
        cells = [*curve, f"<td class='num'>{seeds}</td>"]
        if note:
            cells.append("<td class='num'>unknown objective</td>")
        else:
            cells.append(_spread(row["subopt"], row["subopt_q25"], row["subopt_q75"], _subopt_text, seeds))
        cells += [_spread(row[m], row[f"{m}_q25"], row[f"{m}_q75"], _sig3, seeds) for m in metrics]
        for tol in TOLERANCES:
            key = (row["run"], row["device"], row["solver"], row["objective_name"], tol)
            if key not in ttt.index:
                cells.append("<td class='num'>&ndash;</td>")
                continue
            t = ttt.loc[key]
            reached = f"<br><span class='iqr'>{int(t['reached'])}/{int(t['n_seeds'])} seeds</span>" \
                if 0 < t["reached"] < t["n_seeds"] else ""
            cell = _spread(t["time_s"], t["time_s_q25"], t["time_s_q75"], format_seconds, seeds)
            cells.append(cell.replace("</td>", f"{reached}</td>"))
        main_rows.append(cells)
        details = [*curve, _spread(row["loss"], row["loss_q25"], row["loss_q75"], _sig6, seeds)]
        if penalised:
            details.append(_spread(row["objective"], row["objective_q25"], row["objective_q75"], _sig6, seeds))
        iterations = row["iterations"]
        details += [
            f"<td class='num'>{_num(iterations, '.0f' if float(iterations).is_integer() else '.1f')}</td>",
            _spread(row["time_s"], row["time_s_q25"], row["time_s_q75"], format_seconds, seeds),
            _spread(row["time_per_iter"], row["time_per_iter_q25"], row["time_per_iter_q75"], format_seconds, seeds),
        ]
        errors = "; ".join(e for e in (row["errors"], note) if e)
        details += [f"<td>{_e(row['stop_reasons'])}</td>", f"<td><span class='err'>{_e(errors)}</span></td>"]
        detail_rows.append(details)
        classes.append("bad" if row["errors"] or "diverged" in row["stop_reasons"] else "")
    spread = "median over seeds, below it [25th, 75th percentile]" if summary["seeds"].max() > 1 else "one seed"
    return (f"<p class='muted'>Each cell: {spread}. Time to tolerance counts a seed that never got there as "
            "never.</p>" + _table(main_header, main_rows, classes)
            + "<h3>Run details</h3>" + _table(detail_header, detail_rows, classes))


def _sig6(value: float) -> str:
    return format(value, ".6g")


def _times_table(times: pd.DataFrame, style: Style, frame: pd.DataFrame) -> str:
    """Time to each tolerance per seed, with its spread over repeats where cells were repeated."""
    several_runs = frame["run"].nunique() > 1
    several_devices = frame["device"].nunique() > 1
    repeated = bool((times["time_s_max"] > times["time_s_min"]).any())
    header = ["solver"] + (["run"] if several_runs else []) + (["device"] if several_devices else []) + ["seed"]
    header += [f"to {t:.0e}" for t in TOLERANCES]
    wide = times.pivot_table(index=["solver", "run", "device", "seed"], columns="tol",
                             values=["time_s", "time_s_min", "time_s_max"], aggfunc="first", sort=False)
    rows = []
    for (solver, run, device, seed), row in wide.iterrows():
        cells = [_solver_cell(solver, style)]
        cells += [f"<td class='mono'>{_e(run)}</td>"] if several_runs else []
        cells += [f"<td>{_e(device)}</td>"] if several_devices else []
        cells.append(f"<td class='num'>{seed}</td>")
        for tol in TOLERANCES:
            t, lo, hi = (row[(c, tol)] for c in ("time_s", "time_s_min", "time_s_max"))
            text = format_seconds(t)
            if repeated and math.isfinite(t):
                text += f" ({format_seconds(lo)} to {format_seconds(hi)})"
            cells.append(f"<td class='num'>{_e(text)}</td>")
        rows.append(cells)
    return _table(header, rows)


def _verdicts_html(verdicts: Verdicts | None) -> str:
    """The verdict table of each comparison (``proxmf-bench compare`` prints the same)."""
    if verdicts is None:
        return ""
    parts = ["<h2 id='comparisons'>Paired comparisons</h2>",
             "<p class='muted'>Each variant of a solver against the one with the fewest parameters given, and "
             "each solver of two runs in the first against the second, per seed: wins/ties/losses of the "
             "candidate, the median difference (candidate − baseline; times as ratios, ×0.5 is half the time) "
             "with a 95% bootstrap interval, and the two-sided Wilcoxon signed-rank p-value from 6 pairs. "
             "Time to tolerance is within each solver's own problem; the final objective is compared only "
             "where both solve the same problem. The same table is in <span class='mono'>verdicts.csv</span>; "
             "<code>proxmf-bench compare</code> makes others.</p>"]
    header = ["dataset", "metric", "n", "W/T/L", "median [95% CI]", "p", "verdict"]
    for name, part in verdicts.table.groupby("comparison", sort=False):
        notes = "; ".join(verdicts.notes.get(name, []))
        parts.append(f"<h3><span class='mono'>{_e(name)}</span></h3><p class='muted'>{_e(notes)}.</p>")
        rows, classes = [], []
        for r in part.itertuples(index=False):
            metric = r.metric + (" (higher is better)" if r.better == "higher" else "")
            rows.append([f"<td class='mono'>{_e(r.dataset)}</td>", f"<td class='mono'>{_e(metric)}</td>",
                         f"<td class='num'>{r.n}</td>", f"<td class='num'>{r.wins}/{r.ties}/{r.losses}</td>",
                         f"<td class='num'>{_e(format_change(r.median, r.ci_low, r.ci_high, r.scale))}</td>",
                         f"<td class='num'>{_num(r.p_value, '.3g')}</td>", f"<td>{_e(r.verdict)}</td>"])
            classes.append({"better": "good", "worse": "bad"}.get(r.verdict, ""))
        parts.append(_table(header, rows, classes))
    return "\n".join(parts)


def _section_html(section: _Section, style: Style, frame: pd.DataFrame) -> str:
    sub = frame[(frame["dataset"] == section.dataset) & (frame["dtype"] == section.dtype)]
    parts = [f"<h2 id='{_e(section.slug)}'><span class='mono'>{_e(section.title)}</span></h2>"]
    parts += [f"<p class='muted'>{_e(note)}.</p>" for note in section.notes]
    for name, png, caption in section.figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{_e(caption)} Files: <span class='mono'>{_e(name)}.*</span></figcaption></figure>"
        )
    parts.append("<h3>Summary</h3>")
    parts.append(_summary_tables(section.summary, section.time_summary, style, sub, section.metrics))
    repeats = "; in brackets the range over the repeats of each cell" if (
        section.times["time_s_max"] > section.times["time_s_min"]).any() else ""
    parts.append(f"<details><summary><b>Time to tolerance per seed</b></summary><p class='muted'>Solver time at "
                 f"the first recorded point at or below each tolerance{repeats}.</p>")
    parts.append(_times_table(section.times, style, sub) + "</details>")
    return "\n".join(parts)


def _profiles_html(profiles: Sequence[tuple[str, bytes, int]]) -> str:
    """The performance profiles, one figure per tolerance, each with its instance count."""
    parts = ["<h2 id='profiles'>Performance profiles</h2>",
             "<p class='muted'>Dolan–Moré profiles over every problem and seed of the runs shown (each run "
             "directory's problems are separate instances): for each solver, the fraction of its instances "
             "on which it reached the tolerance within a factor τ of the fastest solver's time on that "
             "instance. At τ = 1: how often it was fastest; at the right end: how often it got there at all. "
             "A penalised variant solves its own problems, so its fraction is over those (the legend says "
             "how many). Ratios per instance: <span class='mono'>performance_ratios.csv</span>.</p>"]
    if not profiles:
        parts.append("<p>None: no problem was solved by two or more solvers.</p>")
    for (name, png, n), tol in zip(profiles, TOLERANCES):
        data = base64.b64encode(png).decode("ascii")
        caption = f"Performance profile for (F − f*)/f* ≤ {tol:.0e} over {n} instances."
        parts.append(f"<figure class='profile'><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{_e(caption)} Files: <span class='mono'>{_e(name)}.*</span></figcaption></figure>")
    return "\n".join(parts)


def _page(runs: Sequence[RunData], frame: pd.DataFrame, sections: Sequence[_Section],
          profiles: Sequence[tuple[str, bytes, int]], style: Style, fig_dir: Path, formats: Sequence[str],
          comparisons: str = "") -> str:
    tols = ", ".join(f"{t:.0e}" for t in TOLERANCES)
    nav = "".join(f"<li><a href='#{_e(s.slug)}' class='mono'>{_e(s.title)}</a></li>" for s in sections)
    solvers = ", ".join(
        f"<span class='mono'><span class='sw' style='background:{style.colors[s]}'></span>{_e(s)}</span>"
        for s in style.solvers
    )
    body = [
        "<h1>proxmf-bench report</h1>",
        f"<p class='muted'>{len(runs)} run(s), {len(sections)} dataset(s), {frame['problem'].nunique()} problem(s), "
        f"{len(style.solvers)} solver(s), "
        f"{frame.groupby(['run', 'dataset', 'dtype', 'device', 'solver', 'seed']).ngroups} solver runs.</p>",
        f"<p>Solvers: {solvers}</p>",
        _errors_block(frame),
        "<h2 id='runs'>Runs</h2>",
        _runs_table(runs),
        "<h2 id='reading'>How to read this report</h2>",
        "<ul>"
        "<li>A problem is a dataset with its parameters, in one dtype, for one seed and one objective: "
        "the loss <i>1/2 ||Y − WH||²</i> plus the penalties of the solver's prox operators "
        "(<i>F = f + g<sub>W</sub> + g<sub>H</sub></i>; projections add 0). MU, NALMU, the peers and "
        "PGM with the default proxes solve the nonnegative problem (<code>nonneg</code>). Solvers are "
        "compared only within a problem: each objective of a dataset has its own figures and f*. Runs "
        "and devices given together are overlaid on the same axes, named in the legend and told apart "
        "by line style where they overlay. A solver's variants (<code>pgm</code>, "
        "<code>pgm[prox_H=...]</code>) share its hue, in shades, with markers and thinner lines drawn "
        "above the first, so coinciding curves stay visible.</li>"
        "<li><i>f*</i> of a problem is the lowest of its reference optimum (<code>proxmf-bench "
        "reference</code>, <code>run --reference</code>), a value given with <code>--f-star</code>, "
        "and the lowest objective any run shown reached; where it comes from is stated with each "
        "figure and in <code>f_star.csv</code>. Suboptimality is <i>(F − f*) / f*</i>. Without a "
        "reference, the best run of each seed ends at 0, below the log axis, and adding a run can "
        "move f*.</li>"
        "<li>A prox operator that is neither a projection nor declares a penalty (such as "
        "<code>unity</code>) minimises no stated objective: its objective is unknown and it has no "
        "suboptimality; the summary says so.</li>"
        "<li>Lines are medians over seeds at each recorded iteration, bands the 25th to 75th "
        "percentile; a curve ends where more than half of its seeds stopped.</li>"
        f"<li>Time to tolerance ({_e(tols)}): solver time at the first recorded point at or below "
        "the tolerance (points are recorded on a geometric schedule, so this is an upper bound); "
        "the figures show each seed as a point (with the range over repeats when cells were timed "
        "several times, <code>--repeat</code>; <code>time_s</code> is then the median of the repeats) "
        "and the median over seeds as a tick, a seed that never got there as a cross at the right "
        "edge; the summary gives the median and interquartile range over seeds, counting such a "
        "seed as never, and the per-seed table each seed.</li>"
        "<li>Solver time excludes loss and metric evaluation; time per iteration excludes "
        "<code>init</code>.</li></ul>",
        f"<nav><b>Problems</b><ul><li><a href='#profiles'>Performance profiles</a></li>{nav}</ul></nav>",
        _profiles_html(profiles),
        comparisons,
        *(_section_html(s, style, frame) for s in sections),
        f"<p class='muted' style='margin-top:3em'>Figures as {_e(', '.join(f.upper() for f in formats))}, and the summary "
        f"tables as CSV, are in <span class='mono'>{_e(fig_dir)}</span>. Made by proxmf-bench "
        f"{_e(_version())}.</p>",
    ]
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            "<title>proxmf-bench report</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(p for p in body if p) + "\n</body>\n</html>\n")


def _version() -> str:
    try:
        return version("proxmf-bench")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"

"""The report's figures for a realistic run: no two texts overlap, none is clipped, and what
each figure shows (legend labels, hues, per-seed points) is what the issue asked for.

Two real run directories (several solvers, prox variants with long names, a black-box peer,
3 seeds, ``--repeat 2``, a long dataset label); the report's own rendering is captured and
every drawn text's extent measured with matplotlib's renderer.
"""

from itertools import combinations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from proxmf_bench.results import report as report_module
from proxmf_bench.results.analysis import add_suboptimality, combine_runs, load_runs, median_curves
from proxmf_bench.results.figures import DPI
from proxmf_bench.run.runner import run_benchmark

LONG = "pgm[prox_H=elastic_nonneg,lam_H=0.001,ridge_H=0.001]"
SOLVERS = f"pgm,{LONG},pgm[prox_H=l1_nonneg,lam_H=0.01],fista[restart=function],mu,sklearn_cd"
DATASET = "synthetic[m=156,n=300,rank=3,noise=0.05]"  # a Samson-sized label
OTHER = "synthetic[m=60,n=90,rank=4,noise=0.01]"


def drawn_texts(fig) -> list[Text]:
    """Every text the last draw put on the figure: tick labels of the ticks shown only."""
    ticks = set()
    shown = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in [*axis.majorTicks, *axis.minorTicks]:
                ticks.update({id(tick.label1), id(tick.label2)})
            if ax.get_visible() and axis.get_visible():
                for tick in axis._update_ticks():  # the ticks inside the view, as drawn
                    shown += [t for t in (tick.label1, tick.label2) if t.get_visible()]
    shown += [t for t in fig.findobj(Text) if id(t) not in ticks]
    return [t for t in shown if t.get_visible() and t.get_text().strip() and _in_visible_axes(t)]


def _in_visible_axes(text: Text) -> bool:
    ax = text.axes
    return ax is None or ax.get_visible()


def layout_problems(fig) -> list[str]:
    """Pairs of overlapping texts and texts reaching outside the figure, drawn at the PNG's
    resolution (text extents do not scale exactly with it)."""
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]
    problems = []
    page = fig.bbox
    for text, box in boxes:
        if box.x0 < page.x0 - 0.5 or box.y0 < page.y0 - 0.5 or box.x1 > page.x1 + 0.5 or box.y1 > page.y1 + 0.5:
            problems.append(f"outside the figure: {text!r} {box.bounds} in {page.bounds}")
    for (a, box_a), (b, box_b) in combinations(boxes, 2):
        overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if overlap_w > 1 and overlap_h > 1:
            problems.append(f"overlap: {a!r} and {b!r}")
    return problems


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    run_benchmark(solvers=SOLVERS, datasets=f"{DATASET},{OTHER}", seeds=3, max_iter=40, repeat=2,
                  out=root / "first")
    run_benchmark(solvers="pgm,mu", datasets=DATASET, seeds=3, max_iter=40, out=root / "second")
    return root


@pytest.fixture(scope="module")
def rendered(runs, tmp_path_factory):
    """(file name, figure) of every figure the report of both runs renders."""
    figures = []
    original = report_module.render

    def capture(fig, formats):
        out = original(fig, formats)
        figures.append(fig)
        return out

    report_module.render = capture
    try:
        report = report_module.build_report([runs / "first", runs / "second"],
                                            output=tmp_path_factory.mktemp("out") / "r.html", formats=("png",))
    finally:
        report_module.render = original
    names = [p.stem for p in report.files if p.suffix == ".png"]
    assert len(names) == len(figures)
    return list(zip(names, figures)), report


def test_no_text_overlaps_or_is_clipped(rendered):
    figures, _ = rendered
    kinds = {name.split("_")[-1] for name, _ in figures}
    assert {"convergence", "time-to-tolerance", "metrics"} <= kinds
    assert sum(name.startswith("performance-profile") for name, _ in figures) == 3
    problems = {name: layout_problems(fig) for name, fig in figures}
    assert not {k: v for k, v in problems.items() if v}


def test_checker_catches_overlap_and_clipping():
    """The layout check itself: two texts placed on each other, one past the right edge."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.text(0.5, 0.5, "954 ms (2/3 seeds)", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another label", transform=ax.transAxes)
    fig.text(0.95, 0.5, "clipped title")
    problems = layout_problems(fig)
    assert any(p.startswith("overlap") and "954 ms" in p for p in problems)
    assert any(p.startswith("outside") and "clipped title" in p for p in problems)


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_run_named_only_where_runs_overlay(rendered):
    figures = dict(rendered[0])
    one_run = [name for name in figures if name.startswith("synthetic-m-60") and name.endswith("nonneg_convergence")]
    both = [name for name in figures if name.startswith("synthetic-m-156") and name.endswith("nonneg_convergence")]
    assert one_run and both
    labels = _legend_labels(figures[one_run[0]])
    assert "pgm" in labels and not any("first" in label for label in labels)
    styles = {line.get_linestyle() for ax in figures[one_run[0]].axes for line in ax.get_lines()
              if line.get_marker() != "v"}
    assert styles == {"-"}  # nothing dashed where nothing overlays
    labels = _legend_labels(figures[both[0]])
    assert "pgm (first)" in labels and "pgm (second)" in labels


def test_a_family_shares_a_hue_and_variants_stay_visible(rendered):
    figures = dict(rendered[0])
    metrics = next(fig for name, fig in figures.items() if name.startswith("synthetic-m-156") and "metrics" in name)
    legend = {t.get_text().replace("\n", ""): h for lg in metrics.legends for t, h in zip(lg.get_texts(), lg.legend_handles)}
    base, variant = legend["pgm (first)"], legend[LONG + " (first)"]
    hue = {k: matplotlib.colors.rgb_to_hsv(matplotlib.colors.to_rgb(h.get_color()))[0] for k, h in
           (("base", base), ("variant", variant), ("mu", legend["mu (first)"]))}
    assert abs(hue["base"] - hue["variant"]) < 0.03 < abs(hue["base"] - hue["mu"])
    assert base.get_color() != variant.get_color()
    assert variant.get_marker() not in (None, "None", "") and variant.get_linewidth() < base.get_linewidth()


def test_time_to_tolerance_shows_every_seed(rendered):
    figures = dict(rendered[0])
    fig = next(f for name, f in figures.items() if name.startswith("synthetic-m-156") and name.endswith(
        "nonneg_time-to-tolerance"))
    assert not any(isinstance(p, matplotlib.patches.Rectangle) and p.get_width() > 0 and p.get_height() < 1
                   for ax in fig.axes for p in ax.patches)  # no bars
    points = sum(len(line.get_xdata()) for ax in fig.axes for line in ax.get_lines() if line.get_marker() in ("o", "x"))
    curves = 6 + 2 - 2  # nonneg problem: pgm, fista, mu, sklearn_cd (first), pgm, mu (second)
    assert points == curves * 3 * 3  # each seed, reached or not, in each of the 3 panels


def test_black_box_peer_runs_forward_in_time(runs):
    frame = add_suboptimality(combine_runs(load_runs([runs / "first"])))
    peer = frame[frame["solver"] == "sklearn_cd"]
    for _, seed in peer.sort_values("iteration").groupby(["dataset", "seed"]):
        assert (np.diff(seed["time_s"].to_numpy()) >= 0).all()
    curves = median_curves(peer, "subopt")
    for _, curve in curves.groupby("dataset"):
        assert (np.diff(curve.sort_values("iteration")["time_s"].to_numpy()) >= 0).all()


def test_summary_puts_reviewer_columns_first_with_iqr(rendered):
    _, report = rendered
    html = report.html_path.read_text(encoding="utf-8")
    table = html[html.index("<h3>Summary</h3>"):]
    table = table[:table.index("</table>")]
    header = [cell.split("</th>")[0] for cell in table.split("<th>")[1:]]
    # three objectives on this dataset (nonneg and the two penalised variants), a heading row
    # each; two runs
    assert header[:4] == ["solver", "run", "seeds", "final (F−f*)/f*"]
    assert table.count("<tr class='group'>") == 3
    assert set(header[4:7]) == {"final fms", "final rmse_H", "final sad_deg"}
    assert header[7:] == ["time to 1e-02", "time to 1e-04", "time to 1e-06"]
    assert "<span class='iqr'>[" in table
    summary = pd.read_csv(report.figures_dir / "summary.csv")
    assert {"subopt_q25", "subopt_q75", "time_s_q25", "sad_deg_q75"} <= set(summary.columns)

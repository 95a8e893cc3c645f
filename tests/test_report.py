"""The HTML report and figure files, from real runs with real plugins (no browser needed)."""

import base64
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from proxmf_bench import load_results
from proxmf_bench.cli import main
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.results.figures import Style, format_seconds
from proxmf_bench.results.report import build_report, output_paths
from proxmf_bench.run.runner import run_benchmark

PLUGIN = Path(__file__).with_name("report_plugin.py")
SOLVERS = "mu,mu[eps=1e-6],pgd,broken,exploding"
DATASETS = "synthetic[m=40,n=30,rank=3],lowrank[m=20,n=15]"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Tags, attributes, text and style of an HTML document."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text, self.style = [], [], [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value or "") for name, value in attrs)
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.style if self._in_style else self.text).append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    registry = load_registry([PLUGIN], use_entry_points=False)
    out = tmp_path_factory.mktemp("runs") / "first"
    run_benchmark(solvers=SOLVERS, datasets=DATASETS, seeds=2, max_iter=20, out=out, registry=registry)
    return out


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report([run_dir], formats=("png",))


def test_html_is_self_contained(report):
    page = parse(report.html_path)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(page.tags)
    for tag, name, value in page.attrs:
        assert not value.lower().startswith(("http:", "https:", "//")), (tag, name, value[:60])
        if name in ("src", "href"):
            assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:60])
        assert name != "style" or "url(" not in value
    style, text = "".join(page.style), "".join(page.text)
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    assert "http:" not in text and "https:" not in text


def test_html_names_every_solver_and_dataset(report, run_dir):
    text = " ".join(parse(report.html_path).text)
    frame = pd.read_parquet(run_dir / "results.parquet")
    for name in set(frame["solver"]) | set(frame["dataset"]):
        assert name in text, name
    assert "mu[eps=1e-6]" in text and "lowrank[m=20,n=15]" in text


def test_embedded_figures_are_the_written_pngs(report):
    page = parse(report.html_path)
    images = [v for tag, name, v in page.attrs if tag == "img" and name == "src"]
    pngs = [p for p in report.files if p.suffix == ".png"]
    # synthetic: convergence, metrics, tolerance; lowrank has no ground truth: no metrics
    # figure; a performance profile per tolerance
    assert len(images) == len(pngs) == 5 + 3
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in images}
    assert embedded == {p.read_bytes() for p in pngs}
    assert all(data.startswith(PNG_MAGIC) and len(data) > 10_000 for data in embedded)
    assert report.figures_dir == report.html_path.parent / "figures"
    assert not [p for p in pngs if "lowrank" in p.name and "metrics" in p.name]


def test_failed_solvers_still_report(report):
    text = " ".join(parse(report.html_path).text)
    assert "broken on purpose" in text
    assert "did not finish normally" in text
    assert "diverged" in text
    summary = pd.read_csv(report.figures_dir / "summary.csv").set_index(["dataset", "solver"])
    assert summary.loc[("lowrank[m=20,n=15]", "broken"), "stop_reasons"] == "error x2"
    assert "broken on purpose" in summary.loc[("lowrank[m=20,n=15]", "broken"), "errors"]
    assert summary.loc[("synthetic[m=40,n=30,rank=3]", "exploding"), "stop_reasons"] == "diverged x2"
    assert (summary["seeds"] == 2).all()


def test_several_runs_overlay(run_dir, tmp_path, monkeypatch):
    other = tmp_path / "second"
    run_benchmark(solvers="mu", datasets="synthetic[m=40,n=30,rank=3]", seeds=1, max_iter=5, out=other,
                  registry=load_registry(use_entry_points=False))
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run_dir), str(other), "--formats", "png"]) == 0
    html = tmp_path / "report.html"
    page = parse(html)
    text = " ".join(page.text)
    assert "first" in text and "second" in text
    assert sum(1 for tag in page.tags if tag == "img") == 5 + 3
    assert (tmp_path / "figures" / "synthetic-m-40-n-30-rank-3-float64_convergence.png").stat().st_size > 0
    summary = pd.read_csv(tmp_path / "figures" / "summary.csv")
    mu = summary[(summary["solver"] == "mu") & (summary["dataset"] == "synthetic[m=40,n=30,rank=3]")]
    assert sorted(mu["run"]) == ["first", "second"]


def test_run_with_report_flag_writes_every_format_deterministically(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--solvers", "mu", "--datasets", "synthetic[m=20,n=15,rank=2]", "--max-iter", "5",
                 "--out", str(out), "--report"])
    assert code == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    files = [out / "report.html", *(out / "figures").iterdir()]
    first = {p.name: p.read_bytes() for p in files}
    # the HTML, three figures in three formats, summary, f*, times and performance ratios CSV; one
    # solver: no performance profile
    assert len(first) == 1 + 3 * 3 + 4
    for stem in ("convergence", "metrics", "time-to-tolerance"):
        stem = f"synthetic-m-20-n-15-rank-2-float64_{stem}"
        assert first[f"{stem}.png"].startswith(PNG_MAGIC)
        assert first[f"{stem}.pdf"].startswith(b"%PDF") and b"CreationDate" not in first[f"{stem}.pdf"]
        assert ET.fromstring(first[f"{stem}.svg"]).tag.endswith("svg")
    assert main(["report", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in files} == first


@pytest.mark.parametrize("args, message", [
    (["missing-dir"], "no results found"),
    (["{run}", "--formats", "png,gif"], "unknown figure format gif"),
    (["{run}", "{run}"], "given twice"),
])
def test_bad_input_is_one_line_error(run_dir, tmp_path, capsys, args, message):
    args = [a.format(run=run_dir) if a != "missing-dir" else str(tmp_path / a) for a in args]
    assert main(["report", *args, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_output_paths(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert output_paths([one], None, None) == (one / "report.html", one / "figures")
    assert output_paths([one], tmp_path / "x.html", None) == (tmp_path / "x.html", one / "figures")
    assert output_paths([one, two], None, None) == (Path("report.html"), Path("figures"))
    assert output_paths([one, two], tmp_path / "c.html", None) == (tmp_path / "c.html", tmp_path / "figures")
    assert output_paths([one, two], tmp_path, tmp_path / "f") == (tmp_path / "report.html", tmp_path / "f")


def test_colours_follow_solvers_across_problems():
    frame = pd.DataFrame({
        "run": ["r"] * 4, "device": ["cpu"] * 4, "solver": ["b", "a", "b", "c"],
        "dataset": ["d1", "d1", "d2", "d2"],
    })
    style = Style.from_frame(frame)
    assert style.solvers == ("b", "a", "c")
    assert len(set(style.colors.values())) == 3
    assert style.curves(frame[frame["dataset"] == "d2"]) == [("r", "cpu", "b"), ("r", "cpu", "c")]
    assert style.curve_label("r", "cpu", "a") == "a"


def test_format_seconds():
    assert format_seconds(3.2e-5) == "32.0 µs"
    assert format_seconds(1.5) == "1.50 s"
    assert format_seconds(1.0) == "1.00 s"
    assert format_seconds(0.954) == "954 ms"
    assert format_seconds(0.0713) == "71.3 ms"
    assert format_seconds(2500.0) == "2500 s"
    assert format_seconds(float("inf")) == "not reached"


def test_a_solver_family_has_one_hue_and_runs_are_named_only_where_they_overlay():
    import matplotlib.colors as mcolors
    frame = pd.DataFrame({
        "run": ["r1", "r1", "r1", "r2"], "device": ["cpu"] * 4,
        "solver": ["pgm", "pgm[prox_H=l1,lam_H=0.1]", "mu", "pgm"], "dataset": ["d1", "d1", "d1", "d2"],
    })
    style = Style.from_frame(frame)
    hue = {s: mcolors.rgb_to_hsv(mcolors.to_rgb(c))[0] for s, c in style.colors.items()}
    assert abs(hue["pgm"] - hue["pgm[prox_H=l1,lam_H=0.1]"]) < 0.03 < abs(hue["pgm"] - hue["mu"])
    assert len(set(style.colors.values())) == 3
    assert style.variant("pgm")["lw"] > style.variant("pgm[prox_H=l1,lam_H=0.1]")["lw"]
    one_run = style.within(frame[frame["dataset"] == "d1"])
    assert one_run.curve_label("r1", "cpu", "pgm") == "pgm" and one_run.linestyle(("r1", "cpu")) == "-"
    assert style.curve_label("r2", "cpu", "pgm") == "pgm (r2)" and style.linestyle(("r2", "cpu")) != "-"


def test_variants_of_one_solver_get_a_verdict_table(report, run_dir, tmp_path):
    page = parse(report.html_path)
    text = " ".join(page.text)
    assert "Paired comparisons" in text and "mu[eps=1e-6] vs mu" in text
    written = (report.figures_dir / "verdicts.csv").read_text()
    # the same table as the command prints for that comparison
    target = tmp_path / "verdicts.csv"
    assert main(["compare", str(run_dir), "--baseline", "mu", "--candidate", "mu[eps=1e-6]", "--csv",
                 str(target), "--plugin", str(PLUGIN)]) == 0
    assert written == target.read_text()
    table = pd.read_csv(report.figures_dir / "verdicts.csv")
    assert set(table["comparison"]) == {"mu[eps=1e-6] vs mu"}  # pgd, broken, exploding have no variants
    per_dataset = table[table["dataset"] != "all"]
    assert (per_dataset["pairs"] == 2).all()
    pooled = table[table["dataset"] == "all"].set_index("metric")["pairs"]  # a metric of one dataset only: 2
    assert pooled.to_dict() == per_dataset.groupby("metric")["pairs"].sum().to_dict()
    assert table["verdict"].str.startswith(("not enough seeds", "identical", "neither reached")).all()


def test_raw_long_table_as_csv(run_dir, tmp_path, capsys):
    html = tmp_path / "only-csv.html"
    assert main(["report", str(run_dir), "--formats", "csv", "-o", str(html), "--figures", str(tmp_path / "f")]) == 0
    assert "results.csv" in capsys.readouterr().out
    assert not list((tmp_path / "f").glob("*.png"))  # no figure files, but the HTML still embeds them
    assert sum(1 for tag in parse(html).tags if tag == "img") > 0
    raw = pd.read_csv(tmp_path / "f" / "results.csv")
    frame = load_results(run_dir)
    assert list(raw.columns) == [*frame.columns, "run"] and len(raw) == len(frame)
    assert (raw["run"] == run_dir.name).all()
    pd.testing.assert_series_equal(raw["loss"], frame["loss"].astype(float), check_names=False)
    assert main(["report", str(run_dir), "--formats", "png", "--csv", "-o", str(html),
                 "--figures", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "results.csv").read_bytes() == (tmp_path / "f" / "results.csv").read_bytes()
    assert list((tmp_path / "g").glob("*.png"))

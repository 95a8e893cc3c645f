"""The README's three lines of pandas, verbatim, redraw the report's median loss curves."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest

from conftest import REPO
from proxmf_bench.results.analysis import combine_runs, load_runs, median_curves
from proxmf_bench.run.runner import run_benchmark

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def snippet():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- pandas-figure -->\n```python\n(.*?)```\n<!-- /pandas-figure -->", readme, re.S)
    assert block, "README.md lacks the pandas-figure example"
    code = block.group(1)
    assert len([line for line in code.splitlines() if line and not line.startswith("import")]) == 3
    return code


def test_the_snippet_redraws_the_median_curves(snippet, tmp_path):
    out = tmp_path / "night"
    dataset = "synthetic[m=25,n=20,rank=3]"
    run_benchmark(solvers="mu,pgm", datasets=f"{dataset},nnls_toy", seeds=3, max_iter=12, out=out)
    code = snippet.replace('"results/night/results.parquet"', repr(str(out / "results.parquet")))
    code = code.replace('"samson"', repr(dataset))
    plt.close("all")
    exec(compile(code, "README.md", "exec"), {})
    lines = {line.get_label(): line for line in plt.gca().get_lines()}
    assert set(lines) == {"mu", "pgm"}
    curves = median_curves(combine_runs(load_runs([out])).assign(value=lambda f: f["loss"]), "value")
    for solver, line in lines.items():
        mine = curves[(curves["dataset"] == dataset) & (curves["solver"] == solver)]
        np.testing.assert_array_equal(line.get_xdata(), mine["iteration"].to_numpy())
        np.testing.assert_allclose(line.get_ydata(), mine["median"].to_numpy(), rtol=1e-12)
    plt.close("all")

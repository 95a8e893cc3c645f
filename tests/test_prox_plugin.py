"""The README's prox plugin, verbatim, through the command line: listed and used by pgm."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from conftest import REPO
from proxmf_bench import cli
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.start import initial_factors


@pytest.fixture
def plugin_file(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- prox-plugin -->\n```python\n(.*?)```\n<!-- /prox-plugin -->", readme, re.S)
    assert block, "README.md lacks the prox-plugin example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 16
    path = tmp_path / "my_prox.py"
    path.write_text(code)
    return path


def test_plugin_prox_is_listed_with_its_parameters(plugin_file, capsys):
    assert cli.main(["list", "prox", "--plugin", str(plugin_file), "--strict-plugins"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  ridge_nonneg  - max\(x, 0\) / \(1 \+ step \* lam\)  \[plugin file:my_prox\]$", out, re.M)
    assert "lam=1.0 (float, [0, inf]): weight of lam/2 ||x||^2" in out
    assert "simplex" in out and "l1_ball" in out  # the built-ins are listed alongside


def test_pgm_uses_the_plugin_prox_from_the_command_line(plugin_file, tmp_path, capsys):
    out_dir = tmp_path / "run"
    dataset = "synthetic[m=20,n=15,rank=2]"
    solvers = "pgm,pgm[prox_H=ridge_nonneg,lam_H=10]"
    status = cli.main(["run", "--plugin", str(plugin_file), "--solvers", solvers, "--datasets", dataset,
                       "--max-iter", "20", "--out", str(out_dir)])
    assert status == 0, capsys.readouterr().err
    frame = pd.read_parquet(out_dir / "results.parquet")
    last = frame[frame.iteration == 20].set_index("solver")
    params = json.loads(last.loc["pgm[prox_H=ridge_nonneg,lam_H=10]", "solver_params"])
    assert params["prox_H"] == "ridge_nonneg" and params["lam_H"] == 10.0 and params["prox_W"] == "nonneg"

    # the recorded loss is that of pgm with the plugin's operator, recomputed here directly
    registry = load_registry([plugin_file], use_entry_points=False)
    (variant,) = select(solvers.split(",", 1)[1], registry.solvers, registry, "solver")
    (data,) = select(dataset, registry.datasets, registry, "dataset")
    problem = registry.get_dataset("synthetic").load(data.params, 0, torch.device("cpu"), torch.float64)
    solver = registry.get_solver("pgm").factory(**variant.params)
    solver.init(problem, *initial_factors(problem, 0))
    for _ in range(20):
        solver.step()
    with_plugin = last.loc["pgm[prox_H=ridge_nonneg,lam_H=10]", "loss"]
    assert with_plugin == pytest.approx(problem.loss(*solver.factors()), rel=1e-10)
    assert abs(with_plugin - last.loc["pgm", "loss"]) > 0.01 * with_plugin  # and differs from nonneg


def test_bad_plugin_parameters_are_rejected_before_running(plugin_file, tmp_path, capsys):
    status = cli.main(["run", "--plugin", str(plugin_file), "--solvers", "pgm[prox_H=ridge_nonneg,lam_H=-1]",
                       "--out", str(tmp_path / "run")])
    assert status == 2
    assert "lam=-1.0 is below its minimum 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_elastic_net_example_is_the_prox_of_its_penalty():
    """benchmarks/elastic_net_prox.py (the README's comparison) against argmin of its definition."""
    import importlib.util

    from scipy.optimize import minimize_scalar

    path = REPO / "benchmarks" / "elastic_net_prox.py"
    spec = importlib.util.spec_from_file_location("elastic_net_prox", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X = torch.linspace(-2, 3, 11, dtype=torch.float64)
    Z = module.prox_enet_nonneg(X, 0.7, lam1=0.4, lam2=1.5)
    for x, z in zip(X.tolist(), Z.tolist()):
        def g(v):
            return 0.5 * (v - x) ** 2 + 0.7 * (0.4 * v + 0.75 * v * v)

        best = minimize_scalar(g, bounds=(0, 10), method="bounded", options={"xatol": 1e-12}).x
        assert z == pytest.approx(best, abs=1e-7)
    assert float(module.penalty_enet_nonneg(Z, lam1=0.4, lam2=1.5)) == pytest.approx(
        0.4 * float(Z.sum()) + 0.75 * float((Z * Z).sum()))

"""The README's dataset plugin, verbatim, through the command line: listed, loaded, run."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import dump_svmlight_file

from conftest import REPO
from proxmf_bench import cli
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select


@pytest.fixture
def plugin_file(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- dataset-plugin -->\n```python\n(.*?)```\n<!-- /dataset-plugin -->", readme, re.S)
    assert block, "README.md lacks the dataset-plugin example"
    path = tmp_path / "my_svmlight.py"
    path.write_text(block.group(1))
    return path


@pytest.fixture
def counts(tmp_path):
    """Term counts of 30 documents over 25 terms, written as an svmlight file."""
    rng = np.random.default_rng(0)
    X = sp.random(30, 25, density=0.3, format="lil", random_state=0, data_rvs=lambda k: rng.poisson(2, k) + 1.0)
    X[:, 24] = 1.0  # every term used, so the file says there are 25
    dump_svmlight_file(X.tocsr(), np.zeros(30), str(tmp_path / "news.svm"))
    return X.toarray()


def test_the_plugin_loads_terms_by_documents(plugin_file, counts, tmp_path):
    registry = load_registry([plugin_file], use_entry_points=False, strict=True)
    for scale, expected in (("counts", counts.T), ("log1p", np.log1p(counts.T))):
        (variant,) = select(f"svmlight[path={tmp_path / 'news.svm'},rank=4,scale={scale}]", registry.datasets,
                            registry, "dataset")
        problem = registry.get_dataset("svmlight").load(variant.params, 0, torch.device("cpu"), torch.float64)
        assert problem.shape == (25, 30)
        assert problem.is_sparse  # the example keeps the counts sparse
        torch.testing.assert_close(problem.Y.to_dense(), torch.from_numpy(expected), rtol=1e-15, atol=0)


def test_the_plugin_runs_from_the_command_line(plugin_file, counts, tmp_path, capsys):
    assert cli.main(["list", "datasets", "--plugin", str(plugin_file)]) == 0
    assert "svmlight  - terms x documents from an svmlight file  [plugin file:my_svmlight]" in capsys.readouterr().out
    dataset = f"svmlight[path={tmp_path / 'news.svm'},rank=4,scale=log1p]"
    status = cli.main(["run", "--plugin", str(plugin_file), "--solvers", "mu,fista", "--datasets", dataset,
                       "--max-iter", "20", "--out", str(tmp_path / "run")])
    assert status == 0, capsys.readouterr().err
    frame = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert set(frame.solver_name) == {"mu", "fista"} and (frame.stop_reason == "max_iter").all()
    assert cli.main(["run", "--plugin", str(plugin_file), "--solvers", "mu", "--datasets", "svmlight[rank=4]"]) == 2
    assert "dataset svmlight: parameter 'path' is required" in capsys.readouterr().err

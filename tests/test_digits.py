"""scikit-learn's digits as a dataset without ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from proxmf_bench.errors import UserError
from proxmf_bench.run.runner import run_benchmark


def test_digits_layout(registry):
    spec = registry.get_dataset("digits")
    p = spec.load(spec.resolve({}, registry), 0, torch.device("cpu"), torch.float32)
    images = load_digits().data
    assert p.shape == (64, len(images)) and p.rank == 10 and p.dtype == torch.float32
    assert not p.has_ground_truth
    np.testing.assert_allclose(p.Y[:, 5].numpy(), images[5] / 16.0, rtol=1e-6)
    two = spec.load(spec.resolve({"n_class": "2", "rank": "4"}, registry), 0, torch.device("cpu"), torch.float64)
    assert two.shape == (64, int((load_digits().target < 2).sum())) and two.rank == 4


def test_digits_rank_is_bounded(registry):
    with pytest.raises(UserError, match="above its maximum 64"):
        registry.get_dataset("digits").resolve({"rank": "65"}, registry)


def test_run_on_digits_records_rel_error_only(tmp_path, registry):
    out = run_benchmark(solvers="mu", datasets="digits[rank=5]", max_iter=5, out=tmp_path / "run", registry=registry)
    assert out.frame.rel_error.notna().all() and out.frame.rel_error.iloc[-1] < 1.0
    assert "sad_deg" not in out.frame.columns

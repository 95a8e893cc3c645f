"""Ground-truth metrics against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from proxmf_bench.metrics import (
    abundance_rmse,
    factor_match_score,
    ground_truth_metrics,
    match_components,
    record_metrics,
    relative_error,
    spectral_angles,
)
from proxmf_bench.problem import Problem


def _problem(W_true, H_true):
    W_true, H_true = torch.as_tensor(W_true, dtype=torch.float64), torch.as_tensor(H_true, dtype=torch.float64)
    return Problem(Y=W_true @ H_true, rank=W_true.shape[1], W_true=W_true, H_true=H_true)


@pytest.fixture
def truth():
    gen = torch.Generator().manual_seed(0)
    W = torch.rand(12, 4, generator=gen, dtype=torch.float64)
    H = torch.rand(4, 30, generator=gen, dtype=torch.float64)
    return _problem(W, H)


def test_identical_factors_are_perfect(truth):
    m = ground_truth_metrics(truth, truth.W_true.clone(), truth.H_true.clone())
    assert m["sad_deg"] == pytest.approx(0.0, abs=1e-5)
    assert all(m[f"sad_deg_{k}"] == pytest.approx(0.0, abs=1e-5) for k in range(4))
    assert m["rmse_H"] == pytest.approx(0.0, abs=1e-12)
    assert m["fms"] == pytest.approx(1.0)


def test_permuted_and_rescaled_factors_are_perfect(truth):
    perm = torch.tensor([2, 0, 3, 1])
    d = torch.tensor([0.1, 3.0, 7.0, 0.5], dtype=torch.float64)
    W = truth.W_true[:, perm] / d          # (W D^-1 P, P D H): the same product W H
    H = truth.H_true[perm, :] * d[:, None]
    assert torch.allclose(W @ H, truth.Y)
    m = ground_truth_metrics(truth, W, H)
    assert m["sad_deg"] == pytest.approx(0.0, abs=1e-5)
    assert m["rmse_H"] == pytest.approx(0.0, abs=1e-12)
    assert m["fms"] == pytest.approx(1.0)


@pytest.mark.parametrize("theta", [5.0, 30.0, 60.0])
def test_known_rotation_gives_its_angle(theta):
    t = math.radians(theta)
    W_true = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    # second true endmember rotated by theta in the (e2, e3) plane; columns given swapped
    W = torch.tensor([[0.0, 1.0], [math.cos(t), 0.0], [math.sin(t), 0.0]], dtype=torch.float64)
    p = _problem(W_true, [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    m = ground_truth_metrics(p, W, torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]], dtype=torch.float64))
    assert m["sad_deg_0"] == pytest.approx(0.0, abs=1e-6)
    assert m["sad_deg_1"] == pytest.approx(theta)
    assert m["sad_deg"] == pytest.approx(theta / 2)
    assert m["rmse_H"] == pytest.approx(0.0, abs=1e-12)
    assert m["fms"] == pytest.approx((1.0 + math.cos(t)) / 2)


def test_matching_is_the_optimal_assignment():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        W = torch.rand(6, 4, generator=gen, dtype=torch.float64)
        W_true = torch.rand(6, 4, generator=gen, dtype=torch.float64)
        angles = spectral_angles(W, W_true)
        best = min(sum(angles[p[k], k] for k in range(4)) for p in itertools.permutations(range(4)))
        perm, matched = match_components(W, W_true)
        assert sorted(perm) == [0, 1, 2, 3]
        assert matched.sum() == pytest.approx(best)
        np.testing.assert_allclose(matched, angles[perm, np.arange(4)])


def test_spectral_angles_against_arccos():
    W = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(spectral_angles(W, W), [[0.0, 45.0], [45.0, 0.0]], atol=1e-6)


def test_abundance_rmse_hand_computed():
    H_true = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    H = torch.tensor([[2.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    # row 0: scale 1/2 gives [1, 0] exactly; row 1: scale 1 gives [.5, .5], errors .5 and .5
    assert abundance_rmse(H, H_true) == pytest.approx(math.sqrt((0.25 + 0.25) / 4))


def test_factor_match_score_hand_computed():
    W_true = torch.eye(2, dtype=torch.float64)
    H_true = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    W = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    H = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert factor_match_score(W, H, W_true, H_true) == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)


def test_relative_error_from_loss(truth):
    W = truth.W_true + 0.05
    H = truth.H_true
    expected = float(torch.linalg.norm(truth.Y - W @ H) / torch.linalg.norm(truth.Y))
    assert relative_error(truth, truth.loss(W, H)) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(relative_error(truth, math.nan))


def test_record_metrics_without_ground_truth_has_only_rel_error():
    Y = torch.rand(5, 6, dtype=torch.float64)
    p = Problem(Y=Y, rank=2)
    W, H = torch.rand(5, 2, dtype=torch.float64), torch.rand(2, 6, dtype=torch.float64)
    assert set(record_metrics(p, W, H, p.loss(W, H))) == {"rel_error"}


def test_non_finite_factors_give_nan_metrics(truth):
    W = truth.W_true.clone()
    W[0, 0] = math.nan
    m = ground_truth_metrics(truth, W, truth.H_true)
    assert set(m) == {"sad_deg", "rmse_H", "fms", *(f"sad_deg_{k}" for k in range(4))}
    assert all(math.isnan(v) for v in m.values())

"""Ground-truth metrics against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from proxmf_bench.problem.metrics import (
    DeferredMetrics,
    abundance_rmse,
    factor_match_score,
    ground_truth_metrics,
    match_components,
    relative_error,
    spectral_angles,
)
from proxmf_bench.problem.problem import Problem


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


def test_without_ground_truth_only_rel_error_is_recorded():
    gen = torch.Generator().manual_seed(0)
    Y = torch.rand(5, 6, generator=gen, dtype=torch.float64)
    p = Problem(Y=Y, rank=2)
    W, H = torch.rand(5, 2, generator=gen, dtype=torch.float64), torch.rand(2, 6, generator=gen, dtype=torch.float64)
    record = {"loss": p.loss(W, H)}
    metrics = DeferredMetrics(p)
    metrics.add(record, W, H)
    metrics.flush()
    assert set(record) == {"loss", "rel_error"}


def test_non_finite_factors_give_nan_metrics(truth):
    W = truth.W_true.clone()
    W[0, 0] = math.nan
    m = ground_truth_metrics(truth, W, truth.H_true)
    assert set(m) == {"sad_deg", "rmse_H", "fms", *(f"sad_deg_{k}" for k in range(4))}
    assert all(math.isnan(v) for v in m.values())


# --- the record-point implementation against an independent definition -------------------


def _reference(W: np.ndarray, H: np.ndarray, W_true: np.ndarray, H_true: np.ndarray) -> dict[str, float]:
    """The metrics by their definitions: brute-force matching over all permutations, angles by
    Kahan's formula on unit vectors, the abundance residual with its least-squares scale."""
    r, n = H_true.shape

    def angle(a: np.ndarray, b: np.ndarray) -> float:
        if not a.any():
            return math.pi / 2
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        return 2.0 * math.atan2(np.linalg.norm(a - b), np.linalg.norm(a + b))

    A = np.array([[angle(W[:, i], W_true[:, k]) for k in range(r)] for i in range(r)])
    perm = np.array(min(itertools.permutations(range(r)), key=lambda p: sum(A[p[k], k] for k in range(r))))
    sad = np.array([A[perm[k], k] for k in range(r)])
    residual, cos_H = 0.0, []
    for k in range(r):
        h, h_true = H[perm[k]], H_true[k]
        scale = h @ h_true / (h @ h) if h.any() else 0.0
        residual += np.sum((scale * h - h_true) ** 2)
        cos_H.append(math.cos(angle(h, h_true)))
    out = {"sad_deg": float(np.degrees(sad).mean()), "rmse_H": math.sqrt(residual / (r * n)),
           "fms": float(np.mean(np.cos(sad) * np.array(cos_H)))}
    out.update({f"sad_deg_{k}": float(np.degrees(a)) for k, a in enumerate(sad)})
    return out


def _assert_metrics_match(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def _random_case(gen: np.random.Generator, m: int, n: int, r: int, noise: float, signed: bool = False):
    W_true, H_true = gen.random((m, r)), gen.random((r, n))
    perm, scale = gen.permutation(r), gen.uniform(0.1, 10.0, r)
    W = W_true[:, perm] / scale + noise * gen.standard_normal((m, r))
    H = H_true[perm] * scale[:, None] + noise * gen.standard_normal((r, n))
    if not signed:
        W, H = np.abs(W), np.abs(H)
    return W, H, W_true, H_true


@pytest.mark.parametrize("noise", [0.0, 1e-10, 1e-6, 0.05, 0.5, 3.0])
def test_metrics_equal_their_definitions(noise):
    gen = np.random.default_rng(int(noise * 1e10) % 1000)
    for r in (1, 2, 4):
        W, H, W_true, H_true = _random_case(gen, 15, 11, r, noise)
        problem = _problem(W_true, H_true)
        got = ground_truth_metrics(problem, torch.from_numpy(W), torch.from_numpy(H))
        _assert_metrics_match(got, _reference(W, H, W_true, H_true))


def test_metrics_of_factors_with_negative_entries_and_zero_vectors():
    gen = np.random.default_rng(5)
    for _ in range(10):
        W, H, W_true, H_true = _random_case(gen, 9, 7, 3, 1.0, signed=True)
        W[:, 1] = 0.0
        H[2] = 0.0
        problem = _problem(W_true, H_true)
        got = ground_truth_metrics(problem, torch.from_numpy(W), torch.from_numpy(H))
        _assert_metrics_match(got, _reference(W, H, W_true, H_true))


def test_reusing_the_last_matching_never_changes_the_result():
    """A sequence of record points on one problem: the matching kept from the previous point
    is reused only when provably optimal, so every point equals its definition, including
    when the estimate's components swap places between two points."""
    gen = np.random.default_rng(11)
    W_true, H_true = gen.random((20, 5)), gen.random((5, 13))
    problem = _problem(W_true, H_true)
    for step in range(60):
        noise = [1e-8, 1e-3, 0.1, 0.6][step % 4]
        perm = gen.permutation(5) if step % 3 else np.arange(5)
        W = np.abs(W_true[:, perm] + noise * gen.standard_normal((20, 5)))
        H = np.abs(H_true[perm] + noise * gen.standard_normal((5, 13)))
        got = ground_truth_metrics(problem, torch.from_numpy(W), torch.from_numpy(H))
        _assert_metrics_match(got, _reference(W, H, W_true, H_true))


def test_float32_factors_are_measured_to_float32_precision():
    gen = np.random.default_rng(2)
    W, H, W_true, H_true = _random_case(gen, 30, 20, 3, 1e-3)
    problem = _problem(W_true, H_true).to("cpu", torch.float32)
    W32, H32 = torch.from_numpy(W).float(), torch.from_numpy(H).float()
    got = ground_truth_metrics(problem, W32, H32)
    want = _reference(W32.double().numpy(), H32.double().numpy(),
                      problem.W_true.double().numpy(), problem.H_true.double().numpy())
    # float32 resolves angles to ~1e-7 rad: 1e-5 degrees, and rmse_H to 1e-6 of the abundances
    tolerance = {"rmse_H": 1e-6 * float(problem.H_true.abs().max()), "fms": 1e-6}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=tolerance.get(key, 1e-5)), key
    # no arccos floor: the truth itself, rescaled, is at (nearly) zero angle, not ~0.02 degrees
    exact = ground_truth_metrics(problem, problem.W_true * 3.0, problem.H_true / 3.0)
    assert exact["sad_deg"] < 1e-4 and exact["rmse_H"] < 1e-6 * float(problem.H_true.abs().max())


def test_deferred_metrics_use_copies_taken_at_add():
    gen = np.random.default_rng(4)
    W, H, W_true, H_true = _random_case(gen, 12, 9, 3, 0.1)
    problem = _problem(W_true, H_true)
    W_t, H_t = torch.from_numpy(W.copy()), torch.from_numpy(H.copy())
    record = {"loss": problem.loss(W_t, H_t)}
    metrics = DeferredMetrics(problem)
    metrics.add(record, W_t, H_t)
    assert set(record) == {"loss", "rel_error"}  # ground truth waits for flush
    W_t.mul_(0.0).add_(1.0)  # the solver goes on in place
    metrics.flush()
    _assert_metrics_match({k: v for k, v in record.items() if k not in ("loss", "rel_error")},
                          _reference(W, H, W_true, H_true))


def test_deferred_metrics_flush_when_the_copies_reach_the_budget():
    gen = np.random.default_rng(6)
    W, H, W_true, H_true = _random_case(gen, 12, 9, 3, 0.1)
    problem = _problem(W_true, H_true)
    one_copy = (W.size + H.size) * 8
    metrics = DeferredMetrics(problem, max_bytes=2 * one_copy)
    records = [{"loss": 1.0} for _ in range(3)]
    for record in records:
        metrics.add(record, torch.from_numpy(W), torch.from_numpy(H))
    assert ["sad_deg" in rec for rec in records] == [True, True, False]
    metrics.flush()
    assert all("sad_deg" in rec for rec in records)


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_deferred_metrics_equal_one_by_one_for_either_memory_layout(layout):
    """Batched evaluation (several records per batch) gives each record its own metrics,
    whether the solver holds W row-major (mu) or as the transpose of an r x m matrix (pgm)."""
    gen = np.random.default_rng(9)
    W_true, H_true = gen.random((16, 3)), gen.random((3, 10))
    problem = _problem(W_true, H_true)
    metrics, records, expected = DeferredMetrics(problem), [], []
    for noise in (0.8, 0.3, 1e-3, 1e-7, 0.5):
        perm = gen.permutation(3)
        W = np.abs(W_true[:, perm] + noise * gen.standard_normal((16, 3)))
        H = np.abs(H_true[perm] + noise * gen.standard_normal((3, 10)))
        W_t = torch.from_numpy(W) if layout == "rows" else torch.from_numpy(W.T.copy()).T
        records.append({"loss": 1.0})
        metrics.add(records[-1], W_t, torch.from_numpy(H))
        expected.append(_reference(W, H, W_true, H_true))
    metrics.flush()
    for record, want in zip(records, expected):
        _assert_metrics_match({k: v for k, v in record.items() if k not in ("loss", "rel_error")}, want)


def test_metrics_of_a_run_do_not_depend_on_the_runs_before_it():
    """The same record points give bit-identical metrics whether or not another run on the
    same problem came first in this process (as with --jobs, where it depends on timing)."""
    gen = np.random.default_rng(12)
    W_true, H_true = gen.random((40, 4)), gen.random((4, 60))
    problem = _problem(W_true, H_true)

    def run(noises, seed):
        rng = np.random.default_rng(seed)
        metrics, records = DeferredMetrics(problem), []
        for noise in noises:  # estimates 10 to 40 degrees away from the truth, as early in a run
            W = np.abs(W_true + noise * rng.standard_normal(W_true.shape))
            H = np.abs(H_true + noise * rng.standard_normal(H_true.shape))
            records.append({"loss": 1.0})
            metrics.add(records[-1], torch.from_numpy(W), torch.from_numpy(H))
        metrics.flush()
        return records

    alone = run([0.4, 0.3, 0.2], seed=1)
    run([0.05, 0.02], seed=2)  # another solver on the same problem ends well matched
    after = run([0.4, 0.3, 0.2], seed=1)
    assert min(r["sad_deg"] for r in alone) > 10
    assert after == alone  # exact: every digit of every metric

"""MU: monotone loss, determinism, and agreement with a direct implementation of Lee-Seung."""

import numpy as np
import pytest
import torch

from proxmf_bench.datasets.synthetic import make_synthetic
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.solvers.mu import MU


def _params():
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select

    registry = load_registry(use_entry_points=False)
    return dict(select("synthetic[m=40,n=30,rank=4,noise=0.05]", registry.datasets, registry, "dataset")[0].params)


PARAMS = _params()


def _run_mu(problem, seed, iters):
    W0, H0 = initial_factors(problem, seed)
    solver = MU()
    solver.init(problem, W0.clone(), H0.clone())
    losses = [problem.loss(*solver.factors())]
    for _ in range(iters):
        solver.step()
        losses.append(problem.loss(*solver.factors()))
    return solver, np.array(losses)


def test_mu_loss_is_non_increasing_in_float64():
    problem = make_synthetic(PARAMS, seed=0)
    _, losses = _run_mu(problem, 0, 300)
    assert losses[-1] < 0.05 * losses[0]
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1])


def test_mu_matches_textbook_lee_seung_in_numpy():
    problem = make_synthetic(PARAMS, seed=1)
    W0, H0 = initial_factors(problem, 1)
    solver = MU(eps=0.0)
    solver.init(problem, W0.clone(), H0.clone())
    Y, W, H = problem.Y.numpy(), W0.numpy().copy(), H0.numpy().copy()
    for _ in range(25):
        solver.step()
        H = H * (W.T @ Y) / (W.T @ W @ H)
        W = W * (Y @ H.T) / (W @ H @ H.T)
    Wt, Ht = solver.factors()
    np.testing.assert_allclose(Wt.numpy(), W, rtol=1e-10)
    np.testing.assert_allclose(Ht.numpy(), H, rtol=1e-10)


def test_mu_keeps_w_fixed_in_nnls_mode():
    base = make_synthetic(PARAMS, seed=2)
    problem = type(base)(Y=base.Y, rank=base.rank, W_true=base.W_true, H_true=base.H_true, fixed_W=True)
    solver, losses = _run_mu(problem, 2, 50)
    torch.testing.assert_close(solver.factors()[0], base.W_true, rtol=0, atol=1e-12)
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_loss_equals_direct_loss(dtype):
    problem = make_synthetic(PARAMS, seed=3).to("cpu", dtype)
    W, H = initial_factors(problem, 3)
    direct = 0.5 * float(torch.sum((problem.Y.double() - W.double() @ H.double()) ** 2))
    assert problem.loss(W, H) == pytest.approx(direct, rel=1e-5 if dtype == torch.float32 else 1e-12)


def test_same_seed_gives_identical_results_different_seed_does_not():
    from proxmf_bench import run_benchmark

    def frame(seed_count, out):
        return run_benchmark(solvers="mu", datasets="synthetic[m=30,n=20,rank=3]", seeds=seed_count,
                             max_iter=30, out=out).frame

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a = frame(2, f"{tmp}/a")
        b = frame(2, f"{tmp}/b")
    cols = ["solver", "dataset", "seed", "iteration", "loss", "sad_deg", "rmse_H"]
    assert a[cols].equals(b[cols])
    by_seed = a[a.iteration == 30].set_index("seed").loss
    assert by_seed[0] != by_seed[1]

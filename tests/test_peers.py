"""Peer adapters (scikit-learn, tensorly, torchnmf) against independent MU and HALS loops."""

from pathlib import Path

import numpy as np
import pytest
import torch

from proxmf_bench import run_benchmark
from proxmf_bench.cli import main
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors

PEERS = {
    "sklearn_mu": "sklearn", "sklearn_cd": "sklearn", "tensorly_mu": "tensorly",
    "tensorly_hals": "tensorly", "tensorly_mu[backend=pytorch]": "tensorly",
    "tensorly_hals[backend=pytorch]": "tensorly", "torchnmf_mu": "torchnmf",
}
TINY = "synthetic[m=40,n=30,rank=3,noise=0.1]"
MISSING = str(Path(__file__).parent / "plugins" / "missing_peer.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run of every installed peer and of mu on the tiny problem, float64, 20 iterations."""
    installed = [name for name, module in PEERS.items() if _installed(module)]
    out = run_benchmark(solvers=",".join(["mu", *installed]), datasets=TINY, max_iter=20,
                        out=tmp_path_factory.mktemp("peers"))
    return {name: rows.set_index("iteration").loss for name, rows in out.frame.groupby("solver")}


def _installed(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _needs(module):
    return pytest.mark.skipif(not _installed(module), reason=f"{module} is not installed")


def _tiny():
    """The tiny problem and the initial factors the harness gives every solver on it."""
    registry = load_registry(use_entry_points=False)
    variant = select(TINY, registry.datasets, registry, "dataset")[0]
    problem = registry.get_dataset("synthetic").load(variant.params, 0, torch.device("cpu"), torch.float64)
    return problem, initial_factors(problem, 0)


def _reference_losses(update, iters=20):
    """Loss after 1..iters sweeps of ``update(Y, W, H)`` from the harness's initial factors."""
    problem, (W, H) = _tiny()
    losses = []
    for _ in range(iters):
        W, H = update(problem.Y, W, H)
        losses.append(problem.loss(W, H))
    return np.array(losses)


def _mu_w_first(Y, W, H, eps=1e-12):
    W = W * (Y @ H.T).clamp_min(eps) / (W @ (H @ H.T)).clamp_min(eps)
    H = H * (W.T @ Y).clamp_min(eps) / ((W.T @ W) @ H).clamp_min(eps)
    return W, H


def _hals_w_first(Y, W, H):
    """One sweep of exact coordinate minimisation over the columns of W, then the rows of H."""
    W, H = W.clone(), H.clone()
    YHt, HHt = Y @ H.T, H @ H.T
    for t in range(W.shape[1]):
        W[:, t] = (W[:, t] + (YHt[:, t] - W @ HHt[:, t]) / HHt[t, t]).clamp_min(0)
    WtY, WtW = W.T @ Y, W.T @ W
    for t in range(H.shape[0]):
        H[t] = (H[t] + (WtY[t] - WtW[t] @ H) / WtW[t, t]).clamp_min(0)
    return W, H


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_decreases_the_loss_from_the_shared_start(runs, name):
    if not _installed(PEERS[name]):
        pytest.skip(f"{PEERS[name]} is not installed")
    loss = runs[name]
    assert loss.index.tolist()[-1] == 20
    assert loss.loc[0] == runs["mu"].loc[0]  # the same initial factors as every solver
    assert np.all(np.diff(loss.to_numpy()) <= 1e-9 * loss.to_numpy()[:-1])
    assert loss.loc[20] < 0.5 * loss.loc[0]


@_needs("torchnmf")
def test_torchnmf_is_our_mu(runs):
    # torchnmf updates its W (our H) first, as mu does; only the epsilon handling differs
    assert runs["torchnmf_mu"].to_numpy() == pytest.approx(runs["mu"].to_numpy(), rel=1e-6)


@pytest.mark.parametrize("name", ["sklearn_mu", "tensorly_mu", "tensorly_mu[backend=pytorch]"])
def test_mu_peers_match_an_independent_w_first_mu(runs, name):
    if not _installed(PEERS[name]):
        pytest.skip(f"{PEERS[name]} is not installed")
    loss = runs[name].loc[1:]
    reference = _reference_losses(_mu_w_first)[loss.index - 1]
    assert loss.to_numpy() == pytest.approx(reference, rel=1e-8)


@_needs("sklearn")
def test_sklearn_cd_is_one_hals_sweep_per_block(runs):
    loss = runs["sklearn_cd"].loc[1:]
    reference = _reference_losses(_hals_w_first)[loss.index - 1]
    assert loss.to_numpy() == pytest.approx(reference, rel=1e-8)


@pytest.mark.parametrize("name", ["tensorly_mu", "tensorly_hals", "torchnmf_mu"])
def test_fixed_w_problems_keep_w(name):
    if not _installed(PEERS[name]):
        pytest.skip(f"{PEERS[name]} is not installed")
    full, _ = _tiny()
    problem = Problem(Y=full.Y, rank=3, W_true=full.W_true, H_true=full.H_true, fixed_W=True)
    W0, H0 = initial_factors(problem, 0)
    solver = load_registry(use_entry_points=False).get_solver(name).factory()
    W, H = solver.solve(problem, W0.clone(), H0.clone(), 10)
    assert torch.allclose(W.double(), full.W_true)
    assert problem.loss(W.double(), H.double()) < problem.loss(W0, H0)


@_needs("sklearn")
def test_sklearn_refuses_fixed_w(tmp_path):
    full, _ = _tiny()
    problem = Problem(Y=full.Y, rank=3, W_true=full.W_true, fixed_W=True)
    solver = load_registry(use_entry_points=False).get_solver("sklearn_mu").factory()
    with pytest.raises(ValueError, match="fixed-W"):
        solver.solve(problem, *initial_factors(problem, 0), 5)


def test_missing_peer_library_is_skipped_not_failed(capsys):
    registry = load_registry([MISSING], strict=True, use_entry_points=False)
    info = next(p for p in registry.plugins if p.name == "file:missing_peer")
    assert info.ok and "fancy-nmf is not installed" in info.skipped
    assert "fancy_mu" not in registry.solvers
    outputs = {}
    for command in ("plugins", "list"):
        assert main([command, "--plugin", MISSING, "--strict-plugins"]) == 0
        outputs[command], err = capsys.readouterr()
        assert err == ""  # no warning: a missing optional library is not a broken plugin
        assert "fancy-nmf is not installed (pip install 'proxmf-bench[peers]')" in outputs[command]
        assert "fancy_mu" not in outputs[command]
    assert "file:missing_peer  [skipped]" in outputs["plugins"]
    assert "0 failed, 1 skipped" in outputs["plugins"]


@pytest.mark.parametrize("name", list(PEERS))
@pytest.mark.parametrize("fixed_W", [False, True])
def test_a_continued_peer_gives_the_iterates_of_one_long_call(name, fixed_W):
    """Every peer declares continues = True: calls chained from the previous factors, with the
    harness's budgets, end where one call of the summed budget does, bit for bit."""
    if not _installed(PEERS[name]):
        pytest.skip(f"{PEERS[name]} is not installed")
    full, (W0, H0) = _tiny()
    problem = full if not fixed_W else Problem(Y=full.Y, rank=3, W_true=full.W_true, H_true=full.H_true, fixed_W=True)
    if fixed_W and name.startswith("sklearn"):
        pytest.skip("scikit-learn refuses fixed-W problems")
    W0, H0 = initial_factors(problem, 0)
    registry = load_registry(use_entry_points=False)
    variant = select(name, registry.solvers, registry, "solver")[0]
    solver = registry.get_solver(variant.name).factory(**variant.params)
    assert solver.continues is True
    W, H = W0.clone(), H0.clone()
    for budget in (1, 1, 1, 3, 4, 7):
        W, H = solver.solve(problem, W.clone(), H.clone(), budget)
    W_long, H_long = solver.solve(problem, W0.clone(), H0.clone(), 17)
    assert torch.equal(W.double(), W_long.double()) and torch.equal(H.double(), H_long.double())


@_needs("sklearn")
def test_continued_peers_have_a_cumulative_monotone_time_axis(runs, tmp_path):
    out = run_benchmark(solvers="sklearn_cd,sklearn_mu", datasets=TINY, max_iter=60, out=tmp_path)
    for _, rows in out.frame.groupby("solver"):
        times = rows.sort_values("iteration").time_s.to_numpy()
        assert np.all(np.diff(times) >= 0) and times[-1] > times[1] > 0
    # continuation changes the timing, not the iterates: the losses of the 20-iteration run
    cd = out.frame[out.frame.solver == "sklearn_cd"].set_index("iteration").loss
    common = cd.index.intersection(runs["sklearn_cd"].index)
    assert len(common) > 10
    assert cd.loc[common].to_numpy() == pytest.approx(runs["sklearn_cd"].loc[common].to_numpy(), rel=1e-12)

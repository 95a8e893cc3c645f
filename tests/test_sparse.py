"""Sparse data (torch sparse CSR) through Problem, the solvers, the harness and the datasets.

The independent definitions: the same matrix densified (a float64 dense problem, a float64
dense loss ``0.5 * ||Y - W H||^2``), and scipy.sparse.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from proxmf_bench.errors import DataError
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.integrity import ProblemSeal
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import from_scipy, row_chunks, times, to_scipy
from proxmf_bench.problem.start import StartingPoint, data_fingerprint, initial_factors
from proxmf_bench.run.runner import run_benchmark

F64, F32 = torch.float64, torch.float32
CPU = torch.device("cpu")
SMALL = "sparse_synthetic[m=120,n=90,rank=4,density=0.08]"
# every solver that runs on sparse data, with the selection used here
SPARSE_SOLVERS = ("mu", "nalmu", "nalmu[layers=2,normalize=true]", "hals", "pgm", "pgm_momentum",
                  "fista[restart=function]", "fista[restart=gradient]", "adaprox", "pgm_torch")


def _load(registry, text=SMALL, dtype=F64, seed=0):
    (variant,) = select(text, registry.datasets, registry, "dataset")
    return registry.get_dataset(variant.name).load(variant.params, seed, CPU, dtype)


def _solver(registry, text):
    (variant,) = select(text, registry.solvers, registry, "solver")
    return registry.get_solver(variant.name).factory(**variant.params)


def _densified(problem: Problem) -> Problem:
    return Problem(Y=problem.Y.to_dense(), rank=problem.rank, W_true=problem.W_true, H_true=problem.H_true,
                   fixed_W=problem.fixed_W, name=problem.name)


def _dense_loss(Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> float:
    return 0.5 * float(((Y.double() - W.double() @ H.double()) ** 2).sum())


def _random_csr(m=70, n=50, density=0.1, seed=0, dtype=F64) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = sp.random(m, n, density=density, format="csr", random_state=seed, data_rvs=lambda k: rng.gamma(0.5, 4.0, k))
    return from_scipy(matrix, dtype), matrix.toarray()


# --- Problem ----------------------------------------------------------------------------------


def test_a_sparse_problem_holds_csr_data_and_its_csr_transpose():
    Y, dense = _random_csr()
    problem = Problem(Y=Y, rank=3)
    assert problem.is_sparse and problem.Y.layout == problem.Yt.layout == torch.sparse_csr
    np.testing.assert_array_equal(problem.Yt.to_dense().numpy(), dense.T)
    assert math.isclose(problem.Y_norm2, float((dense**2).sum()), rel_tol=1e-13)
    # COO (with duplicates, summed) and CSC are converted to CSR
    coo = torch.sparse_coo_tensor(torch.tensor([[0, 0, 2], [1, 1, 0]]), torch.tensor([1.0, 2.0, 4.0], dtype=F64), (3, 2),
                                  check_invariants=True)
    assert Problem(Y=coo, rank=1).Y.layout == torch.sparse_csr
    assert torch.equal(Problem(Y=coo, rank=1).Y.to_dense(), coo.to_dense())
    assert torch.equal(Problem(Y=Y.to_sparse_csc(), rank=3).Y.to_dense(), Y.to_dense())


@pytest.mark.parametrize("dtype", [F64, F32])
def test_the_sparse_loss_matches_a_dense_float64_evaluation(dtype):
    Y, dense = _random_csr(dtype=dtype)
    problem = Problem(Y=Y, rank=4)
    gen = torch.Generator().manual_seed(3)
    for scale in (0.01, 1.0, 3.0):  # far from and near the data
        W = (torch.rand(70, 4, generator=gen, dtype=F64) * scale).to(dtype)
        H = (torch.rand(4, 50, generator=gen, dtype=F64) * scale).to(dtype)
        reference = _dense_loss(torch.from_numpy(dense).to(dtype), W, H)
        assert math.isclose(problem.loss(W, H), reference, rel_tol=1e-11), (dtype, scale)


def test_the_float32_sparse_loss_keeps_its_digits_near_a_good_fit(registry):
    # near the ground truth the Gram form cancels; summed in float64 over the nonzeros it still
    # agrees with the float64 dense residual to far better than float32's 6e-8
    problem = _load(registry, "sparse_synthetic[m=300,n=200,rank=5,density=0.2,noise=binary]", F32)
    W, H = problem.W_true, problem.H_true
    reference = _dense_loss(problem.Y.to_dense(), W, H)
    assert math.isclose(problem.loss(W, H), reference, rel_tol=1e-10)


def test_row_chunks_cover_every_row_once():
    Y, _ = _random_csr(m=200, n=40, density=0.2)
    crow = Y.crow_indices()
    for chunk in (1, 7, 100, 10**6):
        bounds = row_chunks(crow, chunk)
        assert bounds[0][0] == 0 and bounds[-1][1] == 200
        assert all(a < b and b == c for (a, b), (c, _) in zip(bounds, bounds[1:]))


def test_sparse_products_match_dense_ones():
    Y, dense = _random_csr()
    problem = Problem(Y=Y, rank=3)
    gen = torch.Generator().manual_seed(1)
    Wt, H = torch.rand(3, 70, generator=gen, dtype=F64), torch.rand(3, 50, generator=gen, dtype=F64)
    np.testing.assert_allclose(times(Wt, problem.Y, problem.Yt).numpy(), Wt.numpy() @ dense, rtol=1e-12)
    np.testing.assert_allclose(times(H, problem.Yt, problem.Y).numpy(), H.numpy() @ dense.T, rtol=1e-12)


def test_sparse_data_is_validated_on_its_values():
    Y, _ = _random_csr()
    for bad, message in ((-1.0, "1 negative entries"), (math.nan, "1 NaN or infinite entries")):
        values = Y.values().clone()
        values[3] = bad
        broken = torch.sparse_csr_tensor(Y.crow_indices(), Y.col_indices(), values, size=Y.shape, check_invariants=True)
        with pytest.raises(DataError, match=message):
            Problem(Y=broken, rank=3)
    with pytest.raises(DataError, match="rank 51 is larger than min"):
        Problem(Y=Y, rank=51)
    empty = torch.sparse_csr_tensor(torch.zeros(4, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                                    torch.zeros(0, dtype=F64), size=(3, 5), check_invariants=True)
    assert Problem(Y=empty, rank=2).Y_norm2 == 0.0


def test_a_sparse_problem_moves_between_dtypes_and_stays_sparse():
    Y, dense = _random_csr()
    moved = Problem(Y=Y, rank=3).to(CPU, F32, copy=True)
    assert moved.is_sparse and moved.dtype == F32
    np.testing.assert_allclose(moved.Y.to_dense().numpy(), dense.astype(np.float32))


# --- starting point and seal ------------------------------------------------------------------


def test_the_sparse_fingerprint_reads_the_content_in_any_dtype():
    Y, dense = _random_csr()
    problem = Problem(Y=Y, rank=3)
    f64, f32 = data_fingerprint(problem), data_fingerprint(problem.to(CPU, F32))
    assert f64 == f32
    assert math.isclose(f64.mean_abs, float(np.abs(dense).mean()), rel_tol=1e-6)
    # the same content with its nonzeros stored in another order: the same start
    shuffled = sp.csr_matrix(dense)
    shuffled.indices, shuffled.data = shuffled.indices.copy(), shuffled.data.copy()
    assert data_fingerprint(Problem(Y=from_scipy(shuffled.tocoo().tocsc()), rank=3)) == f64
    changed = dense.copy()
    changed[np.nonzero(dense)[0][0], np.nonzero(dense)[1][0]] *= 2
    assert data_fingerprint(Problem(Y=from_scipy(sp.csr_matrix(changed)), rank=3)).digest != f64.digest
    W0, H0 = initial_factors(problem, 5)
    assert torch.equal(W0, initial_factors(Problem(Y=Y.clone(), rank=3), 5)[0])
    # scaled like the dense start: sqrt(mean |Y| / r)
    dense_start = initial_factors(_densified(problem), 5)[0]
    assert math.isclose(float(W0.mean()), float(dense_start.mean()), rel_tol=0.2)


def test_the_seal_sees_a_write_into_sparse_values():
    Y, _ = _random_csr()
    problem = Problem(Y=Y, rank=3)
    start = StartingPoint(problem, *initial_factors(problem, 0))
    seal = ProblemSeal(problem, start)
    assert seal.changed(problem, start) == []
    problem.Y.values().numpy()[0] += 1.0  # a write the version counter does not see
    assert seal.changed(problem, start) == ["Y"]


# --- solvers: the same iterates as on the densified problem ------------------------------------


@pytest.mark.parametrize("selection", SPARSE_SOLVERS)
def test_solvers_take_the_same_iterates_on_sparse_and_densified_data(registry, selection):
    problem = _load(registry)
    dense = _densified(problem)
    W0, H0 = initial_factors(problem, 0)
    runs = []
    for p in (problem, dense):
        solver = _solver(registry, selection)
        solver.init(p, W0.clone(), H0.clone())
        for _ in range(15):
            solver.step()
        runs.append([X.clone() for X in solver.factors()] + [solver.loss()])
    (Ws, Hs, loss_s), (Wd, Hd, loss_d) = runs
    torch.testing.assert_close(Ws, Wd, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(Hs, Hd, rtol=1e-9, atol=1e-12)
    assert math.isclose(loss_s, loss_d, rel_tol=1e-9)
    assert math.isclose(problem.loss(Ws, Hs), _dense_loss(dense.Y, Ws, Hs), rel_tol=1e-10)


def test_mu_in_float32_on_sparse_data_follows_the_float64_dense_iterates(registry):
    problem = _load(registry, dtype=F32)
    dense = _densified(_load(registry))
    W0, H0 = initial_factors(problem, 0)
    iterates = []
    for p, (W, H) in ((problem, (W0, H0)), (dense, (W0.double(), H0.double()))):
        solver = _solver(registry, "mu")
        solver.init(p, W.clone(), H.clone())
        for _ in range(10):
            solver.step()
        iterates.append(solver.factors())
    torch.testing.assert_close(iterates[0][0].double(), iterates[1][0], rtol=1e-3, atol=1e-6)


def test_fixed_W_mu_on_sparse_data(registry):
    base = _load(registry)
    problem = Problem(Y=base.Y, rank=base.rank, W_true=base.W_true, H_true=base.H_true, fixed_W=True)
    W0, H0 = initial_factors(problem, 0)
    results = []
    for p in (problem, _densified(problem)):
        solver = _solver(registry, "mu")
        solver.init(p, W0.clone(), H0.clone())
        for _ in range(10):
            solver.step()
        results.append(solver.factors()[1])
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-12)


def test_scikit_learn_receives_scipy_sparse_and_solves_the_same_problem(registry, monkeypatch):
    pytest.importorskip("sklearn")
    problem = _load(registry)
    received = []
    import sklearn.decomposition

    original = sklearn.decomposition.non_negative_factorization

    def spy(X, *args, **kwargs):
        received.append(X)
        return original(X, *args, **kwargs)

    W0, H0 = initial_factors(problem, 0)
    out = []
    for p in (problem, _densified(problem)):
        solver = _solver(registry, "sklearn_mu")
        monkeypatch.setattr(solver, "_fit", spy)
        out.append(solver.solve(p, W0.clone(), H0.clone(), 10))
    assert sp.issparse(received[0]) and not sp.issparse(received[1])
    assert received[0].nnz == problem.Y.values().numel()
    np.testing.assert_allclose(out[0][0].numpy(), out[1][0].numpy(), rtol=1e-8)
    assert np.shares_memory(to_scipy(problem.Y).data, problem.Y.values().numpy())


def test_a_run_on_sparse_data_records_dense_only_peers_as_errors(tmp_path):
    out = run_benchmark(solvers="mu,fista,hals,tensorly_mu,torchnmf_mu", datasets=SMALL, max_iter=5,
                        dtypes="float32", out=tmp_path / "run", strict_plugins=False)
    last = out.frame.sort_values("iteration").groupby("solver").last()
    for name in ("mu", "fista[restart=function]", "hals"):
        if name in last.index:
            assert last.loc[name, "stop_reason"] == "max_iter", name
            assert np.isfinite(last.loc[name, "loss"])
    errors = last[last.stop_reason == "error"]
    assert set(errors.index) <= {"tensorly_mu", "torchnmf_mu"}
    frame = pd.read_parquet(next((tmp_path / "run").rglob("*.parquet")))
    messages = " ".join(str(v) for v in frame.get("error", pd.Series(dtype=str)).dropna())
    for name in errors.index:
        assert f"{name} needs dense data; dataset 'sparse_synthetic' is sparse" in messages


# --- the sparse synthetic dataset ---------------------------------------------------------------


def test_sparse_synthetic_is_seeded_and_has_the_requested_density(registry):
    first, again, other = _load(registry, seed=0), _load(registry, seed=0), _load(registry, seed=1)
    assert torch.equal(first.Y.to_dense(), again.Y.to_dense())
    assert not torch.equal(first.Y.to_dense(), other.Y.to_dense())
    assert first.is_sparse and first.has_ground_truth
    density = first.Y.values().numel() / (120 * 90)
    assert abs(density - 0.08) < 0.02
    assert math.isclose(first.metadata["density"], density)
    values = first.Y.values()
    assert bool((values >= 1).all()) and torch.equal(values, values.round())  # counts
    binary = _load(registry, SMALL.replace("]", ",noise=binary]"))
    assert torch.equal(binary.Y.values(), torch.ones_like(binary.Y.values()))


def test_sparse_synthetic_counts_have_the_mean_of_the_intensity(registry):
    # E[Y] = W_true H_true: compare the totals (sum of W H = (W 1)^T (1^T H^T), no m x n product)
    problem = _load(registry, "sparse_synthetic[m=2000,n=1500,rank=6,density=0.01]")
    expected = float(problem.W_true.sum(dim=0) @ problem.H_true.sum(dim=1))
    total = float(problem.Y.values().sum())
    assert abs(total - expected) < 5 * math.sqrt(expected)


def test_sparse_synthetic_never_forms_the_dense_matrix(registry):
    # 1e6 x 5e5 dense would be 4 TB; 500 expected nonzeros
    problem = _load(registry, "sparse_synthetic[m=1000000,n=500000,rank=3,density=1e-9]", dtype=F32)
    assert problem.shape == (1_000_000, 500_000) and problem.is_sparse
    assert 300 < problem.Y.values().numel() < 700


@pytest.mark.cuda
def test_a_sparse_problem_on_cuda_matches_the_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    Y, _ = _random_csr()
    cpu = Problem(Y=Y, rank=3)
    gpu = cpu.to("cuda", F64)
    assert gpu.is_sparse and gpu.Yt.device.type == "cuda"
    W0, H0 = initial_factors(cpu, 0)
    assert data_fingerprint(gpu) == data_fingerprint(cpu)
    assert math.isclose(gpu.loss(W0.cuda(), H0.cuda()), cpu.loss(W0, H0), rel_tol=1e-12)
    Wt = W0.T.contiguous()
    torch.testing.assert_close(times(Wt.cuda(), gpu.Y, gpu.Yt).cpu(), times(Wt, cpu.Y, cpu.Yt))


def test_the_exact_nnls_reference_reads_sparse_columns(registry):
    from proxmf_bench.run.reference import nnls_optimum

    base = _load(registry)
    problem = Problem(Y=base.Y, rank=base.rank, W_true=base.W_true, H_true=base.H_true, fixed_W=True)
    H_sparse, columns = nnls_optimum(problem)
    H_dense, _ = nnls_optimum(_densified(problem))
    assert columns == 90
    torch.testing.assert_close(H_sparse, H_dense, rtol=0, atol=0)


def test_training_nalmu_on_sparse_data_is_refused_in_one_line(tmp_path, capsys):
    from proxmf_bench.cli import main

    assert main(["train", "nalmu", "--dataset", SMALL, "--epochs", "1", "--layers", "2",
                 "--out", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err
    assert "training NALMU needs dense data" in err and "is sparse" in err and "Traceback" not in err
    assert not (tmp_path / "w.pt").exists()

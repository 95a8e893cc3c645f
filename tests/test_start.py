"""The shared starting point: seeded from the data's content, the same for any name, dtype or layout."""

import pytest
import torch

from conftest import cuda
from proxmf_bench import run_benchmark
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem import start
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import data_fingerprint, initial_factors


def _load(registry, text, dtype=torch.float64, seed=0):
    (variant,) = select(text, registry.datasets, registry, "dataset")
    return registry.get_dataset(variant.name).load(variant.params, seed, torch.device("cpu"), dtype)


def test_two_names_for_the_same_data_start_alike(registry, tmp_path):
    # the synthetic data depend on m, n, rank..., not on the preset named: these are one dataset
    names = ("synthetic[size=small]", "synthetic[size=medium,m=200,n=300,rank=10]")
    a, b = (_load(registry, name) for name in names)
    assert torch.equal(a.Y, b.Y)
    for X, Z in zip(initial_factors(a, 0), initial_factors(b, 0)):
        assert torch.equal(X, Z)
    out = run_benchmark(solvers="mu", datasets=",".join(names), max_iter=0, out=tmp_path, registry=registry)
    first = out.frame.set_index("dataset").loss
    assert first[names[0]] == first[names[1]]


def test_other_data_or_another_seed_start_elsewhere(registry):
    a, b = _load(registry, "synthetic[m=20,n=15,rank=3]"), _load(registry, "synthetic[m=20,n=15,rank=3,noise=0.5]")
    assert not torch.equal(initial_factors(a, 0)[1], initial_factors(b, 0)[1])
    assert not torch.equal(initial_factors(a, 0)[1], initial_factors(a, 1)[1])


def test_float32_and_float64_copies_start_from_the_same_draw(registry):
    for text in ("synthetic[m=40,n=30,rank=4]", "digits", "nnls_toy[n=50]"):
        f64, f32 = _load(registry, text), _load(registry, text, torch.float32)
        assert data_fingerprint(f64) == data_fingerprint(f32)
        W64, H64 = initial_factors(f64, 3)
        W32, H32 = initial_factors(f32, 3)
        assert W32.dtype == torch.float32
        assert torch.equal(H32, H64.float())
        assert torch.equal(W32, W64.float())


def test_the_fingerprint_reads_blocks_and_ignores_the_memory_layout(registry, monkeypatch):
    problem = _load(registry, "synthetic[m=30,n=50,rank=3]")
    whole = data_fingerprint(problem)
    monkeypatch.setattr(start, "_FINGERPRINT_BLOCK", 7 * 30)  # 7 columns per block: 8 blocks, a short last one
    assert data_fingerprint(problem) == whole
    column_major = Problem(Y=problem.Y.T.contiguous().T, rank=3)  # same values, given in Fortran order
    assert data_fingerprint(column_major) == data_fingerprint(Problem(Y=problem.Y.clone(), rank=3))
    assert whole.mean_abs == pytest.approx(float(problem.Y.float().double().abs().mean()), rel=1e-12)  # of Y in float32


def test_the_fingerprint_covers_what_defines_the_problem(registry):
    problem = _load(registry, "nnls_toy[n=30]")
    other_W = Problem(Y=problem.Y, rank=problem.rank, W_true=problem.W_true * 2, H_true=problem.H_true, fixed_W=True)
    assert data_fingerprint(problem) != data_fingerprint(other_W)
    assert data_fingerprint(Problem(Y=problem.Y, rank=4)) != data_fingerprint(Problem(Y=problem.Y, rank=5))


@cuda
def test_cpu_and_gpu_copies_start_alike(registry):
    cpu = _load(registry, "synthetic[m=40,n=30,rank=4]", torch.float32)
    gpu = cpu.to("cuda", torch.float32)
    assert data_fingerprint(gpu) == data_fingerprint(cpu)
    for X, Z in zip(initial_factors(cpu, 1), initial_factors(gpu, 1)):
        assert Z.is_cuda and torch.equal(X, Z.cpu())

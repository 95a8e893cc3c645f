"""The data layouts the problem delivers: ``Y`` and ``Y^T`` both row-major, for every built-in
dataset, dtype and device, whatever layout the dataset read (see ``proxmf_bench.problem.problem``)."""

from __future__ import annotations

import pytest
import torch

from conftest import cuda, needs_hsi
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem

DATASETS = [
    "synthetic[m=40,n=30,rank=3]", "nnls_toy", "digits[n_class=3]",
    pytest.param("samson", marks=needs_hsi), pytest.param("jasper", marks=needs_hsi),
]


def _load(registry, text, dtype, device="cpu"):
    (variant,) = select(text, registry.datasets, registry, "dataset")
    return registry.get_dataset(variant.name).load(variant.params, 0, torch.device(device), dtype)


def _check_layout(problem: Problem) -> None:
    Y, Yt = problem.Y, problem.Yt
    assert Y.is_contiguous() and Yt.is_contiguous()
    assert Yt.shape == (Y.shape[1], Y.shape[0]) and Yt.dtype == Y.dtype and Yt.device == Y.device
    assert torch.equal(Yt, Y.T)
    assert Yt.untyped_storage().data_ptr() != Y.untyped_storage().data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("text", DATASETS)
def test_builtin_datasets_deliver_row_major_Y_and_Yt(registry, text, dtype):
    problem = _load(registry, text, dtype)
    _check_layout(problem)
    _check_layout(problem.to("cpu", torch.float64 if dtype == torch.float32 else torch.float32))


def test_a_column_major_Y_is_made_row_major_with_its_values():
    gen = torch.Generator().manual_seed(0)
    column_major = torch.rand(9, 6, generator=gen, dtype=torch.float64).T  # 6 x 9, strides (1, 6)
    assert not column_major.is_contiguous()
    problem = Problem(Y=column_major, rank=2)
    _check_layout(problem)
    assert torch.equal(problem.Y, column_major)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layouts_on_cuda(registry, dtype):
    problem = _load(registry, "synthetic[m=40,n=30,rank=3]", dtype, "cuda")
    assert problem.Y.device.type == "cuda"
    _check_layout(problem)


BLOCK_SOLVERS = ["pgm", "pgm_momentum", "fista[restart=function]", "fista[restart=gradient]", "adaprox", "adaprox[variant=adam]", "pgm_torch", "hals"]


@pytest.mark.parametrize("selection", BLOCK_SOLVERS)
def test_solvers_keep_their_blocks_row_major(registry, selection):
    """The PGM family and HALS hold ``W^T`` and ``H`` as row-major ``r x k`` blocks, so that
    ``W^T Y`` and ``H Y^T`` run in their fastest layout. A block started as the view ``W0.T``
    would stay column-major through every elementwise update (they keep their inputs' layout)."""
    problem = _load(registry, "synthetic[m=40,n=30,rank=3]", torch.float64)
    (variant,) = select(selection, registry.solvers, registry, "solver")
    solver = registry.get_solver(variant.name).factory(**variant.params)
    gen = torch.Generator().manual_seed(0)
    solver.init(problem, torch.rand(40, 3, generator=gen, dtype=torch.float64),
                torch.rand(3, 30, generator=gen, dtype=torch.float64))
    for _ in range(3):
        solver.step()
        assert solver.Wt.shape == (3, 40) and solver.H.shape == (3, 30)
        assert solver.Wt.is_contiguous() and solver.H.is_contiguous()

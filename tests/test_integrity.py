"""The seal on a problem's data: every way of writing into it is seen, nothing else is."""

import ctypes
import zlib

import pytest
import torch

from conftest import cuda
from proxmf_bench.problem.integrity import ProblemSeal, crc32
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import StartingPoint, initial_factors


def _problem(dtype=torch.float64, transposed=False, device="cpu"):
    gen = torch.Generator().manual_seed(3)
    W, H = torch.rand(9, 2, generator=gen, dtype=torch.float64), torch.rand(2, 7, generator=gen, dtype=torch.float64)
    Y = (W @ H).T.contiguous().T if transposed else W @ H  # column-major storage, as a transposed view
    problem = Problem(Y=Y, rank=2, W_true=W, H_true=H).to(device, dtype)
    start = StartingPoint(problem, *initial_factors(problem, 0))
    return problem, start


def test_crc_is_that_of_the_bytes_in_memory_order():
    X = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    assert crc32(X) == zlib.crc32(X.numpy().tobytes())
    assert crc32(X.T) == crc32(X)  # a transposed view reads the same memory, without a copy
    strided = torch.arange(24, dtype=torch.float32).reshape(4, 6)[:, ::2]
    assert crc32(strided) == zlib.crc32(strided.contiguous().numpy().tobytes())


def _flip_bit(address: int) -> None:
    byte = ctypes.c_uint8.from_address(address)
    byte.value ^= 1


WRITES = {
    "torch op": lambda p, s: p.Y.add_(1e-12),
    "torch op on a view": lambda p, s: p.Y[2:4, 1].mul_(2.0),
    "numpy view": lambda p, s: p.Y.numpy().__setitem__((0, 0), 7.0),
    ".data": lambda p, s: p.Y.data.__setitem__((1, 1), 0.0),
    "entries swapped": lambda p, s: p.Y.numpy().__setitem__(((0, 5), (0, 6)), p.Y.numpy()[(5, 0), (6, 0)].copy()),
    "one bit flipped in memory": lambda p, s: _flip_bit(p.Y.data_ptr() + 17),
    "rebound": lambda p, s: setattr(p, "Y", p.Y.clone()),
    "resized": lambda p, s: p.Y.resize_(7, 9),
    "rank": lambda p, s: setattr(p, "rank", 1),
}


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("write", WRITES)
def test_every_write_into_Y_is_seen(write, transposed):
    problem, start = _problem(transposed=transposed)
    seal = ProblemSeal(problem, start)
    assert seal.changed(problem, start) == []
    WRITES[write](problem, start)
    assert seal.changed(problem, start) == (["rank"] if write == "rank" else ["Y"])


@pytest.mark.parametrize("name", ["Yt", "W_true", "H_true", "W0", "H0"])
def test_writes_into_the_truth_and_the_starting_point_are_seen(name):
    problem, start = _problem(dtype=torch.float32)
    seal = ProblemSeal(problem, start)
    target = getattr(start if name in ("W0", "H0") else problem, name)
    target.numpy()[0, 0] += 1.0
    assert seal.changed(problem, start) == [name]


def test_reading_and_copies_change_nothing():
    problem, start = _problem()
    seal = ProblemSeal(problem, start)
    W0, H0 = start.copies()
    W0.mul_(3.0)
    problem.loss(W0, H0)
    _ = problem.Y.T @ problem.Y, problem.Y_norm2, problem.Y.numpy().sum()
    assert seal.changed(problem, start) == []


def test_a_reload_is_compared_by_content():
    problem, start = _problem()
    again, start_again = _problem()
    assert ProblemSeal(problem, start).same_content(ProblemSeal(again, start_again))
    again.Y.numpy()[3, 3] = 0.5
    assert not ProblemSeal(problem, start).same_content(ProblemSeal(again, start_again))


@cuda
def test_cuda_tensors_are_sealed_too():
    problem, start = _problem(device="cuda")
    seal = ProblemSeal(problem, start)
    problem.H_true[0, 0] = 2.0
    assert seal.changed(problem, start) == ["H_true"]

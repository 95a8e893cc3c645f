"""The starting point every solver of one problem and seed shares, and its loss.

The initial factors are seeded from the problem's *content* (its data, rank and mode) and the
run seed, never from how the dataset was named: two selections that produce the same data
(``synthetic[size=small]`` and ``synthetic[size=medium,m=200,n=300,rank=10]``, or one file
under two paths) start from the same factors. The content is read through float32 in column
blocks (:func:`data_fingerprint`), so a float32 and a float64 copy of one dataset, on any
device, have the same fingerprint and start alike. A sparse ``Y`` is read through its stored
values (:func:`sparse_fingerprint`), never densified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from proxmf_bench.problem.problem import Problem

# Entries of Y per block read by data_fingerprint (4 MB in float32): no copy of Y is made.
_FINGERPRINT_BLOCK = 1 << 20


@dataclass(frozen=True)
class DataFingerprint:
    """What the starting point depends on: a digest of the problem's content, and the mean
    of ``|Y|`` (both computed from the data rounded to float32)."""

    digest: str
    mean_abs: float


def data_fingerprint(problem: Problem) -> DataFingerprint:
    """Digest (BLAKE2b) of the shape, rank, NMF/NNLS mode and values of ``Y`` (and of the
    fixed ``W_true`` of an NNLS problem), and ``mean(|Y|)``.

    ``Y`` is read in column blocks, each rounded to float32, moved to the CPU and hashed column
    after column (so the digest is that of ``Y`` in column-major order, whatever the block
    size or the memory layout): float64 data and its float32 copy give the same bytes (rounding a float32 value to float32 changes
    nothing), and so do CPU and GPU copies. Memory: one block. The mean is accumulated in
    float64 from the same rounded values, so it is the same for both dtypes too.
    """
    Y = problem.Y
    m, n = problem.shape
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{m}x{n}|rank {problem.rank}|nonneg {problem.nonneg}|fixed_W {problem.fixed_W}|".encode())
    if problem.is_sparse:
        total = _hash_sparse(problem.Yt, digest)
        return _finish(problem, digest, total)
    total = 0.0
    columns = max(1, _FINGERPRINT_BLOCK // max(1, m))
    for j in range(0, n, columns):
        # column after column: the bytes hashed do not depend on the block size or the layout
        block = Y[:, j : j + columns].detach().to(device="cpu", dtype=torch.float32).T.contiguous()
        digest.update(block.numpy().tobytes())
        total += float(block.abs().sum(dtype=torch.float64))
    return _finish(problem, digest, total)


def _finish(problem: Problem, digest, total: float) -> DataFingerprint:
    m, n = problem.shape
    if problem.fixed_W:  # W_true is part of an NNLS problem
        digest.update(problem.W_true.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return DataFingerprint(digest.hexdigest(), total / (m * n))


def _hash_sparse(Yt: torch.Tensor, digest) -> float:
    """Hash the nonzeros of ``Y`` in column-major order (the CSR arrays of its sorted transpose
    ``Yt``: row pointers and indices as int64, values rounded to float32), in chunks of
    ``_FINGERPRINT_BLOCK`` nonzeros; return ``sum |y|`` in float64 from the same values.

    The digest of a sparse problem differs from that of the same matrix held dense (so their
    initial factors differ; ``mean(|Y|)`` and hence the scale of the start are the same).
    """
    digest.update(b"sparse|")
    digest.update(Yt.crow_indices().to(device="cpu", dtype=torch.int64).numpy().tobytes())
    col, val = Yt.col_indices(), Yt.values()
    total = 0.0
    for a in range(0, val.numel(), _FINGERPRINT_BLOCK):
        block = val[a : a + _FINGERPRINT_BLOCK].detach().to(device="cpu", dtype=torch.float32)
        digest.update(col[a : a + _FINGERPRINT_BLOCK].to(device="cpu", dtype=torch.int64).numpy().tobytes())
        digest.update(block.numpy().tobytes())
        total += float(block.abs().sum(dtype=torch.float64))
    return total


def initial_factors(
    problem: Problem, seed: int, fingerprint: DataFingerprint | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random initial factors shared by every solver of one problem and seed.

    Drawn on the CPU in float64 from a generator seeded by the problem's content
    (:func:`data_fingerprint`, passed in when already computed) and ``seed``, then moved to
    the problem's device and dtype, so CPU and GPU, float32 and float64 runs start from the
    same point (float32 runs from its rounding). Entries are ``|N(0, 1)|`` scaled by
    ``sqrt(mean(|Y|) / r)`` (as scikit-learn's random init), so that ``W0 H0`` has the
    magnitude of ``Y``. In fixed-W mode ``W0`` is ``W_true``.
    """
    m, n = problem.shape
    r = problem.rank
    fingerprint = fingerprint or data_fingerprint(problem)
    digest = hashlib.sha256(f"{fingerprint.digest}|{seed}".encode()).digest()
    gen = torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    scale = (max(fingerprint.mean_abs, 1e-12) / r) ** 0.5
    W0 = torch.randn(m, r, generator=gen, dtype=torch.float64).abs_().mul_(scale)
    H0 = torch.randn(r, n, generator=gen, dtype=torch.float64).abs_().mul_(scale)
    W0 = W0.to(device=problem.device, dtype=problem.dtype)
    H0 = H0.to(device=problem.device, dtype=problem.dtype)
    if problem.fixed_W:
        W0 = problem.W_true.clone()
    return W0, H0


class StartingPoint:
    """Initial factors shared by the solvers of one problem and seed, with their loss.

    The loss at iteration 0 is the one record point that costs an ``m x n x r`` product: no
    solver holds products yet. It is computed once, for every solver that starts here.
    """

    def __init__(self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor) -> None:
        self.problem = problem
        self.W0, self.H0 = W0, H0
        self._loss: float | None = None

    def copies(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of ``(W0, H0)`` for a solver, which may overwrite them."""
        return self.W0.clone(), self.H0.clone()

    def loss_at(self, W: torch.Tensor, H: torch.Tensor) -> float | None:
        """The loss at ``(W, H)`` if they are ``(W0, H0)`` exactly, else ``None``."""
        if not (_same(W, self.W0) and _same(H, self.H0)):
            return None
        if self._loss is None:
            self._loss = self.problem.loss(self.W0, self.H0)
        return self._loss


def _same(A: torch.Tensor, B: torch.Tensor) -> bool:
    return A.dtype == B.dtype and A.device == B.device and torch.equal(A, B)

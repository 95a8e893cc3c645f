"""Whether a problem's data was changed in place: a seal taken when it is loaded, checked later.

Solvers receive the problem's own tensors (a copy of ``Y`` per cell would cost its size in
memory and a pass over it), so a solver that writes into ``problem.Y``, the ground truth or
the shared initial factors would corrupt every cell after it. A :class:`ProblemSeal` records,
for each of those tensors,

- the tensor object and its layout (a solver may rebind ``problem.Y`` or resize it in place);
- torch's version counter ``Tensor._version``, which every in-place torch operation on the
  tensor or on a view of it increments: exact, and free to read;
- a CRC-32 of its bytes, for writes the counter does not see (through ``.numpy()``, ``.data``,
  ``ctypes``): any change of up to 32 consecutive bits changes it, any other with probability
  ``1 - 2**-32``. It reads the data once (about 20 ms for 80 MB on one CPU core), from the
  host; CUDA tensors are copied over in chunks.

A sparse CSR tensor is sealed through its three arrays (row pointers, column indices, values).

The run checks the seal once per cell, after the solver is done and outside the clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import StartingPoint

# bytes read at a time from a tensor not in host memory
_CHUNK_BYTES = 64 * 2**20


def crc32(X: torch.Tensor) -> int:
    """CRC-32 of the bytes of ``X`` in memory order (row-major, or column-major for a
    transposed matrix): no copy of a CPU tensor in either layout. Sparse CSR: the CRC of its
    row pointers, column indices and values, one after the other."""
    X = X.detach()
    if X.layout == torch.sparse_csr:
        return zlib.crc32(b"".join(crc32(A).to_bytes(4, "little") for A in _parts(X)))
    if not X.is_contiguous() and X.ndim == 2 and X.mT.is_contiguous():
        X = X.mT
    flat = X.contiguous().reshape(-1).view(torch.uint8)
    if flat.device.type == "cpu":
        return zlib.crc32(flat.numpy())
    crc = 0
    for start in range(0, flat.numel(), _CHUNK_BYTES):
        crc = zlib.crc32(flat[start : start + _CHUNK_BYTES].cpu().numpy(), crc)
    return crc


def _parts(X: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return X.crow_indices(), X.col_indices(), X.values()


def _version(X: torch.Tensor) -> int | tuple | None:
    if X.layout == torch.sparse_csr:
        return tuple(_version(A) for A in _parts(X))
    try:
        return X._version
    except RuntimeError:  # inference tensors have no version counter
        return None


@dataclass(frozen=True)
class _TensorSeal:
    tensor: torch.Tensor
    layout: tuple
    version: int | None
    crc: int

    @classmethod
    def of(cls, X: torch.Tensor) -> _TensorSeal:
        return cls(X, _layout(X), _version(X), crc32(X))

    def holds(self, X: torch.Tensor) -> bool:
        """Whether ``X`` is the sealed tensor, unchanged."""
        if X is not self.tensor or _layout(X) != self.layout or _version(X) != self.version:
            return False
        return crc32(X) == self.crc


def _layout(X: torch.Tensor) -> tuple:
    if X.layout == torch.sparse_csr:
        return (tuple(X.shape), X.layout, X.dtype, X.device, *(_layout(A) for A in _parts(X)))
    return (tuple(X.shape), X.stride(), X.storage_offset(), X.dtype, X.device, X.data_ptr())


def _sealed_tensors(problem: Problem, start: StartingPoint) -> dict[str, torch.Tensor | None]:
    # Yt is sealed where it is a copy; a view of Y is covered by Y's seal
    return {"Y": problem.Y, "Yt": problem.Yt if problem.holds_Yt_copy else None, "W_true": problem.W_true, "H_true": problem.H_true,
            "W0": start.W0, "H0": start.H0}


class ProblemSeal:
    """The state of a problem and its starting point when sealed (see the module docstring)."""

    def __init__(self, problem: Problem, start: StartingPoint) -> None:
        self._fields = _fields(problem)
        self._tensors = {k: None if X is None else _TensorSeal.of(X) for k, X in _sealed_tensors(problem, start).items()}

    def changed(self, problem: Problem, start: StartingPoint) -> list[str]:
        """The names of what differs now (``Y``, ``W_true``, ``H_true``, ``W0``, ``H0``, ``rank``...)."""
        out = [name for name, (a, b) in zip(("rank", "nonneg", "fixed_W"), zip(self._fields, _fields(problem))) if a != b]
        for name, X in _sealed_tensors(problem, start).items():
            seal = self._tensors[name]
            if (seal is None) != (X is None) or (X is not None and not seal.holds(X)):
                out.append(name)
        return out

    def same_content(self, other: ProblemSeal) -> bool:
        """Whether ``other`` sealed the same values (a reload of the same problem)."""
        def content(seal: ProblemSeal) -> dict:
            return {k: None if t is None else (t.layout[0], t.layout[3], t.crc) for k, t in seal._tensors.items()}

        return self._fields == other._fields and content(self) == content(other)


def _fields(problem: Problem) -> tuple:
    return (problem.rank, problem.nonneg, problem.fixed_W)

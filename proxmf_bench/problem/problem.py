r"""The factorization problem: data, rank, optional ground truth, cached quantities.

The objective is

.. math:: f(W, H) = \tfrac12 \|Y - W H\|_F^2, \qquad Y \in \mathbb{R}^{m\times n},\;
          W \in \mathbb{R}^{m\times r},\; H \in \mathbb{R}^{r\times n},

evaluated in float64 from Gram matrices without forming the :math:`m \times n` product:

.. math:: 2 f(W, H) = \|Y\|_F^2 - 2\langle W^\top Y, H\rangle + \langle W^\top W, H H^\top\rangle .

That form cancels: near an optimum the three terms agree to many digits and their difference
is the loss, so its relative error is about ``eps * ||Y||^2 / f``. In float64 that is about
1e-9 at worst on the built-in datasets (``nnls_toy``, where ``||Y||^2 / f`` is about 1e6); in
float32 (``eps`` = 6e-8) it is 2-4 % there. Lower-precision problems therefore evaluate the residual
itself, block by block (:meth:`Problem.residual_loss`): each entry of ``Y - W H`` is then
off by about ``eps |y|``, and the sum of squares, accumulated in float64, by about
``2 eps |y| / (|r| sqrt(m n))`` relative, 1e-6 or less on the built-in datasets.

**Layout.** The problem, not each solver, decides how the data lie in memory: ``Y`` is held
row-major (C-contiguous) whatever the dataset delivered (a MATLAB file or a transposed NumPy
array arrives column-major), and ``Yt`` is :math:`Y^\top`. Every iteration of MU, HALS and the
PGM family needs :math:`W^\top Y` and :math:`H Y^\top`; on the CPU the first is fastest as
``W.T @ Y`` with row-major ``Y`` and the second as ``H @ Yt`` with ``Yt`` a row-major copy
(``benchmarks/floor_table.py`` measures every layout: a column-major ``Y`` makes
:math:`W^\top Y` up to 8 times slower, and ``H @ Y.T`` is 1.3 to 1.7 times slower than
``H @ Yt`` in float32). Deciding it once here keeps the solvers' arithmetic as written and
gives third-party solvers the same layouts for free.

**Memory.** The copy doubles the memory of the data, so it is made only where it pays
(:func:`keeps_transpose_copy`, policy ``yt``): ``keep`` always makes it, ``skip`` never (``Yt``
is then the transposed view ``Y.mT``, no memory), and ``auto`` (the default) makes it when
``Y`` is at most :data:`YT_AUTO_MAX_BYTES` (256 MiB): the same choice on every machine and in
every worker, a bounded cost for small problems and none for large ones. ``Yt`` is made on
first use, so a policy set before (:meth:`Problem.set_yt_policy`) decides;
:attr:`Problem.data_layout` says what was chosen and is recorded with the results. Either way the solvers compute the
same products (to rounding: the two layouts sum in different orders).

**Sparse data.** ``Y`` may be a torch sparse CSR tensor (a COO or CSC one is converted to
CSR): it is then never densified. ``Yt`` is its CSR transpose (always held: the sparse products need it; it costs the nonzeros' bytes), ``||Y||^2`` and the checks read
the stored values, and the loss is the Gram form with the cross term summed over the nonzeros
in float64 (:mod:`proxmf_bench.problem.sparse`), accurate in float32 too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from proxmf_bench.errors import DataError, UserError
from proxmf_bench.problem import sparse

# Entries of Y per block of Problem.residual_loss: on the CPU a block that stays in the L2
# cache (measured fastest: twice the speed of one full-size residual); on a GPU large enough
# that kernel launches do not dominate.
RESIDUAL_BLOCK = {"cpu": 1 << 16, "cuda": 1 << 22}
# Entries of Y per block of the float64 reduction in Problem.Y_norm2 (8 MiB of float64).
NORM_BLOCK = 1 << 20

# Policies for the row-major copy of Y^T (see the module docstring).
YT_POLICIES = ("auto", "keep", "skip")
# ``auto`` keeps the copy up to this size of Y: a bounded constant above the data, so a large
# problem's peak memory stays near one copy of Y.
YT_AUTO_MAX_BYTES = 256 << 20


def keeps_transpose_copy(Y: torch.Tensor, policy: str) -> bool:
    """Whether a problem with data ``Y`` holds a row-major copy of ``Y^T`` under ``policy``
    (one of :data:`YT_POLICIES`; see the module docstring)."""
    if policy not in YT_POLICIES:
        raise UserError(f"unknown Yt policy {policy!r}: use one of {', '.join(YT_POLICIES)}")
    if policy != "auto":
        return policy == "keep"
    return Y.numel() * Y.element_size() <= YT_AUTO_MAX_BYTES


def residual_block_rows(Y: torch.Tensor) -> int:
    """Rows of ``Y`` per block of :meth:`Problem.residual_loss`."""
    block = RESIDUAL_BLOCK.get(Y.device.type, RESIDUAL_BLOCK["cuda"])
    return max(1, block // max(1, Y.shape[1]))


@dataclass(eq=False)
class Problem:
    """A matrix factorization instance ``Y ~ W H`` of rank ``rank``.

    Parameters
    ----------
    Y : torch.Tensor
        Data, ``m x n``.
    rank : int
        Number of components ``r``; must satisfy ``1 <= r <= min(m, n)``.
    W_true, H_true : torch.Tensor, optional
        Ground-truth factors (``m x r`` and ``r x n``) when known.
    nonneg : bool
        Whether the problem is an NMF (data must then be nonnegative).
    fixed_W : bool
        NNLS mode: ``W`` is known (``W_true``) and solvers update ``H`` only.
    name : str
        Dataset name; ``metadata`` holds anything else worth recording.
    yt : str
        Policy for the row-major copy of ``Y^T`` (:data:`YT_POLICIES`, see the module docstring).
    """

    Y: torch.Tensor
    rank: int
    W_true: torch.Tensor | None = None
    H_true: torch.Tensor | None = None
    nonneg: bool = True
    fixed_W: bool = False
    name: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    yt: str = "auto"
    _Yt: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.Y, torch.Tensor) and sparse.is_sparse(self.Y):
            self.Y = sparse.as_csr(self.Y)
            self.validate()
            self._Yt, self._keeps_Yt = sparse.csr_transpose(self.Y), True
            return
        self.validate()
        self.Y = self.Y.contiguous()
        self.set_yt_policy(self.yt)

    def set_yt_policy(self, policy: str) -> None:
        """Decide ``Yt`` by ``policy`` (:data:`YT_POLICIES`) from now on: a copy made earlier
        under another policy is dropped (set it before the solvers take ``Yt``). Sparse data
        always holds its CSR transpose."""
        if self.is_sparse:
            return
        keep = keeps_transpose_copy(self.Y, policy)
        if keep != getattr(self, "_keeps_Yt", keep):
            self._Yt = None
        self.yt, self._keeps_Yt = policy, keep

    @property
    def Yt(self) -> torch.Tensor:
        """``Y^T``: a row-major copy where the policy keeps one, else the view ``Y.mT`` (see the
        module docstring); made on first use, never modify it."""
        if self._Yt is None:
            self._Yt = self.Y.T.contiguous() if self._keeps_Yt else self.Y.mT
        return self._Yt

    @property
    def holds_Yt_copy(self) -> bool:
        """Whether ``Yt`` is a row-major copy of ``Y^T`` (memory: one more ``Y``)."""
        return self._keeps_Yt

    @property
    def data_layout(self) -> str:
        """What the problem holds of the data, as recorded with the results: ``"Y+Yt"`` (``Y``
        and a row-major copy of ``Y^T``) or ``"Y"`` (``Yt`` is a view of ``Y``)."""
        if self.is_sparse:
            return "CSR Y+Yt"
        return "Y+Yt" if self._keeps_Yt else "Y"

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.Y.shape[0]), int(self.Y.shape[1])

    @property
    def device(self) -> torch.device:
        return self.Y.device

    @property
    def dtype(self) -> torch.dtype:
        return self.Y.dtype

    @property
    def is_sparse(self) -> bool:
        """Whether ``Y`` is a sparse CSR tensor (see the module docstring)."""
        return sparse.is_sparse(self.Y)

    @property
    def has_ground_truth(self) -> bool:
        return self.W_true is not None and self.H_true is not None

    def validate(self) -> None:
        """Raise :class:`DataError` with a one-line reason if the problem is not solvable."""
        where = f"dataset {self.name!r}: " if self.name else ""
        Y = self.Y
        if not isinstance(Y, torch.Tensor):
            raise DataError(f"{where}data must be a torch.Tensor, got {type(Y).__name__}")
        if Y.ndim != 2:
            raise DataError(f"{where}data must be a 2-D matrix, got shape {tuple(Y.shape)}")
        if not Y.is_floating_point():
            raise DataError(f"{where}data must be floating point, got {Y.dtype}")
        m, n = self.shape
        if m == 0 or n == 0:
            raise DataError(f"{where}data is empty (shape {m} x {n})")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise DataError(f"{where}rank must be a positive integer, got {self.rank!r}")
        if self.rank > min(m, n):
            raise DataError(f"{where}rank {self.rank} is larger than min(m, n) = {min(m, n)} for data of shape {m} x {n}")
        if sparse.is_sparse(Y):  # the stored values; the others are zeros
            Y = sparse.sparse_values(Y)
            if Y.numel() == 0:
                Y = torch.zeros(1, dtype=Y.dtype, device=Y.device)
        # one pass: min and max propagate NaN; entries are counted only to report an error
        low, high = (float(v) for v in torch.aminmax(Y))
        if not (math.isfinite(low) and math.isfinite(high)):
            bad = int((~torch.isfinite(Y)).sum())
            raise DataError(f"{where}data contains {bad} NaN or infinite entries")
        if self.nonneg and low < 0:
            raise DataError(
                f"{where}data has {int((Y < 0).sum())} negative entries (min {float(Y.min()):.3g}); "
                "NMF needs nonnegative data"
            )
        for label, X, want in (("W_true", self.W_true, (m, self.rank)), ("H_true", self.H_true, (self.rank, n))):
            if X is not None and tuple(X.shape) != want:
                raise DataError(f"{where}{label} has shape {tuple(X.shape)}, expected {want}")
            if X is not None and not bool(torch.isfinite(X).all()):
                raise DataError(f"{where}{label} contains {int((~torch.isfinite(X)).sum())} NaN or infinite entries")
        if self.fixed_W and self.W_true is None:
            raise DataError(f"{where}fixed_W needs W_true")

    def to(self, device: torch.device | str, dtype: torch.dtype, copy: bool = False) -> Problem:
        """This problem on ``device`` in ``dtype`` (ground truth moved too).

        Tensors already on ``device`` in ``dtype`` are shared unless ``copy`` is true (a
        dataset that caches its problems hands out copies, so no run can alter the cache).
        """

        def move(X: torch.Tensor | None) -> torch.Tensor | None:
            return None if X is None else X.to(device=device, dtype=dtype, copy=copy)

        return Problem(
            Y=move(self.Y), rank=self.rank, W_true=move(self.W_true), H_true=move(self.H_true),
            nonneg=self.nonneg, fixed_W=self.fixed_W, name=self.name, metadata=dict(self.metadata), yt=self.yt,
        )

    @cached_property
    def Y_norm2(self) -> float:
        """``||Y||_F^2``, accumulated in float64 block by block (a float64 reduction of the
        whole of a float32 ``Y`` would first make a float64 copy of it)."""
        if self.is_sparse:
            return sparse.sparse_norm2(self.Y)
        Y = self.Y
        rows = max(1, NORM_BLOCK // max(1, Y.shape[1]))
        return sum(float(torch.linalg.vector_norm(Y[i : i + rows], dtype=torch.float64) ** 2)
                   for i in range(0, Y.shape[0], rows))

    @property
    def gram_loss_is_accurate(self) -> bool:
        """Whether the loss from Gram matrices (:meth:`loss_from_inner_products`) is accurate
        in this problem's dtype: float64 (see the module docstring)."""
        return torch.finfo(self.dtype).eps < 1e-10

    def loss(self, W: torch.Tensor, H: torch.Tensor) -> float:
        r"""``1/2 ||Y - W H||_F^2`` as a Python float (clamped at 0).

        In float64 from Grams: one ``r x m`` by ``m x n`` product plus ``O((m + n) r^2)``,
        the scalar reductions in float64. In lower precision from the residual
        (:meth:`residual_loss`, one ``m x r`` by ``r x n`` product), which keeps the digits
        that the Gram form loses to cancellation. Sparse ``Y``: the Gram form summed over the
        nonzeros in float64 (:func:`~proxmf_bench.problem.sparse.sparse_loss`), in any dtype.
        """
        if self.is_sparse:
            return sparse.sparse_loss(self.Y, self.Y_norm2, W, H)
        if not self.gram_loss_is_accurate:
            return self.residual_loss(W, H)
        WtY = (W.T @ self.Y).double()
        WtW = (W.T @ W).double()
        HHt = (H @ H.T).double()
        return self.loss_from_inner_products(torch.sum(WtY * H.double()), torch.sum(WtW * HHt))

    def residual_loss(self, W: torch.Tensor, H: torch.Tensor) -> float:
        r"""``1/2 ||Y - W H||_F^2`` from the residual, in row blocks (:func:`residual_block_rows`).

        Each block ``Y_b - W_b H`` is one fused product in the data's dtype, its sum of squares
        a pairwise (cascade) sum, which adds an error of ``O(eps log k)`` on ``k`` positive
        terms; the blocks' sums are accumulated in float64. Memory: one block, never a copy of ``Y``.
        Sparse ``Y``: :meth:`loss`, as accurate in float64 without a dense residual.
        """
        if self.is_sparse:
            return self.loss(W, H)
        Y = self.Y
        rows = residual_block_rows(Y)
        total = 0.0
        with torch.no_grad():
            for i in range(0, Y.shape[0], rows):
                total += float(torch.addmm(Y[i : i + rows], W[i : i + rows], H, alpha=-1.0).square_().sum())
        return 0.5 * total

    def loss_from_inner_products(self, cross: torch.Tensor | float, quad: torch.Tensor | float) -> float:
        r"""``1/2 (||Y||^2 - 2 cross + quad)`` clamped at 0 (NaN stays NaN), with
        ``cross`` :math:`= \langle W^\top Y, H\rangle` and ``quad`` :math:`= \langle W^\top W, H H^\top\rangle`.

        For solvers that already hold these products (see ``Solver.loss``); pass them
        accumulated in float64.
        """
        value = 0.5 * (self.Y_norm2 - 2.0 * float(cross) + float(quad))
        return max(value, 0.0) if value == value else float("nan")

    def loss_from_products(self, cross: torch.Tensor, X: torch.Tensor, gram: torch.Tensor,
                           other_gram: torch.Tensor) -> float:
        r""":meth:`loss_from_inner_products` from held products, the sums accumulated in float64:
        ``cross`` is a block's product with the data oriented like the factor ``X`` (``W^T Y``
        with ``H``, ``H Y^T`` with ``W^T``, or their transposes), ``gram`` and ``other_gram``
        are :math:`W^\top W` and :math:`H H^\top` in either order."""
        return self.loss_from_inner_products(torch.sum(cross * X, dtype=torch.float64),
                                             torch.sum(gram.double() * other_gram.double()))

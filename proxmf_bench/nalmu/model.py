r"""NALMU: multiplicative updates unrolled into K layers with trainable elementwise weights.

Following Kervazo, Chetoui and Cohen (EUSIPCO 2024) and the unrolled-MU chapter of Kervazo
and Cohen, layer :math:`k` of NALMU is one Lee-Seung step whose update is multiplied
elementwise by nonnegative weights :math:`A_H^k`, :math:`A_W^k`:

.. math::
    H^{k+1} = \max\!\Big(H^k \odot A_H^k \odot
              \frac{W^{k\top} Y}{\max(W^{k\top} W^k H^k, \epsilon)},\ \epsilon\Big),
    \qquad
    W^{k+1} = \max\!\Big(W^k \odot A_W^k \odot
              \frac{Y H^{k+1\top}}{\max(W^k H^{k+1} H^{k+1\top}, \epsilon)},\ \epsilon\Big).

``W`` uses the freshly updated ``H``. All-ones weights give the ``mu`` solver exactly, iterate
for iterate (both call the kernels of :mod:`proxmf_bench.solve.mu`). In the NNLS form
(``fixed_W=True``) ``W`` is known and only ``H`` is updated.

Weight shapes (``A_W`` is ``m x r`` and ``A_H`` is ``r x 1`` broadcast over the pixels, so one
model serves data of any pixel count):

- ``full``: ``A_W`` is ``m x r``, ``A_H`` is ``r x 1``;
- ``component``: one weight per component, ``A_W`` is ``1 x r``, ``A_H`` is ``r x 1``;
- ``scalar``: one weight per layer for each factor.

Weights are either *tied* (one set shared by all layers) or per layer. Note that MU is invariant
under ``(W, H) -> (W D^{-1}, D H)`` for a positive diagonal ``D``; so in the NMF form a scalar
weight only rescales the factors and leaves their product on the MU trajectory.

Scaling (``normalize=True``, the chapter's remedy for the scaling ambiguity): the columns of
``Y`` are divided by their Euclidean norms ``d_j``, the columns of ``W0`` are scaled to unit
norm (the rows of ``H0`` take the scale, leaving ``W0 H0`` unchanged; a fixed ``W`` keeps
its scale) and the columns of ``H0`` are divided by ``d_j``. The layers run on the normalised data; the returned ``H`` is
multiplied back by ``d_j`` so it is on the scale of the original data. In the NNLS form this
changes nothing but the numerics; in the NMF form it weights every pixel equally in the fit.

Weights files are written by ``proxmf-bench train nalmu`` with :func:`save_weights`: a
``torch.save`` dictionary of tensors and plain values, read back with
``torch.load(weights_only=True)``, so loading never executes code.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from proxmf_bench.errors import UserError
from proxmf_bench.problem.sparse import divide_columns, is_sparse, sparse_column_norms
from proxmf_bench.solve.mu import mu_update_H, mu_update_W

WEIGHT_SHAPES = ("full", "component", "scalar")
FILE_FORMAT = "proxmf-bench/nalmu-weights"
FILE_VERSION = 1


@dataclass(frozen=True)
class NALMUConfig:
    """The architecture of a NALMU model; saved with its weights.

    Parameters
    ----------
    layers : int
        Number ``K`` of unrolled MU layers.
    rank : int
        Number of components ``r``.
    m : int
        Rows of ``Y`` (bands); fixes the shape of ``full`` ``A_W`` weights.
    shape : {"full", "component", "scalar"}
        Shape of the weights of one layer (see the module docstring).
    tied : bool
        One set of weights shared by every layer instead of one per layer.
    fixed_W : bool
        NNLS form: ``W`` is known and fixed, only ``H`` is updated (no ``A_W``).
    normalize : bool
        Column normalisation of ``Y`` and of the initial factors.
    eps : float
        Floor on entries and denominators, as in the ``mu`` solver.
    """

    layers: int
    rank: int
    m: int
    shape: str = "full"
    tied: bool = False
    fixed_W: bool = False
    normalize: bool = False
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise UserError(f"NALMU needs at least one layer, got {self.layers}")
        if self.rank < 1 or self.m < 1:
            raise UserError(f"NALMU needs positive sizes, got rank={self.rank}, m={self.m}")
        if self.shape not in WEIGHT_SHAPES:
            raise UserError(f"unknown NALMU weight shape {self.shape!r} (use {', '.join(WEIGHT_SHAPES)})")
        if not self.eps >= 0:
            raise UserError(f"NALMU eps must be >= 0, got {self.eps}")

    @property
    def form(self) -> str:
        return "nnls" if self.fixed_W else "nmf"

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the stacked parameters: a leading layer axis (1 when tied)."""
        depth = 1 if self.tied else self.layers
        r = self.rank
        one_layer_W = {"full": (self.m, r), "component": (1, r), "scalar": (1, 1)}[self.shape]
        one_layer_H = (1, 1) if self.shape == "scalar" else (r, 1)
        shapes = {"A_H": (depth, *one_layer_H)}
        if not self.fixed_W:
            shapes["A_W"] = (depth, *one_layer_W)
        return shapes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> NALMUConfig:
        """The configuration saved by :meth:`to_dict`; a ``UserError`` naming the field whose
        value has the wrong type or is out of range (a weights file is data from elsewhere)."""
        if not isinstance(data, Mapping):
            raise UserError(f"NALMU configuration is a {type(data).__name__}, not a mapping")
        missing = sorted(n for n in ("layers", "rank", "m") if n not in data)
        if missing:
            raise UserError(f"NALMU configuration lacks {', '.join(missing)}")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name, value in values.items():
            test, description = _CONFIG_FIELDS[name]
            if not test(value):
                raise UserError(f"NALMU configuration: {name} must be {description}, got {value!r:.40}")
        return cls(**values)


def _is_count(value: Any, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


# what each saved field must be: (test, description); the bounds refuse absurd sizes early
_CONFIG_FIELDS = {
    "layers": (lambda v: _is_count(v, 100_000), "an integer from 1 to 100000"),
    "rank": (lambda v: _is_count(v, 1 << 24), "a positive integer"),
    "m": (lambda v: _is_count(v, 1 << 31), "a positive integer"),
    "shape": (lambda v: v in WEIGHT_SHAPES, f"one of {', '.join(WEIGHT_SHAPES)}"),
    "tied": (lambda v: isinstance(v, bool), "true or false"),
    "fixed_W": (lambda v: isinstance(v, bool), "true or false"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "eps": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
            "a finite number >= 0"),
}


def nalmu_update_H(
    Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, A_H: torch.Tensor, eps: float
) -> torch.Tensor:
    """One weighted MU step on ``H``, out of place (differentiable in ``A_H``, ``W``, ``H``)."""
    return mu_update_H(H, W.mT @ Y, W.mT @ W, eps, A_H)


def nalmu_update_W(
    Y: torch.Tensor, W: torch.Tensor, H: torch.Tensor, A_W: torch.Tensor, eps: float
) -> torch.Tensor:
    """One weighted MU step on ``W``, out of place (differentiable in ``A_W``, ``W``, ``H``)."""
    return mu_update_W(W, Y @ H.mT, H @ H.mT, eps, A_W)


@dataclass(frozen=True)
class ColumnScaling:
    """Column norms ``d`` of ``Y`` (shape ``... x 1 x n``) used to normalise and restore."""

    d: torch.Tensor

    def restore_H(self, H: torch.Tensor) -> torch.Tensor:
        return H * self.d


def normalize_columns(
    Y: torch.Tensor, W0: torch.Tensor, H0: torch.Tensor, fixed_W: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ColumnScaling]:
    """``Y`` with unit-norm columns and initial factors scaled to match (module docstring).

    A fixed (known) ``W0`` keeps its scale. Zero columns of ``Y`` or ``W0`` are left as they are.
    A sparse CSR ``Y`` (one problem, no batch) stays sparse: its values are rescaled.
    """
    if is_sparse(Y):
        d = sparse_column_norms(Y).unsqueeze(0)
        d = torch.where(d > 0, d, torch.ones_like(d))
        Yd = divide_columns(Y, d[0])
    else:
        d = torch.linalg.vector_norm(Y, dim=-2, keepdim=True)
        d = torch.where(d > 0, d, torch.ones_like(d))
        Yd = Y / d
    if fixed_W:
        return Yd, W0, H0 / d, ColumnScaling(d)
    c = torch.linalg.vector_norm(W0, dim=-2, keepdim=True)
    c = torch.where(c > 0, c, torch.ones_like(c))
    return Yd, W0 / c, H0 * c.mT / d, ColumnScaling(d)


class NALMU(nn.Module):
    """K unrolled MU layers with trainable nonnegative weights ``A_W^k``, ``A_H^k``.

    The parameters ``A_H`` (and ``A_W`` in the NMF form) are stacked over layers along their
    first axis (length 1 when tied) and start at one, so a fresh model computes MU. Keep them
    nonnegative during training with :meth:`project_` after each optimiser step.

    ``forward(Y, W0, H0)`` accepts single problems (``m x n``) or batches (``B x m x n``) and
    returns the lists of iterates ``[W^1, ..., W^K]`` and ``[H^1, ..., H^K]``.
    """

    def __init__(self, config: NALMUConfig, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.config = config
        shapes = config.weight_shapes()
        self.A_H = nn.Parameter(torch.ones(shapes["A_H"], dtype=dtype))
        if "A_W" in shapes:
            self.A_W = nn.Parameter(torch.ones(shapes["A_W"], dtype=dtype))
        else:
            self.register_parameter("A_W", None)

    def layer_weights(self, k: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(A_W^k, A_H^k)`` for layer ``k`` (0-based); ``A_W^k`` is None in the NNLS form."""
        index = 0 if self.config.tied else k
        A_W = None if self.A_W is None else self.A_W[index]
        return A_W, self.A_H[index]

    def forward(
        self, Y: torch.Tensor, W0: torch.Tensor, H0: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        cfg = self.config
        scaling = None
        if cfg.normalize:
            Y, W0, H0, scaling = normalize_columns(Y, W0, H0, cfg.fixed_W)
        W, H = W0.clamp_min(cfg.eps), H0.clamp_min(cfg.eps)
        Ws, Hs = [], []
        for k in range(cfg.layers):
            A_W, A_H = self.layer_weights(k)
            H = nalmu_update_H(Y, W, H, A_H, cfg.eps)
            if A_W is not None:
                W = nalmu_update_W(Y, W, H, A_W, cfg.eps)
            Ws.append(W)
            Hs.append(H if scaling is None else scaling.restore_H(H))
        return Ws, Hs

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp every weight at zero (the projection onto the nonnegative orthant)."""
        for p in self.parameters():
            p.clamp_min_(0.0)

    def check_compatible(self, m: int, rank: int, fixed_W: bool, where: str = "") -> None:
        """Raise ``UserError`` unless this model fits a problem with ``m`` rows and ``rank``."""
        cfg = self.config
        prefix = f"{where}: " if where else ""
        if cfg.fixed_W != fixed_W:
            want = "an NNLS problem (fixed W)" if cfg.fixed_W else "an NMF problem (W updated)"
            got = "an NNLS problem (fixed W)" if fixed_W else "an NMF problem"
            raise UserError(f"{prefix}NALMU weights were trained for {want}, but this is {got}")
        if cfg.rank != rank:
            raise UserError(f"{prefix}NALMU weights were trained for rank {cfg.rank}, but this problem has rank {rank}")
        if cfg.shape == "full" and not cfg.fixed_W and cfg.m != m:
            raise UserError(
                f"{prefix}NALMU 'full' weights were trained for m={cfg.m} rows (bands), but this problem has m={m}"
            )


def save_weights(path: str | os.PathLike, model: NALMU, info: Mapping[str, Any]) -> Path:
    """Write ``model``'s weights and configuration, plus ``info`` (plain values), atomically."""
    from proxmf_bench.results.table import atomic_write_bytes

    payload = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "config": model.config.to_dict(),
        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "info": dict(info),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    target = Path(path)
    atomic_write_bytes(target, buffer.getvalue())
    return target


def load_weights(path: str | os.PathLike) -> tuple[NALMU, dict[str, Any]]:
    """The model stored in ``path`` and its ``info``; a one-line ``UserError`` if unusable.

    Reads with ``torch.load(weights_only=True)``: no code from the file is executed.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"NALMU weights file not found: {file}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or damaged files
        raise UserError(f"{file} is not a readable NALMU weights file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise UserError(f"{file} is not a NALMU weights file written by proxmf-bench train")
    if payload.get("version") != FILE_VERSION:
        raise UserError(f"{file} has NALMU weights format version {payload.get('version')!r:.20}, "
                        f"expected {FILE_VERSION}")
    try:
        config = NALMUConfig.from_dict(payload.get("config", {}))
    except UserError as exc:
        raise UserError(f"{file}: {exc}") from None
    state, info = payload.get("state"), payload.get("info", {})
    if not isinstance(state, dict) or not isinstance(info, dict):
        raise UserError(f"{file}: its state and info must be dictionaries")
    # checked before anything is allocated: the configuration alone may name absurd sizes
    expected = config.weight_shapes()
    found = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in state.items()}
    if found != expected:
        raise UserError(
            f"{file}: weight shapes {str(found)[:200]} do not match its configuration "
            f"({config.shape}, {'tied' if config.tied else 'per layer'}, K={config.layers}), "
            f"which needs {expected}"
        )
    for name, value in state.items():
        if value.layout != torch.strided or not value.is_floating_point():
            raise UserError(f"{file}: NALMU weights {name} must be a dense real floating-point tensor, "
                            f"got {value.dtype} ({value.layout})")
        if bool((value < 0).any()) or not bool(torch.isfinite(value).all()):
            raise UserError(f"{file}: NALMU weights must be finite and nonnegative")
    model = NALMU(config)
    model.load_state_dict({k: v.to(torch.float64) for k, v in state.items()})
    return model, dict(info)


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()

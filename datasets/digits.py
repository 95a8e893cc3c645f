r"""scikit-learn's bundled handwritten digits (8 x 8 images), as an NMF problem without ground truth.

Each image is a column: ``Y`` is ``64 x N`` (pixels x images, ``N = 1797`` for all ten
classes), with grey levels 0..16 divided by 16 so that ``Y`` lies in [0, 1]. The columns of
``W`` are then basis images (parts of digits) and ``H`` their per-image weights. The file
ships inside scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DatasetSpec, Param
from proxmf_bench.problem.problem import Problem

GREY_LEVELS = 16.0


@lru_cache(maxsize=4)
def _digits(n_class: int) -> torch.Tensor:
    """``64 x N`` float64 pixel matrix of the digits ``0 .. n_class-1``, read once per process."""
    from sklearn.datasets import load_digits

    images = load_digits(n_class=n_class).data
    return torch.from_numpy(images.T / GREY_LEVELS).contiguous()  # row-major, as Problem holds it


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    Y = _digits(params["n_class"]).to(device=device, dtype=dtype, copy=True)
    return Problem(Y=Y, rank=params["rank"], name="digits", metadata={"n_class": params["n_class"]})


@hookimpl
def proxmf_register_datasets(register):
    register(
        DatasetSpec(
            name="digits",
            load=load,
            params=(
                Param("rank", 10, int, "number of components (at most 64)", low=1, high=64),
                Param("n_class", 10, int, "keep the digits 0 .. n_class-1", low=1, high=10),
            ),
            summary="scikit-learn's 8x8 digits, 64 pixels x 1797 images in [0, 1], no ground truth",
        )
    )

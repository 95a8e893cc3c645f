r"""Hyperspectral unmixing scenes with ground truth: Samson and Jasper Ridge.

Both are MATLAB files in the layout of Palsson et al.'s autoencoder comparison: ``Y``
(bands x pixels), ``GT`` (endmembers x bands) and ``S_GT`` (rows x cols x endmembers, the
abundance maps). The problem is

.. math:: Y \approx W H,\qquad W_{\text{true}} = GT^\top \;(\text{bands} \times r),\qquad
          H_{\text{true}} = A \;(r \times \text{pixels}),

where column ``j`` of ``A`` holds the abundances of pixel ``j``. MATLAB stores images
column-major, so pixel ``j`` of ``Y`` is entry ``j`` of a map flattened in Fortran order
(``order='F'``); the C order scrambles the maps. Abundances are nonnegative and sum to one.

Scaling as distributed, kept as is: Samson's ``Y`` is in [0, 1] and its endmembers are each
max-normalised (so ``W_true H_true`` is not on the scale of ``Y``); Jasper's ``Y`` is raw
counts, divided here by 5000 (the ``maxValue`` of the distributor's file), and its endmembers
are on that reflectance scale. The metrics in :mod:`proxmf_bench.problem.metrics` are invariant to
the scale of each component, so neither convention biases them.

Files live under the data directory (see :mod:`proxmf_bench.plugin.data_files`) as
``samson/Samson.mat`` and ``jasper_ridge/Jasper.mat``; they are checked against their sha256
before use and parsed once per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxmf_bench.errors import DataError
from proxmf_bench.plugin.data_files import require
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DataFile, DatasetSpec
from proxmf_bench.problem.problem import Problem


@dataclass(frozen=True)
class Scene:
    """How to read one scene: its file, expected sizes, and the divisor applied to ``Y``."""

    name: str
    file: DataFile
    bands: int
    pixels: int
    endmembers: tuple[str, ...]
    divisor: float = 1.0
    summary: str = ""


SAMSON = Scene(
    name="samson",
    file=DataFile(
        path="samson/Samson.mat",
        sha256="49530e80d0dabf6b1fb9cde2d6cf257f89a344afe9c13b2cc912eb22f344de18",
        size=3_735_621,
        url="https://raw.githubusercontent.com/burknipalsson/hu_autoencoders/"
            "8fa704ef8a82cf7f03981392204fe8cd872b0ccf/Datasets/Samson.mat",
    ),
    bands=156,
    pixels=95 * 95,
    endmembers=("soil", "tree", "water"),
    summary="Samson hyperspectral scene, 156 bands x 9025 pixels, 3 endmembers, with ground truth",
)

JASPER = Scene(
    name="jasper",
    file=DataFile(
        path="jasper_ridge/Jasper.mat",
        sha256="834a3ef14426140bd76f5731755e9338e98ce18e4816b552533ab288b3799468",
        size=3_333_464,
        url="https://raw.githubusercontent.com/UPCGIT/Hyperspectral-Unmixing-Models/"
            "3ec77a26ce726c2843b4e29070b435056941df39/Datasets/Jasper.mat",
    ),
    bands=198,
    pixels=100 * 100,
    endmembers=("tree", "water", "soil", "road"),
    divisor=5000.0,
    summary="Jasper Ridge hyperspectral scene (Y/5000), 198 bands x 10000 pixels, 4 endmembers, with ground truth",
)

SCENES = (SAMSON, JASPER)


def read_scene(path: Path, scene: Scene) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Y, W_true, H_true)`` in float64 from a scene file, with its structure checked.

    Missing variables, non-numeric arrays and shapes that do not match ``scene`` are a
    one-line :class:`DataError` naming the file; values (NaN, negative) are checked by
    :class:`Problem`.
    """
    import scipy.io

    try:
        content = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several unrelated types for unreadable files
        raise DataError(f"cannot read {path} as a MATLAB file: {exc}") from None
    r = len(scene.endmembers)
    arrays = {}
    for key in ("Y", "GT", "S_GT"):
        if key not in content:
            found = ", ".join(k for k in content if not k.startswith("__")) or "none"
            raise DataError(f"{path}: variable {key!r} is missing (found: {found})")
        value = np.asarray(content[key])
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise DataError(f"{path}: variable {key!r} is not numeric (dtype {value.dtype})")
        arrays[key] = value.astype(np.float64)
    expected = {"Y": (scene.bands, scene.pixels), "GT": (r, scene.bands)}
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise DataError(f"{path}: variable {key!r} has shape {arrays[key].shape}, expected {shape}")
    maps = arrays["S_GT"]
    if maps.ndim != 3 or maps.shape[2] != r or maps.shape[0] * maps.shape[1] != scene.pixels:
        raise DataError(
            f"{path}: variable 'S_GT' has shape {maps.shape}, expected (rows, cols, {r}) "
            f"with rows * cols = {scene.pixels}"
        )
    A = np.stack([maps[:, :, k].reshape(-1, order="F") for k in range(r)])
    Y = torch.from_numpy(np.ascontiguousarray(arrays["Y"] / scene.divisor))  # MATLAB's is column-major
    return Y, torch.from_numpy(np.ascontiguousarray(arrays["GT"].T)), torch.from_numpy(A)


@lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int, scene: Scene) -> Problem:
    """The float64 CPU problem of one file version, parsed and validated once per process."""
    Y, W_true, H_true = read_scene(Path(path), scene)
    try:
        return Problem(
            Y=Y, rank=len(scene.endmembers), W_true=W_true, H_true=H_true, name=scene.name,
            metadata={"file": path, "endmembers": scene.endmembers, "divisor": scene.divisor},
        )
    except DataError as exc:
        raise DataError(f"{exc} (file {path})") from None


def load_scene(
    scene: Scene, params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype
) -> Problem:
    """The scene's problem on ``device`` in ``dtype``, from a checksum-verified file."""
    path = require(scene.file, scene.name)
    stat = path.stat()
    base = _read_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, scene)
    return base.to(device, dtype, copy=True)


@hookimpl
def proxmf_register_datasets(register):
    for scene in SCENES:
        register(
            DatasetSpec(
                name=scene.name,
                load=partial(load_scene, scene),
                summary=scene.summary,
                ground_truth=True,
                files=(scene.file,),
            )
        )

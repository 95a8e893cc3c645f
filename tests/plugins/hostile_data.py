"""Test plugin: a dataset whose ``kind`` picks one way of being invalid."""

import torch

from proxmf_bench import DatasetSpec, Param, Problem, hookimpl

KINDS = ("ok", "inf", "int", "empty", "vector", "cube", "rank0", "rank_big", "not_tensor", "crash")


def _load(params, seed, device, dtype):
    kind = params["kind"]
    Y = torch.rand(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    rank = 2
    if kind == "inf":
        Y[1, 2] = float("inf")
    elif kind == "int":
        Y = (Y * 10).to(torch.int64)
    elif kind == "empty":
        Y = Y[:0]
    elif kind == "vector":
        Y = Y[0]
    elif kind == "cube":
        Y = Y[None]
    elif kind == "rank0":
        rank = 0
    elif kind == "rank_big":
        rank = 6
    elif kind == "not_tensor":
        Y = Y.tolist()
    elif kind == "crash":
        raise ZeroDivisionError("plugin bug")
    if isinstance(Y, torch.Tensor) and Y.is_floating_point():
        Y = Y.to(device, dtype)
    return Problem(Y=Y, rank=rank, name="hostile")


@hookimpl
def proxmf_register_datasets(register):
    register(DatasetSpec(name="hostile", load=_load, params=(Param("kind", "ok", str, choices=KINDS),)))
